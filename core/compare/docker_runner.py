"""``pcq compare --docker``: the Redis list with consumer *containers*, scaled by compose.

Per consumer count N, a compose project of its own (``pcq-cmp-<random>``) from
the repository's ``docker-compose.yml`` plus a generated override that runs
:mod:`pcq.core.compare.docker_side` in the consumer service:

1. ``docker compose build consumer redis`` (once per comparison; layers are cached);
2. ``up -d --scale consumer=N redis consumer``;
3. ``run --rm --no-deps producer python -m pcq.core.compare.docker_side produce ...``
   (Redis is on an internal network: the producer has to be a container too;
   it connects as the ACL admin user, as it also reads the consumers' keys),
   which prints the tally and every item's stamps as JSON;
4. ``down -v --remove-orphans``, whatever happened.

Container start-up is not measured: the producer waits for the N consumers to
register before the first item. Peak RSS is sampled from the host when the
containers' processes are visible from here (same PID namespace), else null.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from pcq.core.compare.metrics import RssSampler, RunMetrics
from pcq.core.compare.workload import Workload
from pcq.core.errors import PcqError

__all__ = ["COMPOSE_FILE", "DockerCompare", "docker_problem"]

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
IMAGE = "pcq:compare"
REDIS_IMAGE = "pcq-redis:compare"
BUILD_TIMEOUT = 900.0
STEP_TIMEOUT = 180.0
Progress = Callable[[int], None]

# The consumers keep their healthcheck, as a user's would: it is a shell test of
# the health file (core/redis_list/health.py), ~2 ms of CPU per check. (It used
# to be a fresh Python process, ~0.4 s of CPU, and was switched off here: eight
# containers checking every 5 s halved the throughput on a 2-core machine.)
# `healthcheck=False` still switches it off, to measure what it costs.
# The harness's producer connects as the admin user (password: a secret file).
_OVERRIDE = """\
services:
  producer:
    secrets: [redis-admin-password]
    environment:
      REDIS_URL: redis://admin@redis:6379/0
      PCQ_REDIS_PASSWORD_FILE: /run/secrets/redis-admin-password
  consumer:
    command: ["python", "-m", "pcq.core.compare.docker_side", "consume", "--work", "{work}"]
"""
# Appended to the consumer service above.
_NO_HEALTHCHECK = """\
    healthcheck:
      disable: true
