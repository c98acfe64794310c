"""What the tests share: real servers, settings and tree builders, CLI runners, sample bytes.

No test module imports another; everything two of them need lives here.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
