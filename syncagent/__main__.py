import sys

from syncagent.cli import main

sys.exit(main())
