"""``python -m skcovid``: the same as the ``skcovid`` command."""

import sys

from skcovid._cli.main import main

sys.exit(main())
