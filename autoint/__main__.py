"""`python -m autoint`: the command line (autoint/cli.py)."""
import sys

from autoint.cli import main

if __name__ == "__main__":
    sys.exit(main())
