"""``python -m astreaming.cli``: the same as the ``astreaming`` console script."""

import sys

from astreaming.cli.main import main

sys.exit(main())
