"""A real ``redis-server`` for the tests (never a mock, never fakeredis).

* ``redis_server`` (session): one server on a free port, with a password,
  AOF on (``appendfsync always``: an acknowledged write is on disk), in a tmp
  dir. Tests share it but each gets its own queue name (``redis_settings``).
* ``fresh_redis_server`` (function): a server of its own, for tests that
  SIGKILL and restart it (same port, same dir, so the AOF is replayed).

Both skip when /usr/bin/redis-server is missing (``scripts/test`` installs it).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from pcq.core.compare.redis_server import free_port
from pcq.core.console import Console
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.settings import RedisSettings

REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"
PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]
START_TIMEOUT = 15.0
S = TypeVar("S", bound="RedisServer")


class RedisServer:
    """A redis-server process we own: start, SIGKILL, restart on the same port/dir."""

    fsync = "always"  # an acknowledged write is on disk (subclasses may relax it)
    extra: tuple[str, ...] = ()  # more redis-server arguments (e.g. --maxmemory)

    def __init__(self, workdir: Path, password: str = PASSWORD) -> None:
        self.dir = workdir
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def settings(self, **kwargs: object) -> RedisSettings:
        """Settings for this server; a fresh queue name unless one is given."""
        kwargs.setdefault("queue", "t-" + uuid.uuid4().hex[:10])
        return RedisSettings(url=self.url, **kwargs)  # type: ignore[arg-type]

    def client(self) -> redis.Redis:
        """A plain client (the caller closes it)."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers PING."""
        assert self.proc is None, "already running"
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", *self._auth_args(),
            "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", self.fsync,
            "--save", "", "--daemonize", "no", "--loglevel", "warning", *self.extra,
        ]  # fmt: skip
        self._log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - closed in _reap
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        with self.client() as probe:
            while True:
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                    self._reap()
                    raise RuntimeError(f"redis-server did not start:\n{log}")
                time.sleep(0.02)

    def _auth_args(self) -> list[str]:
        """How the server checks clients (a subclass may use an ACL file instead)."""
        return ["--requirepass", self.password]

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final fsync)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def restart(self) -> None:
        """Start again on the same port and dir (AOF replayed)."""
        self.start()

    def stop(self) -> None:
        """Terminate gracefully, SIGKILL if it does not go."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _need_redis() -> None:
    if not os.access(REDIS_BIN, os.X_OK):
        pytest.skip(f"{REDIS_BIN} not found (scripts/test installs the redis-server package)")


def serving(server: S) -> Iterator[S]:
    """Fixture body: skip without redis-server, else start ``server``, yield it, stop it."""
    _need_redis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole session."""
    yield from serving(RedisServer(tmp_path_factory.mktemp("redis")))


@pytest.fixture
def fresh_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (it may kill and restart it)."""
    yield from serving(RedisServer(tmp_path / "redis"))


@pytest.fixture
def redis_settings(redis_server: RedisServer) -> RedisSettings:
    """Settings on the shared server with a queue name of this test's own."""
    return redis_server.settings(heartbeat_ttl=2.0)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client on the shared server, closed after the test."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def client(redis_settings: RedisSettings) -> Iterator[redis.Redis]:
    """pcq's own connection (``pcq.core.redis_common.connection.connect``) for this test's settings."""
    conn = connect(redis_settings)
    try:
        yield conn
    finally:
        conn.close()


def quiet() -> Console:
    """A console that prints nothing (for produce/consume in-process)."""
    return Console(stream=io.StringIO(), quiet=True)
