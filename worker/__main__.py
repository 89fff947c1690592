"""`python -m worker ...`: the people's CLI, `syncfleet` (see worker/cli/)."""

import sys

from worker.cli import main

sys.exit(main())
