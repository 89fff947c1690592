"""`python -m worker ...`: the people's CLI (see worker/cli.py)."""

import sys

from worker.cli import main

sys.exit(main())
