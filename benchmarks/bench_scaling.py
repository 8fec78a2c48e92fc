"""Benchmark: does throughput scale with consumers? (issue 5's scaling targets)

Usage::

    .venv/bin/python benchmarks/bench_scaling.py [--sleep-items 800] [--cpu-items 400]
        [--repeat 1] [--no-rq] [--out docs] [--json]

Runs ``pcq compare``'s own machinery (same runners, same metrics) twice, with
a throwaway ``redis-server`` (or ``REDIS_URL``):

1. ``--work sleep:10`` (I/O-bound) with 1, 2, 4, 8 consumers, local and Redis
   list (and RQ, for the plots). Target: 8 consumers >= 7x one consumer.
2. ``--work cpu:5`` (5 ms of CPU time per item) with 1 and 2 consumers.
   Target: 2 consumers >= 1.7x one -- processes, so no GIL in the way; more
   than the core count cannot help.

Ratios are taken within this one run. Nothing is hard-coded: the table printed
is what this machine did, together with its CPU model and load average (other
work on the machine shows up in the CPU-bound ratio). The report of the
sleep:10 run (results.json, report.md, the two PNGs) goes to ``--out``
(``docs/scaling-sleep10/``), and its PNGs are copied to ``docs/throughput.png``
and ``docs/latency.png`` for the README. Exit status 1 if a target was missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pcq.core.compare.report import write_report
from pcq.core.compare.run import CompareConfig, run_compare
from pcq.core.compare.workload import Workload, parse_work
from pcq.core.local.children import stop_helpers

TARGETS = (("sleep:10", 8, 7.0), ("cpu:5", 2, 1.7))  # (work, consumers, >= x of one consumer)


def machine() -> str:
    """CPU model, core count, load average: what the figures depend on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}; {os.cpu_count()} CPU(s); {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; load average {load}"
    )


def run(work: str, items: int, consumers: tuple[int, ...], transports: tuple[str, ...],
        repeat: int) -> dict[str, Any]:
    cfg = CompareConfig(
        workload=Workload(items=items, payload_bytes=64, work=parse_work(work)),
        consumers=consumers, transports=transports, repeat=repeat,
    )
    return run_compare(cfg)


def ratios(results: dict[str, Any], top: int) -> dict[str, tuple[float, float, float]]:
    """transport -> (items/s with 1 consumer, with ``top``, ratio)."""
    out = {}
    for transport in ("local", "redis"):
        rows = {r["consumers"]: r["items_per_second"] for r in results["summary"]
                if r["transport"] == transport}
        if 1 in rows and top in rows and rows[1] > 0:
            out[transport] = (rows[1], rows[top], rows[top] / rows[1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep-items", type=int, default=800)
    parser.add_argument("--cpu-items", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-rq", action="store_true", help="leave RQ out of the sleep:10 plots")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    about = machine()
    sleep_transports = ("local", "redis") if args.no_rq else ("local", "redis", "rq")
    try:
        sleep = run("sleep:10", args.sleep_items, (1, 2, 4, 8), sleep_transports, args.repeat)
        cpu = run("cpu:5", args.cpu_items, (1, 2), ("local", "redis"), args.repeat)
    finally:
        stop_helpers()
    report_dir = args.out / "scaling-sleep10"
    paths = write_report(sleep, report_dir)
    for name in ("throughput", "latency"):
        shutil.copyfile(paths[name], args.out / f"{name}.png")

    rows, missed = [], 0
    for (work, top, target), results in zip(TARGETS, (sleep, cpu)):
        for transport, (one, many, ratio) in ratios(results, top).items():
            ok = ratio >= target
            missed += not ok
            rows.append({"work": work, "transport": transport, "one": one, "top": top,
                         "many": many, "ratio": round(ratio, 2), "target": target, "met": ok})
    if args.json:
        print(json.dumps({"machine": about, "rows": rows, "sleep": sleep, "cpu": cpu}))
    else:
        print(f"machine: {about}")
        print(f"{'work':<9} {'transport':<9} {'1 consumer':>12} {'N':>3} {'N consumers':>12} "
              f"{'ratio':>6} {'target':>7}")
        for r in rows:
            print(f"{r['work']:<9} {r['transport']:<9} {r['one']:>10,.1f}/s {r['top']:>3} "
                  f"{r['many']:>10,.1f}/s {r['ratio']:>5.2f}x {'>=' + str(r['target']) + 'x':>7} "
                  f"{'met' if r['met'] else 'MISSED'}")
        print(f"report of the sleep:10 run: {report_dir}; PNGs copied to {args.out}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
