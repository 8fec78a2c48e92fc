"""What a hostile writer to the queue sends: shared by the hostile-input tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TEN_MB = 10 * 1024 * 1024
# 30k levels in 60 kB: under a 64 KiB payload cap, far over any JSON parser's depth.
DEEP_JSON = b"[" * 30000 + b"]" * 30000


class Bomb:
    """Unpickling this runs ``touch MARKER``: what pickle from the network allows."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))
