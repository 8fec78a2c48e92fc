"""Benchmark: whole ``pcq produce`` + ``pcq consume`` processes vs raw redis-py scripts (not a test).

What a user runs, start-up included: one producer process and one consumer
process, started together against a throwaway ``redis-server``; the clock runs
from their start until both have exited.

* raw, batched: a Python script ``RPUSH``-ing 100 names per call, another
  ``LPOP``-ing 100 at a time (``BLPOP`` when it finds nothing) until it has N;
* raw, unbatched: ``RPUSH`` one name per call / ``BLPOP`` one;
* pcq: ``pcq produce --items N --batch B --json`` (waits for its tally) and
  ``pcq consume --drain --quiet --max-delay 0 --batch B`` (exits once drained).

Every round runs the modes interleaved (raw, then each pcq given), so load
changes hit them alike; the table shows every round, then medians. CPU per
item sums the two processes' own CPU (``os.wait4``) and redis-server's
(``INFO cpu``). ``--pcq`` may name several executables (e.g. an older checkout's
``.venv/bin/pcq``) to compare versions in one run.

``--local`` runs ``pcq local`` (one producer, one consumer, ``--max-delay 0
--quiet``; ``--ack batch`` when batched) against a raw ``multiprocessing.Queue``
script the same way, CPU counted over each process tree.

Usage: ``python benchmarks/bench_processes.py [--items N] [--unbatched-items N]
[--rounds R] [--pcq PATH ...] [--local]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis
from bench_redis import start_server

# The raw loops are bench_redis.py's own, run as whole processes from this folder.
RAW_PRODUCER = """
import sys, redis
from bench_redis import raw_push
from pcq.core.names import generated_name
port, n, batch = (int(a) for a in sys.argv[1:4])
raw_push(redis.Redis(port=port), [generated_name(i) for i in range(n)], batch)
"""

RAW_CONSUMER = """
import sys, redis
from bench_redis import raw_pop
port, n, batch = (int(a) for a in sys.argv[1:4])
raw_pop(redis.Redis(port=port), n, batch)
"""

RAW_LOCAL = """
import multiprocessing as mp, sys
from pcq.core.names import generated_name
n, batch = int(sys.argv[1]), int(sys.argv[2])

def produce(q):
    names = [generated_name(i) for i in range(n)]
    if batch == 1:
        for name in names:
            q.put(name)
    else:
        for i in range(0, n, batch):
            q.put(names[i : i + batch])
    q.put(None)

