"""`python -m gateway serve ...` runs the same command line as `toolwire`."""

import sys

from .cli import main

sys.exit(main())
