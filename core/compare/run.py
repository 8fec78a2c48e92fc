"""Run one comparison: every transport x every consumer count x every repetition.

Redis comes from ``REDIS_URL`` (or ``--redis-url``) when given; otherwise a
throwaway ``redis-server`` is started on a free port when the binary exists
(and always stopped); otherwise only the local transport runs and one line says
how to add Redis.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import redis

from pcq.core.compare.docker_runner import DockerCompare, docker_problem
from pcq.core.compare.local_runner import compare_context, run_local_compare
from pcq.core.compare.metrics import RunMetrics, summarize
from pcq.core.compare.redis_runner import run_redis_compare
from pcq.core.compare.redis_server import ThrowawayRedis, find_redis_server
from pcq.core.compare.rq_runner import run_rq_compare
from pcq.core.compare.schema import SCHEMA
from pcq.core.compare.workload import Workload
from pcq.core.redis_common.connection import connect, explain
from pcq.core.redis_common.settings import RedisSettings

__all__ = ["HOW_TO_ADD_REDIS", "CompareConfig", "PlainReporter", "Reporter", "run_compare"]

HOW_TO_ADD_REDIS = (
    "no REDIS_URL and no redis-server binary: running the local transport only "
    "(add Redis: sudo apt-get install redis-server, or set REDIS_URL=redis://host:6379/0)"
)


@dataclass(frozen=True)
class CompareConfig:
    """What ``pcq compare`` was asked to do (validated by the CLI)."""

    workload: Workload
    consumers: tuple[int, ...]
    transports: tuple[str, ...]
    repeat: int = 1
    redis_url: str | None = None
    rq_worker: str = "fork"
    docker: bool = False
    timeout: float | None = None  # per run; None: derived from the workload

    def run_timeout(self, consumers: int) -> float:
        """Longest a single run may take before it is reported incomplete."""
        if self.timeout is not None:
            return self.timeout
        work = self.workload.items * self.workload.work.ms / 1000 / consumers
        return 120.0 + 3 * work + self.workload.items / 20  # RQ's forking worker: ~50 jobs/s


class Reporter(Protocol):
    """Hooks the CLI gives the runner: a per-run progress callback and a line printer."""

    def start(self, label: str, total: int) -> Callable[[int], None]:
        """A run of ``total`` items starts; return its progress callback (items done)."""

    def line(self, text: str) -> None:
        """Print one line."""


class PlainReporter:
    """The default :class:`Reporter`: no progress, lines on stderr."""

    def start(self, label: str, total: int) -> Callable[[int], None]:
        """No progress display."""
        return lambda done: None

    def line(self, text: str) -> None:
        """Print ``text`` on stderr."""
        print(text, file=sys.stderr)


@dataclass
class _Redis:
    source: str | None = None
    version: str | None = None
    settings: RedisSettings | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)


@contextlib.contextmanager
def _redis_for(cfg: CompareConfig, reporter: Reporter) -> Iterator[_Redis]:
    """Yield the Redis to use (given, throwaway, or none), stopping a throwaway one after."""
    wanted = [t for t in cfg.transports if t in ("redis", "rq")]
    if not wanted:
        yield _Redis()
        return
    url = cfg.redis_url or os.environ.get("REDIS_URL", "").strip() or None
    if url is not None:
        settings = RedisSettings.from_env().with_overrides(url=url)
        yield _Redis("REDIS_URL", _ping(settings), settings)
        return
    binary = find_redis_server()
    if binary is None:
        reporter.line(f"pcq: {HOW_TO_ADD_REDIS}")
        yield _Redis(skipped=[{"transport": t, "reason": HOW_TO_ADD_REDIS} for t in wanted])
        return
    with ThrowawayRedis(binary) as server:
        reporter.line(f"pcq: started a throwaway redis-server on {server.where} (stopped at the end)")
        yield _Redis("embedded", server.version(), RedisSettings(url=server.url))


def _docker_for(
    cfg: CompareConfig, reporter: Reporter, skipped: list[dict[str, str]]
) -> DockerCompare | None:
    """The docker runner when ``--docker`` was given and Docker works; else note why not."""
    if not cfg.docker:
        return None
    problem = docker_problem()
    if problem is not None:
        reporter.line(f"pcq: --docker skipped: {problem}")
        skipped.append({"transport": "docker", "reason": problem})
        return None
    reporter.line("pcq: --docker: building the pcq image and scaling consumer containers (slow)")
    return DockerCompare(cfg.workload)


def _ping(settings: RedisSettings) -> str | None:
    client = connect(settings)
    try:
        return str(client.info("server").get("redis_version"))
    except redis.RedisError as exc:
        raise explain(exc, settings) from None
    finally:
        client.close()


def _one(
    cfg: CompareConfig, transport: str, consumers: int, repeat: int, tick: Callable[[int], None],
    settings: RedisSettings | None, ctx: Any,
) -> RunMetrics:
    timeout = cfg.run_timeout(consumers)
    if transport == "local":
        return run_local_compare(cfg.workload, consumers, repeat, tick, ctx)
    assert settings is not None
    if transport == "redis":
        return run_redis_compare(cfg.workload, consumers, repeat, tick, ctx, settings, timeout)
    return run_rq_compare(cfg.workload, consumers, repeat, tick, settings, timeout, cfg.rq_worker)


def run_compare(cfg: CompareConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run the comparison; return the ``results.json`` object."""
    reporter = reporter or PlainReporter()
    ctx = compare_context()
    runs: list[RunMetrics] = []
    skipped: list[dict[str, str]] = []
    docker = _docker_for(cfg, reporter, skipped)
    try:
        with _redis_for(cfg, reporter) as red:
            skipped += red.skipped
            active = [t for t in cfg.transports if t not in {s["transport"] for s in red.skipped}]
            active += ["docker"] if docker is not None else []
            for transport in active:
                for consumers in cfg.consumers:
                    for repeat in range(cfg.repeat):
                        label = f"{transport} x{consumers}" + (f" #{repeat + 1}" if cfg.repeat > 1 else "")
                        tick = reporter.start(label, cfg.workload.items)
                        if transport == "docker" and docker is not None:
                            timeout = cfg.run_timeout(consumers)
                            runs.append(docker.run(consumers, repeat, tick, timeout))
                        else:
                            runs.append(_one(cfg, transport, consumers, repeat, tick, red.settings, ctx))
    finally:
        if docker is not None:
            docker.close()
    return {
        "schema": SCHEMA,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count() or 1,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "workload": cfg.workload.to_json(),
        "consumers": list(cfg.consumers),
        "transports": active,
        "repeat": cfg.repeat,
        "redis": {"source": red.source, "version": red.version},
        "rq_worker": cfg.rq_worker,
        "skipped": skipped,
        "runs": [r.to_json() for r in runs],
        "summary": summarize(runs),
    }