"""
SECRETS_SCRIPT = COMPOSE_FILE.parent / "scripts" / "secrets"


def docker_problem() -> str | None:
    """Why the Docker transport cannot run here, or None."""
    if shutil.which("docker") is None:
        return "the docker command is not on PATH"
    if not COMPOSE_FILE.exists():
        return f"{COMPOSE_FILE} not found (run pcq compare --docker from a clone of the repository)"
    for cmd in (["docker", "version", "--format", "{{.Server.Version}}"], ["docker", "compose", "version"]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd[:2])} failed: {exc}"
        if proc.returncode != 0:
            return f"{' '.join(cmd[:3])}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


class DockerCompare:
    """Runs the docker transport for one comparison (builds the image once)."""

    def __init__(self, workload: Workload, *, healthcheck: bool = True) -> None:
        self.workload = workload
        self.built = False
        self._dir = tempfile.TemporaryDirectory(prefix="pcq-compare-docker-")
        self.override = Path(self._dir.name) / "compare.override.yml"
        text = _OVERRIDE.format(work=str(workload.work)) + ("" if healthcheck else _NO_HEALTHCHECK)
        self.override.write_text(text, encoding="utf-8")
        # Fresh random passwords as files (scripts/secrets), never in this environment.
        self.secrets = Path(self._dir.name) / "secrets"
        proc = subprocess.run([str(SECRETS_SCRIPT), "init", str(self.secrets)], capture_output=True,
                              text=True, timeout=60, check=False)
        if proc.returncode != 0:
            self._dir.cleanup()
            raise PcqError(f"scripts/secrets init failed: {(proc.stderr.strip() or '?')[-200:]}")

    def close(self) -> None:
        self._dir.cleanup()

    def _compose(self, project: str, env: dict[str, str], *args: str, timeout: float = STEP_TIMEOUT,
                 ) -> subprocess.CompletedProcess[str]:
        cmd = [
            "docker", "compose", "--project-directory", str(COMPOSE_FILE.parent),
            "-f", str(COMPOSE_FILE), "-f", str(self.override), "-p", project, *args,
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise PcqError(f"docker compose {args[0]} took longer than {timeout:g}s") from None
        return proc

    def _checked(self, project: str, env: dict[str, str], *args: str, timeout: float = STEP_TIMEOUT,
                 ) -> str:
        proc = self._compose(project, env, *args, timeout=timeout)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise PcqError(f"docker compose {args[0]} failed: {last}")
        return proc.stdout

    def _env(self, queue: str) -> dict[str, str]:
        w = self.workload
        # The harness's producer also reads the consumers' registrations and stamps,
        # which the producer ACL user may not: it runs as the admin user (_OVERRIDE).
        return dict(
            os.environ, PCQ_IMAGE=IMAGE, PCQ_REDIS_IMAGE=REDIS_IMAGE, PCQ_QUEUE=queue,
            PCQ_SECRETS_DIR=str(self.secrets),
            PCQ_BATCH=str(w.batch), PCQ_HEARTBEAT_TTL="5", PCQ_STOP_GRACE="10s",
            PCQ_MAX_DELAY="0", PCQ_ITEMS="",
        )

    def run(self, consumers: int, repeat: int, progress: Progress, timeout: float) -> RunMetrics:
        """One run with ``consumers`` consumer containers."""
        tag = secrets.token_hex(5)
        project, env = f"pcq-cmp-{tag}", self._env(f"cmp-{tag}")
        w = self.workload
        try:
            if not self.built:
                # Redis too: compose builds its image (redis:7-alpine + /data owned by 999).
                self._checked(project, env, "build", "consumer", "redis", timeout=BUILD_TIMEOUT)
                self.built = True
            self._checked(project, env, "up", "-d", "--no-build", "--scale", f"consumer={consumers}",
                          "redis", "consumer")
            pids = self._pids(project, env)
            with RssSampler(lambda: pids, every=0.2, children=True) as rss:
                t0 = time.perf_counter()
                out = self._checked(
                    project, env, "run", "--rm", "--no-deps", "-T", "producer",
                    "python", "-m",
                    "pcq.core.compare.docker_side", "produce", "--items", str(w.items),
                    "--payload-bytes", str(w.payload_bytes), "--consumers", str(consumers),
                    "--timeout", f"{timeout:g}", timeout=timeout + 60,
                )
                wall = time.perf_counter() - t0
        finally:
            self._compose(project, env, "down", "-v", "--remove-orphans", "-t", "10")
        data = _last_json(out)
        tally = data["tally"]
        progress(int(tally["consumed"]))
        notes = [] if tally.get("complete") else ["timed out before every item was accounted for"]
        return RunMetrics.build(
            transport="docker", consumers=consumers, repeat=repeat, items=w.items,
            stamps=[(float(p), float(h)) for p, h in data["stamps"]],
            per_consumer=tally["per_consumer"], wall_seconds=wall,
            peak_rss=rss.peak if pids else None,
            lost=w.items - tally["consumed"] - tally["dead_letters"], duplicates=tally["duplicates"],
            redelivered=tally["redelivered"], dead_letters=tally["dead_letters"], notes=notes,
            consumed=tally["consumed"],
        )

    def _pids(self, project: str, env: dict[str, str]) -> list[int]:
        """Host PIDs of the consumer containers' init processes, when visible from here."""
        ids = self._checked(project, env, "ps", "-q", "consumer").split()
        pids = []
        for cid in ids:
            proc = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid],
                                  capture_output=True, text=True, timeout=30, check=False)
            pid = int(proc.stdout.strip() or 0)
            if pid > 0 and _is_container_init(pid):
                pids.append(pid)
        return pids


def _is_container_init(pid: int) -> bool:
    # A PID from another namespace may name an unrelated process here: check it.
    try:
        return psutil.Process(pid).name() in ("docker-init", "tini")
    except psutil.Error:
        return False


def _last_json(out: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            return data
    raise PcqError("the producer container printed no result")
