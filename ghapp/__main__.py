"""`python -m ghapp`: the same as the `ghapp` command."""

import sys

from ghapp.cli import main

sys.exit(main())
