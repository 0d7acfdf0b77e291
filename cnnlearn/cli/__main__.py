"""``python -m cnnlearn.cli``: the ``cnnlearn`` command."""

import sys

from cnnlearn.cli import main

sys.exit(main())
