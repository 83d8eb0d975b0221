"""``python -m host.cli`` — the same as the ``trelab`` console script."""

import sys

from host.cli import main

sys.exit(main())
