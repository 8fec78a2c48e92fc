"""Helpers for the `pcq local` tests: run the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

PCQ = [sys.executable, "-m", "pcq.core"]


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
