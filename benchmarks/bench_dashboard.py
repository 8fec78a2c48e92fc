"""Benchmark: what ``pcq dashboard`` costs -- its CPU, and the Redis commands it adds.

Usage::

    .venv/bin/python benchmarks/bench_dashboard.py [--consumers 8] [--seconds 30]
        [--interval 1.0] [--pages 1] [--json]

A throwaway ``redis-server``, ``--consumers`` host consumers (``pcq consume``,
demo handler with ``PCQ_MAX_DELAY=0.05``) and five finished runs in the index
(the view reads the newest runs' tallies), then four phases of ``--seconds`` each:

1. idle, no dashboard: the consumers' own commands (heartbeats, idle BLMOVEs);
2. idle, ``pcq dashboard --interval`` with ``--pages`` pages open (each an
   event-stream reader, like a browser tab);
3. busy (a producer streams items), dashboard still on;
4. busy, dashboard stopped.

Redis commands/s come from ``INFO stats`` ``total_commands_processed`` deltas
(no MONITOR); the dashboard's CPU is its process's user+system time over the
phase (psutil), in % of one core. The extra commands/s are phase 2 - phase 1
(idle: steady, so the difference is the dashboard's) and phase 3 - phase 4
(busy: noisy, the consumers' own rate varies). Exact counts too: in phases 2
and 3 every pcq process is paused (SIGSTOP) while this script reads the view
once (:func:`pcq.core.monitor.view.read_view`, what the dashboard does per
tick) and counts the commands that took; /s is that over ``--interval``.
Prints the machine's load average with the figures; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pcq.core.compare.redis_server import ThrowawayRedis, find_redis_server, free_port


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def measure(client: redis.Redis, seconds: float, dash: psutil.Process | None) -> dict[str, float]:
    """Commands/s over ``seconds``, and the dashboard's CPU % of one core if it runs."""
    before, started = commands(client), time.monotonic()
    cpu_before = sum(dash.cpu_times()[:2]) if dash else 0.0
    time.sleep(seconds)  # the measurement window itself
    took = time.monotonic() - started
    result = {"commands_per_second": round((commands(client) - before - 2) / took, 1)}
    if dash is not None:
        result["dashboard_cpu_percent"] = round(100 * (sum(dash.cpu_times()[:2]) - cpu_before) / took, 2)
    return result


def per_view(client: redis.Redis, url: str, procs: list[subprocess.Popen[bytes]]) -> int:
    """Commands one read of the view sends, counted with every pcq process paused."""
    from pcq.core.monitor.view import read_view
    from pcq.core.redis_common.connection import connect
    from pcq.core.redis_common.settings import RedisSettings

    settings = RedisSettings(url=url, queue="bench")
    reader = connect(settings)
    reader.ping()
    for proc in procs:
        proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(0.2)  # replies in flight land
        start = commands(client)
        overhead = commands(client) - start  # one INFO
        start = commands(client)
        read_view(reader, settings, "pcq-rq")
        return commands(client) - start - overhead
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
        reader.close()


def _read_all(stream: Any) -> None:
    try:
        for _ in stream:
            pass
    except (OSError, ValueError, AttributeError):  # closed by open_pages' caller
        pass


def open_pages(port: int, count: int) -> list[Any]:
    """``count`` event-stream readers (a browser tab each); close them to stop."""
    streams = []
    for _ in range(count):
        stream = urllib.request.urlopen(f"http://127.0.0.1:{port}/events", timeout=30)
        threading.Thread(target=_read_all, args=(stream,), daemon=True).start()
        streams.append(stream)
    return streams


def wait_registered(client: redis.Redis, count: int, timeout: float = 120) -> None:
    """Until ``count`` consumers have registered (slow to start on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while client.scard("pcq:{bench}:consumers") < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} consumers did not register within {timeout:g} s")
        time.sleep(0.2)


def wait_healthy(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                if json.load(reply)["healthy"]:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit("the dashboard did not come up")


def run(args: argparse.Namespace) -> dict[str, Any]:
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("needs redis-server (apt-get install redis-server)")
    with ThrowawayRedis(binary) as server:
        env = {**os.environ, "REDIS_URL": server.url, "PCQ_QUEUE": "bench", "PCQ_MAX_DELAY": "0.05"}
        client = redis.Redis.from_url(server.url)
        for _ in range(5):  # finished runs in the index, as after a few demos
            subprocess.run([sys.executable, "-m", "pcq.producer", "--items", "0", "--timeout", "5"],
                           env=env, check=True, capture_output=True, timeout=60)  # fmt: skip
        consumers = [spawn(env, "pcq.consumer", "--quiet") for _ in range(args.consumers)]
        procs: list[subprocess.Popen[bytes]] = list(consumers)
        try:
            wait_registered(client, args.consumers)
            time.sleep(3)  # settled into idle polling
            phases: dict[str, Any] = {"idle, no dashboard": measure(client, args.seconds, None)}
            port = free_port()
            dash = spawn(env, "pcq.core", "dashboard", "--port", str(port), "--interval",
                         str(args.interval))  # fmt: skip
            procs.append(dash)
            wait_healthy(port)
            pages = open_pages(port, args.pages)
            watched = psutil.Process(dash.pid)
            phases["idle, dashboard on"] = measure(client, args.seconds, watched)
            phases["idle, dashboard on"]["commands_per_view"] = per_view(client, server.url, procs)
            procs.append(spawn(env, "pcq.producer", "--items", "1000000", "--high-water", "2000"))
            time.sleep(3)
            phases["busy, dashboard on"] = measure(client, args.seconds, watched)
            phases["busy, dashboard on"]["commands_per_view"] = per_view(client, server.url, procs)
            for page in pages:
                page.close()
            dash.send_signal(signal.SIGTERM)
            dash.wait(timeout=30)
            phases["busy, no dashboard"] = measure(client, args.seconds, None)
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            client.close()
    return {
        "consumers": args.consumers, "seconds": args.seconds, "interval": args.interval,
        "pages": args.pages, "phases": phases, "loadavg": os.getloadavg(), "cpus": os.cpu_count(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--pages", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.consumers} consumers, {args.seconds:g} s per phase, dashboard --interval "
          f"{args.interval:g}, {args.pages} page(s) open; {result['cpus']} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in result['loadavg'])}")  # fmt: skip
    print("| phase | Redis commands/s, all clients | dashboard CPU (% of one core) "
          "| commands per view read |\n| --- | --- | --- | --- |")
    for name, figures in result["phases"].items():
        cpu, each = figures.get("dashboard_cpu_percent"), figures.get("commands_per_view")
        print(f"| {name} | {figures['commands_per_second']:,.1f} | {'-' if cpu is None else cpu} "
              f"| {'-' if each is None else each} |")


if __name__ == "__main__":
    main()
