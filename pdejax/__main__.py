"""``python -m pdejax``: the same as the ``pdejax`` console script."""

import sys

from .cli import main

sys.exit(main())
