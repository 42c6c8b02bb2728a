"""python -m minit2t ..."""
import sys

from minit2t.cli import main

if __name__ == "__main__":
    sys.exit(main())
