"""Docker fixtures: one image build and one compose project per test session.

The project is the repository's own ``docker-compose.yml`` under a random
project name (``pcq-test-<hex>``), with secrets of its own (``scripts/secrets
init`` into a temporary directory: random passwords, never in an environment
variable) and small, fast settings passed through the environment. It is torn
down with ``down -v --remove-orphans`` whatever happens.

``docker compose`` (a subprocess) drives the topology; the Docker SDK for
Python kills, stops, inspects and reads the logs of single containers.

No engine answering means the Docker tests are skipped with the reason --
unless ``PCQ_REQUIRE_DOCKER=1`` (CI), where it is a failure.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
# A tag of this session's own: helpers and CI runs may build at the same time.
TEST_IMAGE = f"pcq:test-{secrets.token_hex(4)}"
# Redis's image carries docker/redis/*.sh: a tag of our own too, or another
# branch's build of the shared pcq-redis:local could run under our tests.
TEST_REDIS_IMAGE = f"pcq-redis:test-{secrets.token_hex(4)}"
TEST_DASHBOARD_IMAGE = f"pcq-rq-dashboard:test-{secrets.token_hex(4)}"  # same reason
SECRETS_SCRIPT = REPO / "scripts" / "secrets"
CONSUMERS = 3
STOP_GRACE = 10  # seconds (PCQ_STOP_GRACE): far above batch 2 x max delay 0.2 s
# Bounds for the slow steps (the first build installs dependencies from PyPI).
BUILD_TIMEOUT = 600.0
UP_TIMEOUT = 180.0
# `compose up` for services that must be healthy before the test goes on (images prebuilt).
UP_AND_WAIT = ("up", "--detach", "--wait", "--wait-timeout", str(int(UP_TIMEOUT)), "--no-build")
PRODUCE_TIMEOUT = 180.0


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``docker`` marker (``-m "not docker"`` skips these tests)."""
    config.addinivalue_line("markers", "docker: needs a Docker engine and `docker compose`")


def _require_docker() -> bool:
    return os.environ.get("PCQ_REQUIRE_DOCKER", "") == "1"


