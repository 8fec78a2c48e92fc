"""Benchmark: what the consumers' healthcheck costs ``pcq compare --docker`` (issue 14).

Usage::

    .venv/bin/python benchmarks/bench_docker_health.py [--consumers 8] [--items 6000]
        [--work sleep:10] [--repeat 3] [--json]

``pcq compare --docker``'s own runner (:class:`pcq.core.compare.docker_runner.DockerCompare`:
the repository's compose file, consumer containers scaled by compose, a
producer container), alternating runs with the consumers' healthcheck off and
on (``pcq compare --docker`` itself keeps it on), the order swapped every repeat. Items/s of every run are
printed with the load average before it, then the medians and their ratio.
Target: on within 10% of off. The image gets a tag of its own
(``pcq:bench-health``), so a parallel ``pcq compare --docker`` cannot swap it.
Enough items that a run spans several healthcheck intervals (5 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pcq.core.compare import docker_runner
from pcq.core.compare.docker_runner import DockerCompare
from pcq.core.compare.workload import Workload, parse_work
from pcq.core.errors import PcqError


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", type=int, default=8)
    parser.add_argument("--items", type=int, default=6000)
    parser.add_argument("--work", default="sleep:10")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    docker_runner.IMAGE, docker_runner.REDIS_IMAGE = "pcq:bench-health", "pcq-redis:bench-health"
    workload = Workload(items=args.items, payload_bytes=64, work=parse_work(args.work))
    runners = {mode: DockerCompare(workload, healthcheck=mode == "on") for mode in ("off", "on")}
    runners["on"].built = True  # one build serves both (same image; only the override differs)
    rows: list[dict[str, Any]] = []
    try:
        for repeat in range(args.repeat):
            order = ("off", "on") if repeat % 2 == 0 else ("on", "off")  # no mode always second
            for mode in order:
                runner = runners[mode]
                load = loadavg()
                try:
                    run = runner.run(args.consumers, repeat, lambda n: None, 600.0).to_json()
                except PcqError as exc:  # reported, not dropped: the run counts as failed
                    print(f"healthcheck {mode:<3} #{repeat + 1}: failed: {exc} (load {load})", flush=True)
                    continue
                row = {"healthcheck": mode, "repeat": repeat, "load": load,
                       "items_per_second": run["items_per_second"], "consumed": run["consumed"],
                       "lost": run["lost"]}  # fmt: skip
                rows.append(row)
                if not args.json:
                    print(f"healthcheck {mode:<3} #{repeat + 1}: {row['items_per_second']:8.1f} items/s "
                          f"(consumed {row['consumed']}, lost {row['lost']}; load {load})", flush=True)
    finally:
        for runner in runners.values():
            runner.close()
    median = {m: statistics.median(r["items_per_second"] for r in rows if r["healthcheck"] == m)
              for m in runners}  # fmt: skip
    ratio = median["on"] / median["off"]
    if args.json:
        print(json.dumps({"rows": rows, "median": median, "ratio": round(ratio, 3)}))
    else:
        print(f"median items/s: off {median['off']:.1f}, on {median['on']:.1f}; on/off {ratio:.3f} "
              f"(target >= 0.90) with {args.consumers} consumer containers, --work {args.work}, "
              f"{args.items} items")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
