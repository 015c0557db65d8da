"""``python -m rfgraph``: the same as the ``rfgraph`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
