"""What a full Redis does now (issue 12): items drained from it, and how soon a blocked producer resumes.

Usage::

    .venv/bin/python benchmarks/bench_full_redis.py [--maxmemory 16mb] [--repeat 3]

Each round starts its own ``redis-server --maxmemory M --maxmemory-policy
noeviction`` (no persistence) and runs the real CLI:

1. **drain**: ``pcq produce --high-water 0 --full-timeout 2`` pushes until Redis
   refuses (OOM) and gives up (exit 1); then two ``pcq consume --drain`` start
   *on the full Redis* and empty it. Reported: items pushed, seconds to drain,
   and the run's tally (consumed, lost).
2. **resume**: a producer of more items than fit (``--items``, default 150,000;
   ``--full-timeout 120``) blocks;
   2 s later one consumer starts. Reported: seconds from the consumer's start to
   the producer's next accepted batch (the run's ``produced`` grows), and from the
   consumer's first acknowledgement to it (memory freed -> producer pushing).

Every round is printed, with ``/proc/loadavg`` before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from pcq.core.compare.redis_server import free_port

PCQ = [sys.executable, "-m", "pcq.core"]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start_redis(maxmemory: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(workdir), "--maxmemory", maxmemory, "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.01)
    raise RuntimeError("redis-server did not start")


def env(port: int) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("PCQ_", "REDIS_"))}
    out.update(REDIS_URL=f"redis://127.0.0.1:{port}/0", PCQ_QUEUE="bench", PCQ_MAX_DELAY="0")
    return out


def run_key(client: redis.Redis) -> str:
    for _ in range(2000):
        runs = client.zrange("pcq:{bench}:runs", 0, -1)
        if runs:
            return f"pcq:{{bench}}:run:{runs[0].decode()}"
        time.sleep(0.005)
    raise RuntimeError("no run registered")


def consumer(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*PCQ, "consume", "--drain", "--quiet", "--batch", "100"], env=env(port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def drain_round(maxmemory: str, workdir: Path) -> str:
    proc, port = start_redis(maxmemory, workdir)
    client = redis.Redis(port=port)
    try:
        fill = subprocess.run([*PCQ, "produce", "--items", "10000000", "--batch", "100",
                               "--high-water", "0", "--full-timeout", "2", "--timeout", "0"],
                              env=env(port), capture_output=True, timeout=600, check=False)  # fmt: skip
        key = run_key(client)
        pushed = int(client.hget(key, "produced") or 0)
        used = int(client.info("memory")["used_memory"])
        started = time.monotonic()
        crew = [consumer(port) for _ in range(2)]
        codes = [c.wait(600) for c in crew]
        seconds = time.monotonic() - started
        consumed = client.bitcount(f"{key}:bits") + client.scard(f"{key}:acked")
        return (f"drain: producer exit {fill.returncode} after {pushed:,} items (used_memory "
                f"{used / 2**20:.1f} MiB of {maxmemory}); 2 consumers started on the full Redis "
                f"exit {codes}, drained in {seconds:.2f} s ({pushed / seconds:,.0f} items/s incl. "
                f"start-up); consumed {consumed:,}, lost {pushed - consumed}")
    finally:
        proc.terminate()
        proc.wait(10)


def resume_round(maxmemory: str, workdir: Path, items: int) -> str:
    proc, port = start_redis(maxmemory, workdir)
    client = redis.Redis(port=port)
    try:
        producer = subprocess.Popen([*PCQ, "produce", "--items", str(items), "--batch", "100",
                                     "--high-water", "0", "--full-timeout", "120", "--json"],
                                    env=env(port), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)  # fmt: skip
        key = run_key(client)
        last, still = -1, 0.0
        while True:  # blocked = `produced` unchanged for 1 s
            now_produced = int(client.hget(key, "produced") or 0)
            if now_produced != last:
                last, still = now_produced, time.monotonic()
            elif time.monotonic() - still > 1.0:
                break
            time.sleep(0.01)
        blocked_at = last
        started = time.monotonic()
        crew = consumer(port)
        first_ack = None
        while int(client.hget(key, "produced") or 0) == blocked_at:
            if first_ack is None and client.bitcount(f"{key}:bits"):
                first_ack = time.monotonic()
            time.sleep(0.002)
        resumed = time.monotonic()
        out, err = producer.communicate(timeout=600)
        crew.wait(120)
        lines = (out or err).decode(errors="replace").strip().splitlines()
        tally = lines[-1] if lines else "-"
        after_ack = "n/a" if first_ack is None else f"{resumed - first_ack:.3f} s"
        return (f"resume: blocked at {blocked_at:,} items; producer pushing again "
                f"{resumed - started:.2f} s after the consumer started ({after_ack} after its "
                f"first ack); producer exit {producer.returncode}, tally {tally[:160]}")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--maxmemory", default="16mb")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--items", type=int, default=150_000,
                    help="resume round: items of the blocked run (its acked bitmap must fit too)")
    args = ap.parse_args()
    if not shutil.which("redis-server"):
        print("redis-server not found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.repeat):
            print(f"round {n + 1}, load before {load()}")
            print("  " + drain_round(args.maxmemory, Path(tmp)), flush=True)
            print("  " + resume_round(args.maxmemory, Path(tmp), args.items), flush=True)
            print(f"  load after {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
