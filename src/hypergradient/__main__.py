"""``python -m hypergradient``: the command line (so that ``torchrun ... -m hypergradient reproduce ...`` works)."""

import sys

from .cli import main

sys.exit(main())
