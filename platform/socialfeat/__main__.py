"""`python -m socialfeat` is the `socialfeat` command."""

import sys

from socialfeat.cli import main

sys.exit(main())
