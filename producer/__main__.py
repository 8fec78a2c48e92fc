"""``python -m pcq.producer [OPTIONS]`` is ``pcq produce [OPTIONS]``."""

import sys

from pcq.core.cli import main

main(["produce", *sys.argv[1:]])
