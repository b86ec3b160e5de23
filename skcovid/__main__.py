"""``python -m skcovid``: the same as the ``skcovid`` command."""

import sys

from ._cli import main

sys.exit(main())
