"""`python -m mosa` is the same as the `mosa` command."""

import sys

from mosa.cli import main

sys.exit(main())
