"""Faults survived by the local transport, judged by the independent ledger.

Each test runs ``tests/chaos_local.py`` (``pcq local``'s supervisor, queue and
producers, with consumers that write ledger files for ``tests/audit.py``) in a subprocess and
does something nasty to its children from outside. A run passes only with
``lost == 0``, ``unexpected == 0`` and every duplicate explained by a counted
redelivery (with a higher delivery number).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audit import HANDLED, Audit
from chaos import chaos_rng, kill_loop, live_pids, popen_finished

pytestmark = pytest.mark.timeout(240)

DRIVER = Path(__file__).with_name("chaos_local.py")
CHAOS_ITEMS = int(os.environ.get("PCQ_CHAOS_ITEMS", "20000"))
CHAOS_KILLS = int(os.environ.get("PCQ_CHAOS_KILLS", "10"))


@dataclass
class Driver:
    """One ``chaos_local.py`` run: its process, ledger and output files."""

    proc: subprocess.Popen[str]
    dir: Path

    @property
    def ledger(self) -> Audit:
        return Audit(self.dir)

    def pids(self, role: str) -> list[int]:
        """Every pid the parent started for ``role`` (``consumer`` / ``producer``)."""
        path = self.dir / "pids"
        if not path.exists():
            return []
        rows = (line.split() for line in path.read_text().splitlines())
        return [int(pid) for kind, pid in rows if kind == role]

    def finish(self, timeout: float) -> tuple[int, dict[str, Any], str]:
        """Wait (bounded) for the run; return exit code, its JSON result, its stderr."""
        code = self.proc.wait(timeout)
        out = (self.dir / "stdout").read_text()
        err = (self.dir / "stderr").read_text()
        lines = out.splitlines()
        assert len(lines) == 1, f"stdout: {out!r}\nstderr: {err[-3000:]}"
        return code, json.loads(lines[0]), err


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    """Start ``chaos_local.py`` runs; anything still running at the end is killed."""
    started: list[Driver] = []

    def start(*args: str, slow: bool = True) -> Driver:
        run_dir = tmp_path / f"run{len(started)}"
        run_dir.mkdir()
        if slow:
            (run_dir / "slow").touch()
        with open(run_dir / "stdout", "w") as out, open(run_dir / "stderr", "w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(DRIVER), str(run_dir), *args],
                stdout=out, stderr=err, text=True, start_new_session=True,
            )
        started.append(Driver(proc, run_dir))
        return started[-1]

    yield start
    for run in started:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait(30)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` (a file growing: nothing to block on) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def test_sigkill_random_consumers_every_1_to_3_s(driver: Callable[..., Driver]) -> None:
    run = driver("--items", str(CHAOS_ITEMS), "--producers", "2", "--consumers", "4",
                 "--delay", "0.01")
    started = time.monotonic()
    log = kill_loop(lambda: run.pids("consumer"), kills=CHAOS_KILLS, rng=chaos_rng(),
                    finished=popen_finished(run.proc), deadline=started + 120)
    (run.dir / "slow").unlink()  # chaos over: let the rest through at full speed
    code, result, err = run.finish(timeout=120)

    print(f"{len(log)} kills at {log.kills}; run took {time.monotonic() - started:.1f}s")
    assert len(log) >= CHAOS_KILLS, f"the run ended after {len(log)} kills: {result}"
    assert code == 0, err[-3000:]
    assert result["lost"] == 0 and result["produced"] == CHAOS_ITEMS, result
    assert result["replacements"] >= len(log), result
    report = run.ledger.report()
    print(report.summary())
    assert report.produced == CHAOS_ITEMS
    report.assert_sound(duplicates_allowed=result["redelivered"])
    assert report.recovered >= 1, "no killed consumer held an item: the test proved nothing"
    assert report.dead == 0 and not result["dead_letters"]
    assert not live_pids(run.pids("consumer") + run.pids("producer")), "a child outlived the run"


def test_sigkill_random_consumers_mid_batch(driver: Callable[..., Driver]) -> None:
    """The quiet batch path (one ack per batch): a killed consumer's handled but
    unacknowledged items come back as counted redeliveries, never as losses."""
    run = driver("--items", str(CHAOS_ITEMS), "--producers", "1", "--consumers", "4",
                 "--batch", "10", "--delay", "0.01")
    started = time.monotonic()
    log = kill_loop(lambda: run.pids("consumer"), kills=CHAOS_KILLS, rng=chaos_rng(),
                    finished=popen_finished(run.proc), deadline=started + 120)
    (run.dir / "slow").unlink()
    code, result, err = run.finish(timeout=120)

    print(f"{len(log)} kills at {log.kills}; run took {time.monotonic() - started:.1f}s")
    assert len(log) >= CHAOS_KILLS, f"the run ended after {len(log)} kills: {result}"
    assert code == 0, err[-3000:]
    assert result["lost"] == 0 and result["produced"] == CHAOS_ITEMS, result
    report = run.ledger.report()
    print(report.summary())
    report.assert_sound(duplicates_allowed=result["redelivered"])
    assert report.recovered >= 1, "no killed consumer held an item: the test proved nothing"
    assert not live_pids(run.pids("consumer") + run.pids("producer")), "a child outlived the run"


def test_consumer_killed_holding_the_console_lock_does_not_deadlock(
    driver: Callable[..., Driver],
) -> None:
    run = driver("--items", "300", "--producers", "1", "--consumers", "3", "--delay", "0.005",
                 "--die-holding-lock", "3", "--verbose")
    code, result, err = run.finish(timeout=60)  # bounded: a deadlock fails here

    assert code == 0, err[-3000:]
    assert "died (SIGKILL)" in err, err[-3000:]
    # Lines were still printed after the death, i.e. the lock was given back.
    after = err.split("died (SIGKILL)", 1)[1]
    assert " got " in after, err[-3000:]
    assert result["replacements"] == 1 and result["lost"] == 0, result
    report = run.ledger.report()
    report.assert_sound(duplicates_allowed=result["redelivered"])


def test_producer_killed_mid_put_on_a_full_queue(driver: Callable[..., Driver]) -> None:
    items = 3000
    run = driver("--items", str(items), "--producers", "2", "--consumers", "2",
                 "--queue-size", "2", "--delay", "0.002")
    wait_until(lambda: run.ledger.count(HANDLED) >= 50, 30, "50 items handled")
    victim = run.pids("producer")[0]
    assert live_pids([victim]) == [victim], "the producer finished before the kill"
    os.kill(victim, signal.SIGKILL)  # blocked on the full queue, mid-put
    (run.dir / "slow").unlink()
    code, result, err = run.finish(timeout=90)

    assert code == 0, err[-3000:]
    assert f"Producer {victim} died (SIGKILL)" in err, err[-3000:]
    assert result["produced"] == items and result["lost"] == 0, result
    report = run.ledger.report()
    print(report.summary())
    report.assert_sound(duplicates_allowed=result["redelivered"])
