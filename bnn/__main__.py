"""``python -m bnn``: the same as the ``bnn`` command."""

import sys

from bnn.cli import main

sys.exit(main())