def docker_unavailable(reason: str) -> NoReturn:
    """Skip (or, with ``PCQ_REQUIRE_DOCKER=1``, fail) because Docker is missing."""
    if _require_docker():
        pytest.fail(f"PCQ_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(f"needs Docker: {reason} (CI sets PCQ_REQUIRE_DOCKER=1 to make this an error)")


_engine_problem: list[str] = []  # the reason, once a probe has failed (skip fast after)


def _probe_engine() -> str | None:
    """Why Docker is unusable here, or None. Asks the CLI, which leaks nothing."""
    checks = (
        (["docker", "version", "--format", "{{.Server.Version}}"], "no Docker engine answers"),
        (["docker", "compose", "version", "--short"], "`docker compose` does not work"),
    )
    for cmd, problem in checks:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        except FileNotFoundError:
            return "the `docker` command is not on PATH"
        except subprocess.TimeoutExpired:
            return f"{problem} (no reply within 30 s)"
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return f"{problem}: {detail}"
    return None


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A Docker SDK client for an engine that answers, with a working ``docker compose``."""
    if not _engine_problem:
        if importlib.util.find_spec("docker") is None:
            _engine_problem.append("the 'docker' package is missing (pip install -e '.[dev]')")
        elif problem := _probe_engine():
            _engine_problem.append(problem)
    if _engine_problem:
        docker_unavailable(_engine_problem[0])
    import docker

    client = docker.from_env(timeout=120)
    try:
        yield client
    finally:
        client.close()


@dataclass
class Produced:
    """One finished ``pcq produce --json`` run inside a producer container."""

    exit_code: int
    tally: dict[str, Any]
    stdout: str
    stderr: str


@dataclass
class ComposeProject:
    """The repository's compose file under a private project name."""

    name: str
    client: Any
    password: str  # Redis's admin password (read from the secrets directory)
    env: dict[str, str] = field(default_factory=dict)
    overrides: tuple[Path, ...] = ()  # compose files merged over docker-compose.yml
    _runs: int = 0

    def compose(self, *args: str, timeout: float = 120.0,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``docker compose -p NAME -f docker-compose.yml [-f OVERRIDE...] ARGS``."""
        files = [arg for path in (COMPOSE_FILE, *self.overrides) for arg in ("-f", str(path))]
        cmd = ["docker", "compose", "-p", self.name, *files, *args]
        proc = subprocess.run(
            cmd, cwd=REPO, env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def containers(self, service: str, *, everything: bool = False) -> list[Any]:
        """Containers of ``service`` (running only, unless ``everything``), by number."""
        found = self.client.containers.list(all=everything, filters={"label": [
            f"com.docker.compose.project={self.name}",
            f"com.docker.compose.service={service}",
            "com.docker.compose.oneoff=False",
        ]})
        return sorted(found, key=lambda c: int(c.labels.get("com.docker.compose.container-number", 0)))

    def up(self, consumers: int = CONSUMERS) -> list[Any]:
        """Start Redis and ``consumers`` consumers; wait until all are healthy."""
        self.compose(*UP_AND_WAIT, "--scale", f"consumer={consumers}", "redis", "consumer",
                     timeout=UP_TIMEOUT + 30)
        running = self.containers("consumer")
        assert len(running) == consumers, f"expected {consumers} consumers, got {running}"
        return running

    def start_producer(self, *args: str) -> Any:
        """``docker compose run -d producer pcq produce --json ARGS``; returns the container."""
        self._runs += 1
        name = f"{self.name}-producer-run{self._runs}"
        self.compose("run", "--detach", "--no-deps", "--name", name, "producer",
                     "pcq", "produce", "--json", *args)
        return self.client.containers.get(name)

    def finish_producer(self, container: Any, timeout: float = PRODUCE_TIMEOUT) -> Produced:
        """Wait for a producer container, parse its tally and remove it."""
        try:
            status = container.wait(timeout=timeout)
        except Exception as exc:  # requests' ReadTimeout: the run hung
            logs = container.logs(tail=40).decode(errors="replace")
            raise AssertionError(f"producer did not finish within {timeout}s:\n{logs}") from exc
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        container.remove(force=True)
        return Produced(int(status["StatusCode"]), parse_tally(out, err), out, err)

    def produce(self, *args: str, timeout: float = PRODUCE_TIMEOUT) -> Produced:
        """Run a producer to the end; see :meth:`start_producer`."""
        return self.finish_producer(self.start_producer(*args), timeout)


def parse_tally(stdout: str, stderr: str = "") -> dict[str, Any]:
    """The last JSON object printed on the producer's stdout."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise AssertionError(f"no JSON tally in the producer's output:\n{stdout}\n{stderr}")


def log_count(container: Any, needle: str) -> int:
    """How many times ``needle`` occurs in ``container``'s logs so far."""
    return int(container.logs().decode(errors="replace").count(needle))


def wait_for_log(container: Any, needle: str, timeout: float, more_than: int = 0) -> str:
    """Poll ``container``'s logs until ``needle`` occurs more than ``more_than`` times."""
    deadline = time.monotonic() + timeout
    while True:
        logs = container.logs().decode(errors="replace")
        if logs.count(needle) > more_than:
            return logs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{needle!r} not {more_than + 1}x in {container.name}'s logs after {timeout}s:\n{logs}"
            )
        time.sleep(0.1)  # polling a condition, bounded by the deadline


def make_secrets() -> Path:
    """A fresh secrets directory (``scripts/secrets init``), removed at exit."""
    directory = Path(tempfile.mkdtemp(prefix="pcq-test-secrets-"))
    atexit.register(shutil.rmtree, directory, True)
    proc = subprocess.run([str(SECRETS_SCRIPT), "init", str(directory)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return directory


def admin_password(env: dict[str, str]) -> str:
    """Redis's admin password in a project environment's secrets directory."""
    path = Path(env["PCQ_SECRETS_DIR"]) / "redis-admin-password"
    return path.read_text(encoding="utf-8").strip()


def project_env(**overrides: str) -> dict[str, str]:
    """Environment for a test project: the test images, fresh secrets, fast knobs."""
    env = dict(os.environ)
    env.update(
        PCQ_IMAGE=TEST_IMAGE,
        PCQ_REDIS_IMAGE=TEST_REDIS_IMAGE,
        PCQ_RQ_DASHBOARD_IMAGE=TEST_DASHBOARD_IMAGE,
        PCQ_SECRETS_DIR=str(make_secrets()),
        PCQ_QUEUE="pcqtest",
        PCQ_BATCH="2",
        PCQ_MAX_DELAY="0.2",
        PCQ_HEARTBEAT_TTL="5",
        PCQ_STOP_GRACE=f"{STOP_GRACE}s",
        # Checks more often than the defaults (30 s, 10 s), so `up --wait` returns sooner.
        PCQ_HEALTH_INTERVAL="5s",
        PCQ_REDIS_HEALTH_INTERVAL="2s",
        PCQ_ITEMS="",
        COMPOSE_BAKE="false",  # no buildx here: skip compose's "Bake" warning
    )
    env.update(overrides)
    return env


@contextmanager
def open_project(client: Any, overrides: tuple[Path, ...] = (),
                 **env: str) -> Iterator[ComposeProject]:
    """A compose project named ``pcq-test-<random>``, torn down (volumes too) on exit.

    Nothing is started: call :meth:`ComposeProject.up` or :meth:`ComposeProject.compose`.
    The image must exist already (the ``docker_image`` fixture builds it).
    ``overrides`` are compose files merged over the repository's.
    """
    full_env = project_env(**env)
    project = ComposeProject(f"pcq-test-{secrets.token_hex(4)}", client,
                             admin_password(full_env), full_env, overrides)
    try:
        yield project
    finally:
        project.compose("down", "--volumes", "--remove-orphans", "--timeout", "5",
                        timeout=120, check=False)


@pytest.fixture(scope="session")
def docker_image(docker_client: Any) -> Iterator[str]:
    """Build the images once per session (``pcq:test-<random>``, ``pcq-redis:test-<random>``).

    The tags are removed at the end; their layers stay in the build cache.
    """
    with open_project(docker_client) as project:
        project.compose("build", timeout=BUILD_TIMEOUT)
    try:
        yield TEST_IMAGE
    finally:
        import docker

        # Already gone, or still used by a container: harmless either way.
        for tag in (TEST_IMAGE, TEST_REDIS_IMAGE, TEST_DASHBOARD_IMAGE):
            with suppress(docker.errors.APIError):
                docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="session")
def compose_project(docker_client: Any, docker_image: str) -> Iterator[ComposeProject]:
    """Redis and three consumers, up for the whole session; torn down at the end."""
    with open_project(docker_client) as project:
        project.up()
        yield project
