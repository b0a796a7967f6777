"""`python -m zdd_service`: run the sample service until SIGTERM/SIGINT."""

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
