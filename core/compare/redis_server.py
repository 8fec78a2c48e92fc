"""A throwaway ``redis-server`` for ``pcq compare`` when no ``REDIS_URL`` is set.

It listens on 127.0.0.1 only, on a free port, with a random password, no
persistence and a temporary directory, and it is always stopped (and its
directory removed) when the comparison ends, even on Ctrl-C or an error.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import redis

from pcq.core.errors import PcqError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ThrowawayRedis", "find_redis_server", "free_port"]

START_TIMEOUT = 10.0


def find_redis_server() -> str | None:
    """Path of the ``redis-server`` binary, or None.

    ``PCQ_REDIS_SERVER`` names another binary (empty or missing: none at all).
    """
    override = os.environ.get("PCQ_REDIS_SERVER")
    if override is not None:
        return override if override and os.access(override, os.X_OK) else None
    found = shutil.which("redis-server")
    if found:
        return found
    fallback = Path("/usr/bin/redis-server")
    return str(fallback) if fallback.exists() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (it may be taken before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayRedis:
    """Context manager: start a private redis-server, yield its URL, stop it."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.password = secrets.token_hex(12)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """URL with the password (never print it: use :attr:`where`)."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def where(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until it answers PING (PcqError if it does not)."""
        self._dir = tempfile.TemporaryDirectory(prefix="pcq-compare-redis-")
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            args = [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--requirepass", self.password, "--dir", self._dir.name,
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--loglevel", "warning", "--logfile", "",
            ]  # fmt: skip
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C is ours to handle: we stop it ourselves
            )
            if self._wait_ready():
                return
            self._reap()
        self.stop()
        raise PcqError(f"could not start a throwaway {self.binary}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        with redis.Redis(host="127.0.0.1", port=self.port, password=self.password) as probe:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    return False
                try:
                    if probe.ping():
                        return True
                except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                    pass
                time.sleep(0.02)
        return False

    def version(self) -> str | None:
        """The server's version string, if it answers."""
        try:
            with redis.Redis(host="127.0.0.1", port=self.port, password=self.password) as c:
                return str(c.info("server").get("redis_version"))
        except redis.RedisError:
            return None

    def _reap(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        self._reap()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
