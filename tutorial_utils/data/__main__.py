"""``python -m tutorial_utils.data list | fetch NAME... | fetch --all | verify``."""
import sys

from tutorial_utils.data.cli import main

sys.exit(main())
