"""``python -m edgeseg_runtime`` = ``edgeseg-run``."""

import sys

from edgeseg_runtime.cli import main

sys.exit(main())
