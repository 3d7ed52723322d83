"""``python -m stellarpacs``: see :mod:`stellarpacs.cli`."""

import sys

from stellarpacs.cli import main

sys.exit(main())
