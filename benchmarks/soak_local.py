"""Soak: a long run through the local transport, judged by the independent ledger (not a test).

``tests/chaos_local.py`` -- ``pcq local``'s supervisor, queue and producers,
with ledger-keeping consumers -- runs ``--items`` items through a bounded queue
(``--queue-size`` messages: the high-water mark) while a thread of its parent
samples the queue's depth and the consumers' RSS. It passes when:

* the ledger says ``lost == 0``, ``unexpected == 0`` and no duplicates;
* the queue never held more than ``--queue-size`` messages;
* every consumer's RSS stayed under ``--rss-cap-mb`` (a consumer holds one
  message; its memory must not grow with the run).

Usage: ``python benchmarks/soak_local.py [--items 200000] [--consumers 4] [--json]``
(``PCQ_SOAK_ITEMS`` overrides the default size; CI runs a small one).
Exit status 0 iff every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from audit import Audit  # the tests' independent checker
from soak_common import ledger_problems, rss_problems, run_and_report

DRIVER = Path(__file__).resolve().parent.parent / "tests" / "chaos_local.py"


def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Run one soak; return its figures."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(workdir), "--items", str(args.items),
         "--producers", str(args.producers), "--consumers", str(args.consumers),
         "--queue-size", str(args.queue_size), "--batch", str(args.batch),
         "--sample", str(args.sample)],
        capture_output=True, text=True, timeout=args.timeout, check=False,
    )
    seconds = time.monotonic() - started
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"the run printed nothing (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    run = json.loads(lines[-1])
    peak = json.loads((workdir / "samples.json").read_text())
    report = Audit(workdir).report()
    return {
        "transport": "local", "items": args.items, "producers": args.producers,
        "consumers": args.consumers, "batch": args.batch, "exit_code": proc.returncode,
        "seconds": round(seconds, 2), "run_seconds": run["seconds"],
        "items_per_second": round(args.items / seconds, 1),
        "ledger": report.summary(), "produced": report.produced, "lost": report.lost,
        "unexpected": report.unexpected, "duplicated": report.duplicated,
        "queue_size": args.queue_size, "queue_peak_messages": peak["queue_messages"],
        "consumer_rss_mb_peak": peak["consumer_rss_mb"], "rss_cap_mb": args.rss_cap_mb,
        "samples": peak["samples"],
        "pcq": {k: run[k] for k in ("produced", "consumed", "lost", "duplicates", "redelivered")},
    }


def verdict(result: dict[str, Any]) -> list[str]:
    """Every failed check, as a line (empty: passed)."""
    problems = []
    if result["exit_code"] != 0:
        problems.append(f"exit code {result['exit_code']}")
    problems += ledger_problems(result)
    if result["queue_peak_messages"] > result["queue_size"]:
        problems.append(f"queue reached {result['queue_peak_messages']} > {result['queue_size']}")
    problems += rss_problems(result)
    if not result["samples"]:
        problems.append("no sample was taken")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=int(os.environ.get("PCQ_SOAK_ITEMS", "200000")))
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--queue-size", type=int, default=1000)
    ap.add_argument("--rss-cap-mb", type=float, default=100.0)
    ap.add_argument("--sample", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return run_and_report(ap.parse_args(argv), soak, verdict, width=22)

if __name__ == "__main__":
    sys.exit(main())
