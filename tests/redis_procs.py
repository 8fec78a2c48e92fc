"""Helpers for tests that run ``python -m pcq.producer`` / ``python -m pcq.consumer`` processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.acked import is_acked
from pcq.core.redis_list.envelope import size, unpack

HOST = socket.gethostname()


def env_for(settings: RedisSettings, **extra: str) -> dict[str, str]:
    """The environment a container would get: REDIS_URL, PCQ_QUEUE, ..."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PCQ_", "REDIS_"))}
    env.update(
        REDIS_URL=settings.url,
        PCQ_QUEUE=settings.queue,
        PCQ_HEARTBEAT_TTL=str(settings.heartbeat_ttl),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Proc:
    """A pcq process with its output in files (no pipe can fill up and block it)."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = f"{module}-{time.monotonic_ns()}"
        self.out_path = workdir / f"{self.name}.out"
        self.err_path = workdir / f"{self.name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", f"pcq.{module}", *args], stdout=out, stderr=err, env=env
            )
        self.pid = self.popen.pid
        self.consumer_id = f"{HOST}:{self.pid}"

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s\nstdout:\n{self.stdout[-2000:]}"
                f"\nstderr:\n{self.stderr[-2000:]}"
            ) from None

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def json(self) -> dict[str, Any]:
        """The one JSON object the process printed on stdout."""
        lines = self.stdout.strip().splitlines()
        assert len(lines) == 1, f"expected one JSON line, got:\n{self.stdout}\n{self.stderr}"
        result: dict[str, Any] = json.loads(lines[0])
        return result

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)


@contextmanager
def processes(workdir: Path) -> Iterator[Callable[..., Proc]]:
    """Start pcq processes with ``start(module, *args, env=...)``; kill leftovers at exit."""
    started: list[Proc] = []

    def start(module: str, *args: str, env: dict[str, str]) -> Proc:
        proc = Proc(module, list(args), env, workdir)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


def registered(client: redis.Redis, settings: RedisSettings) -> set[str]:
    """Consumer ids registered on the queue."""
    return {c.decode() for c in client.smembers(Keys(settings.queue).consumers)}


def only_run(client: redis.Redis, settings: RedisSettings) -> str | None:
    """The queue's run id, once a producer has registered it."""
    runs = client.zrange(Keys(settings.queue).runs, 0, -1)
    return runs[0].decode() if runs else None


def acked_by(client: redis.Redis, settings: RedisSettings, run: str, consumer: str) -> int:
    """How many acknowledgements ``consumer`` made for ``run``."""
    return int(client.hget(Keys(settings.queue).by_consumer(run), consumer) or 0)


def held_items(client: redis.Redis, key: str) -> int:
    """Items in a processing list (each element an envelope of one or more items)."""
    return sum(size(element) for element in client.lrange(key, 0, -1))


def unacked_held(client: redis.Redis, keys: Keys, consumer: str) -> int:
    """Items in ``consumer``'s processing list not acknowledged (bitmap or set): what a
    reaper hands back (it skips the acknowledged ones still inside an envelope)."""
    count = 0
    for element in client.lrange(keys.processing(consumer), 0, -1):
        for raw in unpack(element):
            item_id = json.loads(raw)["id"]
            count += not is_acked(client, keys, item_id)
    return count


def queued_items(client: redis.Redis, settings: RedisSettings) -> int:
    """Items waiting in the queue: one per element plus the envelopes' extra items."""
    keys = Keys(settings.queue)
    elements = client.llen(keys.queue)
    return elements + max(0, int(client.get(keys.queue_extra) or 0)) if elements else 0


def processing_lists(client: redis.Redis, settings: RedisSettings) -> dict[str, int]:
    """Every processing list of the queue that exists, with its length."""
    pattern = Keys(settings.queue).processing("*")
    return {k.decode(): client.llen(k) for k in client.scan_iter(match=pattern)}
