"""Soak: a long run through the Redis list, judged by the independent ledger (not a test).

One producer and ``--consumers`` consumer processes (``tests/chaos_redis.py``:
the code behind ``pcq produce``/``pcq consume --drain`` plus ledger records) on
a throwaway ``redis-server`` (AOF, fsync every second, a password) started
here. While it runs, every ``--sample`` seconds: the queue length (``LLEN``),
Redis ``used_memory`` and each consumer's RSS. It passes when:

* the ledger says ``lost == 0`` and ``unexpected == 0`` (no duplicates: nothing
  is killed here);
* the queue never held more than the high-water mark;
* Redis ``used_memory`` stayed under ``--redis-cap-mb`` and every consumer's RSS
  under ``--rss-cap-mb``.

The caps are design limits, not measurements: Redis holds at most the
high-water mark of payloads plus each run's acked bitmap (one bit per item:
125 kB for a million items), and a consumer holds at most 1 + ``claims.DEPTH``
batches (the one it handles and those claimed ahead).

Usage: ``python benchmarks/soak_redis.py [--items 1000000] [--consumers 4] [--json]``
(``PCQ_SOAK_ITEMS`` overrides the default size; CI runs a small one).
Exit status 0 iff every check passed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures_reliability import Crew, OwnRedis  # the tests' process and server helpers
from soak_common import ledger_problems, rss_problems, run_and_report

from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.status import queue_status
from pcq.core.redis_list.tally import read_tally


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Run one soak; return its figures."""
    server = OwnRedis(workdir / "redis", fsync="everysec", password=secrets.token_hex(12))
    server.start()
    try:
        settings = RedisSettings(url=server.url, queue="soak", batch=args.batch,
                                 high_water=args.high_water)
        crew = Crew(workdir, settings)
        consumers = [crew.consumer(drain=True) for _ in range(args.consumers)]
        started = time.monotonic()
        producer = crew.producer(args.items)
        peak = {"queue": 0, "redis_mb": 0.0, "rss_mb": 0.0, "producer_rss_mb": 0.0}
        samples = 0
        with server.client() as client:
            while any(p.poll() is None for p in consumers):
                if time.monotonic() - started > args.timeout:
                    crew.kill_everything()
                    raise SystemExit(f"soak timed out after {args.timeout}s")
                peak["queue"] = max(peak["queue"], queue_status(settings, client)["length"])  # items
                memory = client.info("memory")["used_memory"] / 2**20
                peak["redis_mb"] = max(peak["redis_mb"], memory)
                peak["rss_mb"] = max([peak["rss_mb"], *(rss_mb(p.pid) for p in consumers)])
                peak["producer_rss_mb"] = max(peak["producer_rss_mb"], rss_mb(producer.pid))
                samples += 1
                time.sleep(args.sample)  # the sampling period
            seconds = time.monotonic() - started
            tally = read_tally(client, crew.keys, crew.run_id())
            memory_end = client.info("memory")["used_memory"] / 2**20
        codes = crew.wait_all([producer, *consumers], 60)
        report = crew.ledger.report()
    finally:
        server.stop()
    return {
        "transport": "redis", "items": args.items, "consumers": args.consumers,
        "batch": args.batch, "seconds": round(seconds, 2),
        "items_per_second": round(args.items / seconds, 1), "exit_codes": codes,
        "ledger": report.summary(), "lost": report.lost, "unexpected": report.unexpected,
        "duplicated": report.duplicated, "high_water": args.high_water,
        "queue_peak": peak["queue"], "redis_used_mb_peak": round(peak["redis_mb"], 1),
        "redis_used_mb_end": round(memory_end, 1), "redis_cap_mb": args.redis_cap_mb,
        "consumer_rss_mb_peak": round(peak["rss_mb"], 1), "rss_cap_mb": args.rss_cap_mb,
        "producer_rss_mb_peak": round(peak["producer_rss_mb"], 1), "samples": samples,
        "tally": {k: tally[k] for k in ("produced", "consumed", "lost", "duplicates",
                                        "redelivered", "dead_letters")},
        "produced": report.produced,
    }


def verdict(result: dict[str, Any]) -> list[str]:
    """Every failed check, as a line (empty: passed)."""
    problems = ledger_problems(result)
    if result["queue_peak"] > result["high_water"]:
        problems.append(f"queue reached {result['queue_peak']} > high-water {result['high_water']}")
    if result["redis_used_mb_peak"] > result["redis_cap_mb"]:
        problems.append(f"redis used {result['redis_used_mb_peak']} MB > {result['redis_cap_mb']}")
    problems += rss_problems(result)
    if any(result["exit_codes"]):
        problems.append(f"exit codes {result['exit_codes']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=int(os.environ.get("PCQ_SOAK_ITEMS", "1000000")))
    ap.add_argument("--consumers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--high-water", type=int, default=10_000)
    ap.add_argument("--redis-cap-mb", type=float, default=256.0)
    ap.add_argument("--rss-cap-mb", type=float, default=100.0)
    ap.add_argument("--sample", type=float, default=0.25)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return run_and_report(ap.parse_args(argv), soak, verdict, width=24)

if __name__ == "__main__":
    sys.exit(main())
