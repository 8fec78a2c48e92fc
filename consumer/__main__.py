"""``python -m pcq.consumer [OPTIONS]`` is ``pcq consume [OPTIONS]``.

``python -m pcq.consumer healthcheck`` is ``pcq consume --check`` (for Docker's
HEALTHCHECK: exit 0 iff a consumer of this host has a live heartbeat).
"""

import sys

from pcq.core.cli import main

args = sys.argv[1:]
if args[:1] == ["healthcheck"]:
    args = ["--check", *args[1:]]
main(["consume", *args])
