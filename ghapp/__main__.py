"""`python -m ghapp`: the same as the `ghapp` command."""

import sys

from ghapp.cli.main import main

# Guarded: `ghapp serve --workers N` starts its workers with multiprocessing's spawn, which
# imports this module again in each of them.
if __name__ == "__main__":
    sys.exit(main())
