"""``python -m fral``: the ``fral`` command."""

import sys

from fral.cli import main

sys.exit(main())
