"""Benchmark: pcq's Redis list next to the queues a user would pick instead (not a test).

The same no-op workload through every system: one producer enqueues N jobs one
by one (pcq: N items, in ``put`` calls of its batch size), two worker processes
of the system's own kind run them, and the clock runs from the first enqueue to
the moment the system's own state says the last job is done (result backend,
registry, or queue length + in flight; never a counter the job increments).
What each system counts as done is in its module's docstring under
``benchmarks/peers/``; the shared measurement is :mod:`peers.drive`.

Systems (``--only`` takes these names, or their first part: ``rq``, ``celery``, ``pcq``):

* ``pcq-b1``, ``pcq-b100``: ``pcq consume --batch 1 / 100`` x 2, this project's virtualenv;
* ``rq-fork``, ``rq-simple``: ``rq worker`` x 2, forking ``Worker`` / ``SimpleWorker``;
* ``dramatiq``: Redis broker, ``--processes 2``;
* ``celery``, ``celery-acks-late``: Redis broker + Redis result backend, prefork ``--concurrency 2``;
* ``huey``: ``RedisHuey``, ``huey_consumer -k process -w 2``;
* ``saq``: ``saq ... --workers 2``;  ``arq``: two ``arq`` workers;
* ``taskiq``: taskiq-redis ``RedisStreamBroker`` + Redis result backend, ``--workers 2``.

Each peer lives in its own virtualenv, ``benchmarks/.venvs/<name>`` (gitignored),
made on first use with pip (their Redis client pins clash: arq wants redis<6,
SAQ redis<8, the rest take 8). Every measurement gets a fresh throw-away
``redis-server`` (no password, no persistence, 127.0.0.1, free port). Rounds are
interleaved (every system once, then again); the table shows every round, the
median and the range, with the load average at start and end, and next to them
the CPU time per job (producer + workers + redis-server, inside the clock; see
:mod:`peers.drive`), which moves less with the machine's load than items/s. A system that
fails to install or to run is reported in one line and the others go on.

Usage::

    .venv/bin/python benchmarks/bench_peers.py [--items 5000] [--rounds 3]
        [--only pcq,huey] [--json]
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from pcq.core.compare.redis_server import free_port

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
STAMP = "pcq-requirements.txt"  # what a virtualenv was made with; another list remakes it
err = Console(stderr=True, highlight=False, width=200)


@dataclass(frozen=True)
class System:
    name: str
    module: str  # under benchmarks/peers/
    variant: str
    venv: str | None  # None: this project's own virtualenv (pcq)
    requirements: tuple[str, ...] = ()


SYSTEMS = [
    System("pcq-b1", "pcq_list", "default", None),
    System("pcq-b100", "pcq_list", "batch100", None),
    System("rq-fork", "rq_peer", "fork", "rq", ("rq", "redis")),
    System("rq-simple", "rq_peer", "simple", "rq", ("rq", "redis")),
    System("dramatiq", "dramatiq_peer", "default", "dramatiq", ("dramatiq[redis]",)),
    System("celery", "celery_peer", "default", "celery", ("celery[redis]",)),
    System("celery-acks-late", "celery_peer", "acks_late", "celery", ("celery[redis]",)),
    System("huey", "huey_peer", "default", "huey", ("huey", "redis")),
    # saq's wheel does not declare typing_extensions, which it imports
    System("saq", "saq_peer", "default", "saq", ("saq[redis]", "typing_extensions")),
    System("arq", "arq_peer", "default", "arq", ("arq",)),
    System("taskiq", "taskiq_peer", "default", "taskiq", ("taskiq", "taskiq-redis")),
]


@dataclass
class Outcome:
    """Every round of one system: items/s, or why it has none."""

    system: System
    rates: list[float] = field(default_factory=list)
    cpu_us: list[dict[str, float]] = field(default_factory=list)  # per job, each round
    errors: list[str] = field(default_factory=list)
    version: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


def select(only: str | None, parser: argparse.ArgumentParser) -> list[System]:
    if not only:
        return list(SYSTEMS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [s for s in SYSTEMS if any(s.name == w or s.name.split("-")[0] == w for w in wanted)]
    unknown = [w for w in wanted if not any(s.name == w or s.name.split("-")[0] == w for s in SYSTEMS)]
    if unknown or not chosen:
        names = ", ".join(s.name for s in SYSTEMS)
        parser.error(f"unknown system(s) {', '.join(unknown) or only!r}; choose from {names}")
    return chosen


def python_of(system: System) -> Path:
    if system.venv is None:
        return Path(sys.executable)
    return VENVS / system.venv / "bin" / "python"


def ensure_venv(system: System) -> str | None:
    """Make (or reuse) the system's virtualenv; return an error line, or None when ready."""
    if system.venv is None:
        return None
    venv, wanted = VENVS / system.venv, "\n".join(system.requirements) + "\n"
    stamp = venv / STAMP
    if stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
        return None
    err.print(f"[dim]installing {' '.join(system.requirements)} into {venv.relative_to(HERE.parent)}[/]")
    log = VENVS / f"{system.venv}-install.log"
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as sink:
        for cmd in ([sys.executable, "-m", "venv", "--clear", str(venv)],
                    [str(venv / "bin" / "pip"), "install", "-q", *system.requirements]):  # fmt: skip
            if subprocess.run(cmd, stdout=sink, stderr=sink, timeout=900, check=False).returncode != 0:
                return f"install failed ({' '.join(system.requirements)}): see {log}"
    stamp.write_text(wanted, encoding="utf-8")
    return None


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server (no password, no persistence) on a free port: its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", tmp, "--loglevel", "warning"]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            with redis.Redis(port=port) as probe:
                while True:
                    try:
                        probe.ping()
                        break
                    except redis.ConnectionError:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise
                        time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_once(system: System, items: int, log: Path) -> dict[str, Any]:
    """One measurement in a fresh redis-server: the driver's JSON line (or ``{"error": ...}``)."""
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    # A generous bound: RQ's forking worker has managed under 100 jobs/s on a loaded machine.
    timeout = 120 + items / 10
    with redis_server() as url:
        cmd = [str(python_of(system)), "-m", "peers.drive", "--peer", system.module,
               "--variant", system.variant, "--url", url, "--items", str(items), "--log", str(log)]  # fmt: skip
        try:
            done = subprocess.run(cmd, env=env, cwd=HERE, capture_output=True, text=True,
                                  timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"error": f"no result within {timeout:.0f}s"}
    lines = done.stdout.strip().splitlines()
    try:
        return dict(json.loads(lines[-1]))
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:200]}"}


