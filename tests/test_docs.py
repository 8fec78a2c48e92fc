"""The docs hold together: README is a short front door, every relative link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_BYTES = 12_000
PAGES = [README, *sorted(DOCS.rglob("*.md"))]

# [text](target) and ![alt](target); the target ends at whitespace or ")" (a title may follow).
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
EXTERNAL = ("http://", "https://", "mailto:")


def relative_links(page: Path) -> list[str]:
    """Targets of the page's markdown links that point into the repository (code blocks skipped)."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [
        target
        for target in LINK.findall(text)
        if not target.startswith(EXTERNAL) and not target.startswith("#")
    ]


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = [
        target
        for target in relative_links(page)
        if not (page.parent / target.split("#", 1)[0]).exists()
    ]
    assert not broken, f"{name(page)}: broken links: {broken}"


def test_readme_is_a_front_door() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes, over {README_MAX_BYTES}"


def test_every_docs_page_is_linked_from_readme() -> None:
    linked = {(ROOT / target.split("#", 1)[0]).resolve() for target in relative_links(README)}
    missing = [name(page) for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


def test_the_link_finder_sees_both_kinds_of_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "[a](docs/a.md#part) ![b](b.png) [c](https://example.org) [d](#top) "
        "[e](mailto:x@example.org)\n```text\n[f](inside/a/fence.md)\n```\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["docs/a.md#part", "b.png"]
