"""Helpers for the `pcq local` tests: run the real CLI in a subprocess, or build
the local transport's role objects in the test's own process."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pcq.core.local.channel import Channel, SupervisorPort
from pcq.core.local.consumer import LocalConsumer
from pcq.core.local.producer import LocalProducer, LocalRunProducer
from pcq.core.local.shared_state import SharedState

PCQ = [sys.executable, "-m", "pcq.core"]
FORK = mp.get_context("fork")


@dataclass
class LocalRoles:
    """One local channel and every role over it, all in this process (a unit test's
    rig): producer 0, consumer slot 0 serial 0, and the supervisor's port."""

    channel: Channel
    producer: LocalProducer
    run_producer: LocalRunProducer
    consumer: LocalConsumer
    port: SupervisorPort

    @property
    def state(self) -> SharedState:
        return self.channel.state

    def close(self) -> None:
        self.consumer.close()  # closes the channel's handles too


def make_roles(total: int = 100, queue_size: int | None = None) -> LocalRoles:
    """A channel over fresh shared state (2 slots, 4 serials, 1 producer) and its roles."""
    state = SharedState(FORK, total, slots=2, serials=4, producers=1)
    channel = Channel(FORK, state, queue_size=queue_size)
    return LocalRoles(
        channel, LocalProducer(channel, 0), LocalRunProducer(channel, 0),
        LocalConsumer(channel, 0, 0), SupervisorPort(channel),
    )


@pytest.fixture
def roles() -> Iterator[LocalRoles]:
    """:func:`make_roles` with its defaults, closed after the test."""
    rig = make_roles()
    yield rig
    rig.close()


@dataclass
class LocalRun:
    """One finished `pcq local` process."""

    code: int
    stdout: str
    stderr: str

    @property
    def data(self) -> dict[str, Any]:
        """The single JSON object on stdout (fails the test if there is anything else)."""
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"stdout is not one line: {self.stdout!r}"
        obj = json.loads(lines[0])
        assert isinstance(obj, dict)
        return obj


def run_local_cli(*args: str, timeout: float = 120) -> LocalRun:
    """Run `pcq local ARGS` to completion."""
    proc = subprocess.run(
        [*PCQ, "local", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return LocalRun(proc.returncode, proc.stdout, proc.stderr)


def start_local_cli(*args: str, new_session: bool = False) -> subprocess.Popen[str]:
    """Start `pcq local ARGS` with stdout/stderr pipes (caller reaps it)."""
    return subprocess.Popen(
        [*PCQ, "local", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture
def pcq_local() -> Any:
    """The `run_local_cli` helper as a fixture."""
    return run_local_cli
