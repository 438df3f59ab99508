"""``python -m collcost``: the same as the ``collcost`` console script."""
import sys

from collcost.cli import main

sys.exit(main())
