"""The measurement every peer shares: start two workers, time N enqueues until done.

Runs inside one peer's virtualenv (stdlib and redis-py only; every peer's
virtualenv has redis-py) as ``python -m peers.drive --peer MODULE ...``: the peer
module (imported by its real name, so its job functions are importable by the
workers too) exposes ``PEER``, a class built as ``PEER(url, variant)`` that is a
:class:`Peer`. ``main`` parses ``--peer --url --items --variant --warmup``, then:

1. starts the peer's worker processes (``Peer.worker_commands``, always two
   worker processes of the system's own kind);
2. warm-up: enqueues ``--warmup`` jobs and waits until the system says they are
   done, then until the number of Redis clients has not changed for 1 s (both
   workers connected and idle) -- none of this is timed;
3. the clock starts, this process enqueues ``--items`` jobs one by one
   (``Peer.produce``), then polls ``Peer.done()`` every 5 ms; the clock stops at
   the first poll that finds every job done. ``done()`` reads the system's own
   state (result backend, registry, queue length + in flight), never a counter
   the job increments;
4. stops the workers (SIGTERM, then SIGKILL after 10 s) and prints one JSON line:
   ``{system, variant, version, settings, items, seconds, enqueue_seconds, cpu}``.

``cpu`` is CPU seconds spent inside the clock by the producer (this process,
while it enqueues), the workers (every process of their sessions, read from
``/proc``; children reaped meanwhile, such as RQ's work horses, count through
their parent's ``cutime``) and redis-server (``INFO cpu``). It moves less than
items/s with the load other work puts on the machine (not nothing: a slower run
pays more for the systems' timers and polling).

Any failure prints ``{"error": "..."}`` instead, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from typing import Any, Protocol

import redis

POLL = 0.005


class Peer(Protocol):
    """What a peer module provides (one object per system and variant)."""

    system: str
    version: str
    settings: dict[str, Any]

    def worker_commands(self) -> list[list[str]]: ...
    def produce(self, n: int, tag: str) -> None: ...  # n jobs, enqueued one by one
    def begin(self, tag: str) -> None: ...  # before a phase: reset what done() compares
    def done(self, n: int) -> bool: ...  # every job of the current phase finished
    def close(self) -> None: ...


def other_db(url: str, db: int = 1) -> str:
    """The same server, another database (for result backends counted with DBSIZE)."""
    return f"{url.rsplit('/', 1)[0]}/{db}"


def bin_path(name: str) -> str:
    """A console script of this virtualenv (the one running this module)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def _clients(url: str) -> int:
    with redis.Redis.from_url(url) as r:
        return len(r.client_list()) - 1  # not this probe


def _wait(peer: Peer, n: int, timeout: float, workers: list[subprocess.Popen[bytes]]) -> float:
    """Poll until ``peer.done(n)``; return the monotonic time it was first seen."""
    deadline = time.monotonic() + timeout
    while not peer.done(n):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:g}s")
        dead = [w.args for w in workers if w.poll() is not None]
        if dead:
            raise RuntimeError(f"worker exited early: {' '.join(map(str, dead[0]))}")
        time.sleep(POLL)
    return time.monotonic()


def _settle(url: str, quiet_for: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until the number of Redis clients has been steady for ``quiet_for`` s."""
    deadline = time.monotonic() + timeout
    last, since = _clients(url), time.monotonic()
    while time.monotonic() - since < quiet_for and time.monotonic() < deadline:
        time.sleep(0.1)
        now = _clients(url)
        if now != last:
            last, since = now, time.monotonic()


def _session_cpu(sessions: set[int]) -> float:
    """CPU seconds (own + reaped children) of every process in ``sessions``."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        # after the command: state ppid pgrp session ... utime(11) stime cutime cstime(14)
        if int(fields[3]) in sessions:
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _redis_cpu(url: str) -> float:
    with redis.Redis.from_url(url) as r:
        info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for w in workers:
        try:
            w.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait()


def measure(peer: Peer, url: str, items: int, warmup: int, log: str) -> dict[str, Any]:
    """Steps 1-4 of the module docstring; the workers are stopped whatever happens."""
    workers = []
    with open(log, "ab") as sink:
        for cmd in peer.worker_commands():
            # Own process group: SIGTERM reaches a worker's children too (Celery, Huey, SAQ).
            workers.append(subprocess.Popen(cmd, stdout=sink, stderr=sink, start_new_session=True))
    try:
        peer.begin("warmup")
        peer.produce(warmup, "warmup")
        _wait(peer, warmup, 120, workers)
        _settle(url)
        peer.begin("timed")
        sessions = {w.pid for w in workers}
        cpu0 = (_session_cpu(sessions), _redis_cpu(url))
        start, producer0 = time.monotonic(), time.process_time()
        peer.produce(items, "timed")
        enqueued, producer = time.monotonic(), time.process_time() - producer0
        end = _wait(peer, items, 600, workers)
        cpu = {"producer": producer, "workers": _session_cpu(sessions) - cpu0[0],
               "redis": _redis_cpu(url) - cpu0[1]}  # fmt: skip
    finally:
        _stop(workers)
        peer.close()
    return {"system": peer.system, "version": peer.version, "settings": peer.settings,
            "items": items, "seconds": end - start, "enqueue_seconds": enqueued - start, "cpu": cpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="Time one peer system (see the module docstring).")
    parser.add_argument("--peer", required=True, help="module name under peers/, e.g. rq_peer")
    parser.add_argument("--url", required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--variant", default="default")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--log", default=os.devnull, help="workers' stdout/stderr go here")
    opts = parser.parse_args()
    try:
        # Worker processes and module-level app objects read these (workers inherit them).
        os.environ["BENCH_REDIS_URL"], os.environ["BENCH_VARIANT"] = opts.url, opts.variant
        module = importlib.import_module(f"peers.{opts.peer}")
        peer = module.PEER(opts.url, opts.variant)
        result = measure(peer, opts.url, opts.items, opts.warmup, opts.log)
        result["variant"] = opts.variant
    except Exception as exc:  # noqa: BLE001 - one line for the orchestrator, details in the log
        with open(opts.log, "a", encoding="utf-8") as sink:
            traceback.print_exc(file=sink)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}))
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
