"""``python -m tutorial_utils.register FIXED MOVING --out DIR``: see :mod:`tutorial_utils.register.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
