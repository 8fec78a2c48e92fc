"""What the two soak scripts share: the ledger checks and the command line's ending."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def ledger_problems(result: dict[str, Any]) -> list[str]:
    """The checks every soak makes: all items produced, none lost, unexpected or duplicated."""
    problems = []
    if result["produced"] != result["items"]:
        problems.append(f"produced {result['produced']} of {result['items']}")
    if result["lost"] or result["unexpected"] or result["duplicated"]:
        problems.append(f"ledger: {result['ledger']}")
    return problems


def rss_problems(result: dict[str, Any]) -> list[str]:
    """The consumers' RSS cap (a consumer holds one message or batch, whatever the run's size)."""
    if result["consumer_rss_mb_peak"] > result["rss_cap_mb"]:
        return [f"consumer RSS {result['consumer_rss_mb_peak']} MB > {result['rss_cap_mb']}"]
    return []


def run_and_report(
    args: argparse.Namespace,
    soak: Callable[[argparse.Namespace, Path], dict[str, Any]],
    verdict: Callable[[dict[str, Any]], list[str]],
    width: int,
) -> int:
    """Soak in a scratch directory, print the figures (``--json``: one object) and the failures.

    Returns the exit status: 0 iff every check passed.
    """
    with tempfile.TemporaryDirectory(prefix="pcq-soak-") as tmp:
        result = soak(args, Path(tmp))
    problems = verdict(result)
    result["passed"] = not problems
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>{width}}: {value}")
        for line in problems:
            print(f"FAILED: {line}")
    return 0 if not problems else 1
