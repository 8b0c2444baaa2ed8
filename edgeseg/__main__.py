"""``python -m edgeseg``: same as the ``edgeseg`` console script."""

import sys

from edgeseg.cli import main

sys.exit(main())
