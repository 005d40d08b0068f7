"""
C{python -m clusternet}: the same as the C{clusternet} command.
"""

import sys

from clusternet.cli import main

sys.exit(main())