def consume(q):
    while q.get() is not None:
        pass

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=produce, args=(q,)), ctx.Process(target=consume, args=(q,))]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
"""


@dataclass
class Sample:
    """One run of one mode: wall seconds and CPU seconds (producer, consumer, redis)."""

    seconds: float
    cpu: dict[str, float]

    def rate(self, n: int) -> float:
        return n / self.seconds

    def cpu_us(self, n: int) -> str:
        parts = "+".join(f"{self.cpu[k] / n * 1e6:.1f}" for k in ("producer", "consumer", "redis"))
        return f"{sum(self.cpu.values()) / n * 1e6:.1f} ({parts})"


def redis_cpu(port: int) -> float:
    with redis.Redis(port=port) as r:
        info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_pair(port: int, producer: list[str], consumer: list[str], env: dict[str, str]) -> Sample:
    """Start both processes at once; wait for both; return wall time and CPU."""
    before = redis_cpu(port)
    start = time.monotonic()
    procs = {
        "consumer": subprocess.Popen(consumer, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
        "producer": subprocess.Popen(producer, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    }
    cpu: dict[str, float] = {}
    for role, proc in procs.items():
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu[role] = usage.ru_utime + usage.ru_stime
        if proc.returncode != 0:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"{role} exited {proc.returncode}: {err[-2000:]}")
    seconds = time.monotonic() - start
    out = procs["producer"].stdout
    if out is not None and "pcq" in producer[0]:
        tally = json.loads(out.read())
        if tally["lost"] != 0 or tally["consumed"] != tally["produced"]:
            raise SystemExit(f"pcq lost items, figure not valid: {tally}")
    for proc in procs.values():
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    cpu["redis"] = redis_cpu(port) - before
    return Sample(seconds, cpu)


def raw(port: int, n: int, batch: int) -> Sample:
    args = [str(port), str(n), str(batch)]
    with redis.Redis(port=port) as r:
        r.delete("raw")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # for bench_redis
    return run_pair(port, [sys.executable, "-c", RAW_PRODUCER, *args],
                    [sys.executable, "-c", RAW_CONSUMER, *args], env)  # fmt: skip


def pcq(port: int, n: int, batch: int, exe: str, queue: str) -> Sample:
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "PCQ_QUEUE": queue}
    common = ["--batch", str(batch)]
    producer = [exe, "produce", "--items", str(n), "--json", "--high-water", "10000", *common]
    consumer = [exe, "consume", "--drain", "--quiet", "--max-delay", "0", *common]
    return run_pair(port, producer, consumer, env)


def run_one(command: list[str]) -> Sample:
    """One process tree (the local demo): wall time and the CPU of it and its children."""
    start = time.monotonic()
    before = os.times()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return Sample(time.monotonic() - start, {"producer": cpu, "consumer": 0.0, "redis": 0.0})


def local(rounds: int, n: int, batch: int, exes: list[str]) -> None:
    """``pcq local`` (1 producer, 1 consumer) vs a raw multiprocessing.Queue script, whole processes."""
    rates: dict[str, list[float]] = {}
    for rnd in range(rounds):
        contenders = [("raw", [sys.executable, "-c", RAW_LOCAL, str(n), str(batch)])]
        for i, exe in enumerate(exes):
            contenders.append((f"pcq{i}", [exe, "local", "--producers", "1", "--consumers", "1",
                                           "--items", str(n), "--batch", str(batch), "--max-delay",
                                           "0", "--quiet", "--ack", "batch" if batch > 1 else "item"]))  # fmt: skip
        for name, command in contenders:
            sample = run_one(command)
            rates.setdefault(name, []).append(sample.rate(n))
            print(f"round {rnd + 1} local batch {batch:<3} {name:5} {sample.rate(n):>10,.0f} items/s "
                  f"{sample.seconds:6.2f} s  CPU us/item {sample.cpu['producer'] / n * 1e6:.1f} "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    base = statistics.median(rates["raw"])
    for name, values in rates.items():
        print(f"local batch {batch:<3} {name:5} median {statistics.median(values):>10,.0f} items/s "
              f"(range {min(values):,.0f}-{max(values):,.0f}), {statistics.median(values) / base:.2f}x raw")


def compile_sources(exe: str) -> None:
    """Write the bytecode of the pcq that ``exe`` runs, once, before any timing.

    An editable checkout has none when ``PYTHONDONTWRITEBYTECODE`` is set (this
    project's machines set it): every ``pcq`` process then compiled its own
    modules, ~0.05 s of start-up that an installed pcq (pip compiles) never pays.
    """
    python = Path(exe).read_text().splitlines()[0].removeprefix("#!").strip()
    if "python" not in Path(python).name:  # a wrapper script: its own pcq's turn comes
        print(f"{exe}: not a Python console script, its bytecode is left as it is")
        return
    where = "import os, pcq.core as c; print(os.path.dirname(os.path.dirname(c.__file__)))"
    top = subprocess.run([python, "-c", where], check=True, capture_output=True, text=True)
    folders = [str(Path(top.stdout.strip()) / name) for name in ("core", "producer", "consumer")]
    subprocess.run([python, "-m", "compileall", "-q", *folders], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500_000, help="items, batch 100")
    parser.add_argument("--unbatched-items", type=int, default=20_000, help="items, batch 1")
    parser.add_argument("--rounds", type=int, default=3)
    beside = Path(sys.executable).with_name("pcq")  # this interpreter's own pcq, if installed
    default = str(beside) if beside.exists() else shutil.which("pcq") or "pcq"
    parser.add_argument("--pcq", nargs="+", default=[default],
                        help="pcq executables to compare (default: this Python's)")  # fmt: skip
    parser.add_argument("--local", action="store_true",
                        help="pcq local vs a raw multiprocessing.Queue script instead of Redis")  # fmt: skip
    opts = parser.parse_args()
    for exe in opts.pcq:
        compile_sources(exe)
    if opts.local:
        print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
        local(opts.rounds, opts.unbatched_items, 1, opts.pcq)
        local(opts.rounds, opts.items, 100, opts.pcq)
        return
    print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
    modes = [("batch 100", opts.items, 100), ("unbatched", opts.unbatched_items, 1)]
    results: dict[tuple[str, str], list[Sample]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_server(tmp)
        try:
            for rnd in range(opts.rounds):
                for mode, n, batch in modes:
                    with redis.Redis(port=port) as r:
                        r.flushall()
                    contenders = [("raw", partial(raw, port, n, batch))]
                    for i, exe in enumerate(opts.pcq):
                        name = f"pcq{i}" if len(opts.pcq) > 1 else "pcq"
                        contenders.append((name, partial(pcq, port, n, batch, exe, f"b{rnd}{i}")))
                    for name, go in contenders:
                        sample = go()
                        results.setdefault((mode, name), []).append(sample)
                        print(f"round {rnd + 1} {mode:9} {name:5} {sample.rate(n):>10,.0f} items/s "
                              f"{sample.seconds:6.2f} s  CPU us/item {sample.cpu_us(n)}  "
                              f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=10)
    print()
    for mode, n, _ in modes:
        base = statistics.median(s.rate(n) for s in results[(mode, "raw")])
        for (m, name), samples in results.items():
            if m != mode:
                continue
            rates = [s.rate(n) for s in samples]
            print(f"{mode:9} {name:5} median {statistics.median(rates):>10,.0f} items/s "
                  f"(range {min(rates):,.0f}-{max(rates):,.0f}), "
                  f"{statistics.median(rates) / base:.2f}x raw")  # fmt: skip
    for i, exe in enumerate(opts.pcq):
        print(f"pcq{i}: {Path(exe).resolve()}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")


if __name__ == "__main__":
    main()
