"""``python -m bench [--quick] [--out DIR]``: see bench/README.md."""

import sys

from .run import main

sys.exit(main())
