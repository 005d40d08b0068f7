"""
C{python -m clusternet.sandbox apiserver ...}: the same as C{clusternet sandbox}.
"""

import sys

from clusternet.cli import main

if __name__ == "__main__":
    sys.exit(main(["sandbox", *sys.argv[1:]]))
