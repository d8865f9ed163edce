"""`python -m ivr.softphone ...`: see `ivr.softphone.cli`."""

import sys

from ivr.softphone.cli import main

sys.exit(main())
