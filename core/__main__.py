"""``python -m pcq.core`` is ``pcq``."""

from pcq.core.cli import main

main()