def spread(rates: list[float]) -> tuple[str, str]:
    if not rates:
        return "-", "-"
    return f"{statistics.median(rates):,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}"


def cpu_text(rounds: list[dict[str, float]]) -> str:
    """The median round by total CPU per job: ``total (producer+workers+redis)``."""
    if not rounds:
        return "-"
    mid = sorted(rounds, key=lambda c: sum(c.values()))[len(rounds) // 2]
    parts = "+".join(f"{mid[k]:.0f}" for k in ("producer", "workers", "redis"))
    return f"{sum(mid.values()):,.0f} ({parts})"


def table(outcomes: list[Outcome], items: int, rounds: int) -> Table:
    t = Table(title=f"{items:,} no-op jobs, 1 producer, 2 worker processes; items/s, {rounds} interleaved rounds")
    for col, just in (("system", "left"), ("version", "left"), ("every round", "right"),
                      ("median", "right"), ("range", "right"),
                      ("CPU us/job (prod+workers+redis)", "right")):  # fmt: skip
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for o in outcomes:
        every = ", ".join(f"{r:,.0f}" for r in o.rates) + "".join(" (failed)" for _ in o.errors)
        t.add_row(o.system.name, o.version or "-", every or "-", *spread(o.rates), cpu_text(o.cpu_us))
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5_000, help="jobs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--only", help="comma-separated systems (default: all)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    opts = parser.parse_args()
    if opts.items < 1 or opts.rounds < 1:
        parser.error("--items and --rounds must be at least 1")
    outcomes = [Outcome(s) for s in select(opts.only, parser)]
    for o in outcomes:
        if (problem := ensure_venv(o.system)) is not None:
            o.errors.append(problem)
            err.print(f"{o.system.name}: {problem}")
    runnable = [o for o in outcomes if not o.errors]
    logs = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    load_start = os.getloadavg()
    for rnd in range(1, opts.rounds + 1):
        for o in runnable:
            result = run_once(o.system, opts.items, logs / f"{o.system.name}.log")
            if "error" in result:
                o.errors.append(str(result["error"]))
                err.print(f"round {rnd} {o.system.name}: FAILED {result['error']} (log {logs})")
                continue
            o.version, o.settings = result["version"], result["settings"]
            o.rates.append(opts.items / result["seconds"])
            o.cpu_us.append({k: v / opts.items * 1e6 for k, v in result["cpu"].items()})
            err.print(f"round {rnd} {o.system.name}: {o.rates[-1]:,.0f} items/s "
                      f"(enqueue {opts.items / result['enqueue_seconds']:,.0f}/s), "
                      f"CPU us/job {cpu_text(o.cpu_us[-1:])}, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    load_end = os.getloadavg()
    report(outcomes, opts, load_start, load_end)


def report(outcomes: list[Outcome], opts: argparse.Namespace, start: tuple[float, ...],
           end: tuple[float, ...]) -> None:  # fmt: skip
    load = f"load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in start)}, " \
           f"at end {'/'.join(f'{x:.1f}' for x in end)}, on {os.cpu_count()} CPU(s)"  # fmt: skip
    if opts.json:
        doc = {"items": opts.items, "rounds": opts.rounds, "load_start": start, "load_end": end,
               "cpus": os.cpu_count(), "systems": [
                   {"name": o.system.name, "version": o.version, "settings": o.settings,
                    "items_per_second": o.rates, "cpu_us_per_job": o.cpu_us, "errors": o.errors,
                    "median": statistics.median(o.rates) if o.rates else None}
                   for o in outcomes]}  # fmt: skip
        print(json.dumps(doc, indent=2))
        return
    out = Console(width=160)
    out.print(table(outcomes, opts.items, opts.rounds))
    for o in outcomes:
        if o.settings:
            out.print(f"{o.system.name} {o.version}: " + ", ".join(f"{k}={v}" for k, v in o.settings.items()))
        for problem in dict.fromkeys(o.errors):
            out.print(f"{o.system.name}: {problem}")
    out.print(load)


if __name__ == "__main__":
    main()
