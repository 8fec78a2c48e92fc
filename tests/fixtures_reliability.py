"""Fixtures for the reliability tests: ledger-keeping Redis processes, an AOF-everysec server.

* ``crew`` -- starts ``tests/chaos_redis.py`` consumers and producers (real
  processes, real Redis), all writing one independent ledger; everything still
  running at the end of the test is SIGKILLed and reaped.
* ``everysec_server`` -- a redis-server of the test's own with
  ``appendfsync everysec`` (the compose file's setting), which the test may
  SIGKILL and restart on the same port and directory;
* ``acl_server`` -- a redis-server of the test's own whose users are the
  compose file's: ``docker/redis/users.acl.in`` rendered by
  ``docker/redis/render-acl.sh`` (the very files the redis service uses).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from audit import Audit
from fixtures_redis import PASSWORD, RedisServer, _need_redis, serving

from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings

DRIVER = Path(__file__).with_name("chaos_redis.py")


class OwnRedis(RedisServer):
    """:class:`fixtures_redis.RedisServer` with a choice of fsync policy and an ACL file.

    With ``acl_file`` the server has no ``requirepass``: ``password`` is the
    ``admin`` user's (``docker/redis/users.acl.in``), which the probe uses.
    """

    def __init__(self, workdir: Path, *, fsync: str = "everysec", acl_file: Path | None = None,
                 password: str = PASSWORD) -> None:
        super().__init__(workdir, password)
        self.fsync, self.acl_file = fsync, acl_file

    def client(self) -> redis.Redis:
        """A client with full rights (the ACL's ``admin`` user when there is an ACL)."""
        user = "admin" if self.acl_file else None
        return redis.Redis(host="127.0.0.1", port=self.port, username=user,
                           password=self.password)

    def url_for(self, user: str, password: str) -> str:
        """``redis://user:password@127.0.0.1:port/0``."""
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def _auth_args(self) -> list[str]:
        """An ACL file's users, or the plain password."""
        if self.acl_file:
            return ["--aclfile", str(self.acl_file)]
        return super()._auth_args()


EverysecServer = OwnRedis  # the default policy is the compose file's: everysec


@pytest.fixture
def everysec_server(tmp_path: Path) -> Iterator[EverysecServer]:
    """A redis-server (AOF, fsync every second) of this test's own."""
    yield from serving(EverysecServer(tmp_path / "redis-everysec"))


ACL_DIR = Path(__file__).resolve().parent.parent / "docker" / "redis"
ACL_QUEUE = "acltest"
ROLE_PASSWORDS = {"admin": PASSWORD, "producer": "p-" + PASSWORD, "consumer": "c-" + PASSWORD,
                  "rq": "r-" + PASSWORD, "operator": "o-" + PASSWORD,
                  "monitor": "m-" + PASSWORD}


def render_acl(out: Path, queue: str = ACL_QUEUE) -> None:
    """Render the compose file's ACL for ``queue`` with :data:`ROLE_PASSWORDS`."""
    # Each role's password in its own file, as Docker mounts the secrets.
    secrets_dir = out.parent / "acl-secrets"
    secrets_dir.mkdir(exist_ok=True)
    for role, password in ROLE_PASSWORDS.items():
        (secrets_dir / f"redis-{role}-password").write_text(password + "\n", encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PCQ_QUEUE": queue,
        "PCQ_SECRETS_DIR": str(secrets_dir),
    }
    subprocess.run(["sh", str(ACL_DIR / "render-acl.sh"), str(out)], env=env, check=True,
                   timeout=30)


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server with the compose file's per-role ACL users (queue ``acltest``)."""
    _need_redis()  # skip before rendering the ACL (serving() checks again, harmlessly)
    acl = tmp_path / "users.acl"
    render_acl(acl)
    yield from serving(OwnRedis(tmp_path / "redis-acl", acl_file=acl))


class Crew:
    """Audit-keeping producer/consumer processes on one queue."""

    def __init__(self, directory: Path, settings: RedisSettings, **env: str) -> None:
        self.dir = directory
        self.ledger = Audit(directory)
        self.settings = settings
        self.keys = Keys(settings.queue)
        self.env = {
            **os.environ,
            "REDIS_URL": settings.url,
            "PCQ_QUEUE": settings.queue,
            "PCQ_HEARTBEAT_TTL": str(settings.heartbeat_ttl),
            "PCQ_BATCH": str(settings.batch),
            "PCQ_HIGH_WATER": str(settings.high_water),
            "PCQ_MAX_DELIVERIES": str(settings.max_deliveries),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.env.pop("PYTHONWARNINGS", None)
        self.consumers: list[subprocess.Popen[bytes]] = []
        self.producers: list[subprocess.Popen[bytes]] = []
        self._n = 0

    def _spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self._n += 1
        log = open(self.dir / f"proc{self._n}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            return subprocess.Popen(
                [sys.executable, str(DRIVER), args[0], str(self.dir), *args[1:]],
                stdout=log, stderr=subprocess.STDOUT, env={**self.env, **(env or {})},
            )
        finally:
            log.close()

    def consumer(self, *, drain: bool = True, delay: float = 0.0) -> subprocess.Popen[bytes]:
        """Start one ledger-keeping consumer."""
        args = ["consume", "--delay", str(delay)] + (["--drain"] if drain else [])
        self.consumers.append(self._spawn(*args))
        return self.consumers[-1]

    def producer(self, items: int, **env: str) -> subprocess.Popen[bytes]:
        """Start one ledger-keeping producer of ``items`` items."""
        self.producers.append(self._spawn("produce", "--items", str(items), env=env))
        return self.producers[-1]

    def live_consumers(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.consumers if p.poll() is None]

    def run_id(self, timeout: float = 30.0) -> str:
        """The producer's run id (written as soon as the run is open)."""
        path = self.dir / "run"
        deadline = time.monotonic() + timeout
        while not path.exists() or not path.read_text():
            assert time.monotonic() < deadline, "the producer never opened its run"
            time.sleep(0.05)
        return path.read_text().strip()

    def wait_all(self, procs: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
        """Wait (bounded, overall) for ``procs``; return their exit codes."""
        deadline = time.monotonic() + timeout
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"process {proc.pid} still running after {timeout}s:\n"
                                     f"{self.logs()[-3000:]}") from None
        return codes

    def stop_consumers(self, timeout: float = 30.0) -> list[int]:
        """SIGTERM every live consumer and wait for them (their exit codes)."""
        live = self.live_consumers()
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        return self.wait_all(live, timeout)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("proc*.log")))

    def leftovers(self, client: redis.Redis) -> dict[str, Any]:
        """Anything still queued or in flight on the queue (all empty when drained)."""
        procs = {k.decode(): client.llen(k) for k in client.scan_iter(f"{self.keys.prefix}:proc:*")}
        return {
            "queue": client.llen(self.keys.queue),
            "processing": {k: n for k, n in procs.items() if n},
            "consumers": sorted(c.decode() for c in client.smembers(self.keys.consumers)),
        }

    def kill_everything(self) -> None:
        for proc in self.consumers + self.producers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(30)


@pytest.fixture
def crew(tmp_path: Path) -> Iterator[Any]:
    """``crew(settings, **env)`` makes a :class:`Crew`; all are killed at teardown."""
    made: list[Crew] = []

    def make(settings: RedisSettings, **env: str) -> Crew:
        directory = tmp_path / f"crew{len(made)}"
        directory.mkdir()
        made.append(Crew(directory, settings, **env))
        return made[-1]

    yield make
    for c in made:
        c.kill_everything()
