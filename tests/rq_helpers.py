"""Helpers for the RQ tests: stock ``rq worker`` subprocesses and their output.

Workers are the stock ``rq`` console script, started with pcq's job and worker
classes. Their output is read line by line by a thread, so tests wait for an
*event* (a line) with a timeout instead of sleeping.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import psutil

REPO = Path(__file__).resolve().parents[1]
RQ = str(Path(sys.executable).with_name("rq"))

#: Knobs that make a dead worker's job come back in seconds (see core/rq_jobs/workers.py).
FAST_REAP = [
    "--job-monitoring-interval",
    "1",
    "--maintenance-interval",
    "1",
    "--worker-ttl",
    "16",  # idle workers block on the queue for worker_ttl - 15 = 1 s
]
FAST_REAP_ENV = {"PCQ_RQ_HEARTBEAT_GRACE": "2"}


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for a worker subprocess: the repo importable, output unbuffered,
    no handler delay unless asked for."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["PCQ_MAX_DELAY"] = "0"
    env.pop("PYTHONWARNINGS", None)  # -W error is for our test process, not RQ's internals
    for name in ("REDIS_URL", "PCQ_QUEUE", "PCQ_MIN_DELAY", "PCQ_RQ_HEARTBEAT_GRACE"):
        env.pop(name, None)
    env.update(extra)
    return env


def worker_argv(
    url: str,
    *,
    name: str | None = None,
    burst: bool = False,
    worker_class: str = "pcq.core.rq_jobs.workers.PcqWorker",
    queue: str = "pcq",
    extra: list[str] | None = None,
) -> list[str]:
    """The ``rq worker`` command line pcq documents."""
    argv = [
        RQ,
        "worker",
        "--url",
        url,
        "--serializer",
        "json",
        "--job-class",
        "pcq.core.rq_jobs.jobs.AllowlistJob",
        "--worker-class",
        worker_class,
    ]
    if name:
        argv += ["--name", name]
    if burst:
        argv.append("--burst")
    return [*argv, *(extra or []), queue]


class Worker:
    """A running ``rq worker`` subprocess whose output lines are collected."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> str:
        """Block until a line matches ``pattern`` (regex); return it."""
        rx = re.compile(pattern)

        def found() -> str | None:
            return next((ln for ln in self.lines if rx.search(ln)), None)

        with self._cond:
            ok = self._cond.wait_for(
                lambda: found() is not None or not self._reader.is_alive(), timeout
            )
            line = found()
        if not ok or line is None:
            raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{self.output}")
        return line

    def wait(self, timeout: float) -> int:
        """Wait for the worker to exit (burst mode) and for its output to be read."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def kill_hard(self) -> None:
        """SIGKILL the worker *and* its work horse, as if its container died."""
        try:
            victims = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(True)]
        except psutil.NoSuchProcess:
            victims = []
        for proc in victims:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.wait(10)

    def close(self) -> None:
        """Stop the worker (warm shutdown, then SIGKILL) and release its pipe."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill_hard()
        self.proc.wait()
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
