"""``python -m core`` is ``pcq``."""

from core.cli import main

main()
