"""What the demos produce: the seed article's names, generated names, a names file.

Every producer -- ``pcq local``, ``pcq produce``, ``pcq compare`` -- makes its
item bodies from here, so a body reads the same whichever queue carries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pcq.core.errors import UsageProblem

__all__ = [
    "MAX_NAME", "SEED_NAMES", "generated_name", "item_bodies", "read_names_file", "seed_bodies",
]

# The seed article's three lists, one producer each.
SEED_NAMES: tuple[tuple[str, ...], ...] = (
    ("Master Shake", "Meatwad", "Frylock", "Carl"),
    ("Early", "Rusty", "Sheriff", "Granny", "Lil"),
    ("Rick", "Morty", "Jerry", "Summer", "Beth"),
)
_FLAT = tuple(name for names in SEED_NAMES for name in names)
MAX_NAME = 10_000  # characters per name: one item must fit in one local queue message


def seed_bodies() -> tuple[str, ...]:
    """The seed's 14 names, its three lists one after another."""
    return _FLAT


def generated_name(index: int) -> str:
    """Name of generated item ``index`` (``--items N``): a seed name plus a number."""
    return f"{_FLAT[index % len(_FLAT)]} #{index}"


def item_bodies(items: int | None, names: Sequence[str] | None) -> list[str]:
    """What a producer sends: ``names`` (e.g. a names file), ``items`` generated
    names, or by default the seed article's three lists (14 names)."""
    if names is not None:
        return list(names)
    if items is not None:
        return [generated_name(i) for i in range(items)]
    return list(_FLAT)


def read_names_file(path: Path) -> tuple[str, ...]:
    """Non-blank lines of ``path``, stripped; a usage error if there are none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageProblem(f"names file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"cannot read names file {path}: {exc}") from None
    names = []
    for number, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if len(name) > MAX_NAME:
            raise UsageProblem(f"names file {path}: line {number} is over {MAX_NAME} characters")
        if name:
            names.append(name)
    if not names:
        raise UsageProblem(f"names file is empty: {path}")
    return tuple(names)
