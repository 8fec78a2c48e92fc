"""Killing consumers and pressing Ctrl-C during `pcq local`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time

import psutil
import pytest
from fixtures_local import run_local_cli, start_local_cli

GOT = re.compile(r"^(\d+) got (.+)$")
STARTED = re.compile(r"^Starting consumer => \d+$")


def read_until(proc: subprocess.Popen[str], pattern: re.Pattern[str], count: int = 1) -> list[str]:
    """Read stderr lines until ``count`` of them match (the test timeout bounds this)."""
    assert proc.stderr is not None
    seen: list[str] = []
    matched = 0
    for line in proc.stderr:
        seen.append(line)
        if pattern.match(line.rstrip("\n")):
            matched += 1
            if matched == count:
                return seen
    raise AssertionError(f"stream ended before {count} match(es) of {pattern.pattern}: {seen}")


def test_sigkill_from_outside_mid_item_loses_nothing() -> None:
    """A real SIGKILL, sent by the test while the consumer sleeps in its handler.

    With --batch 4 and up to 0.4 s of work per item, the consumer that printed
    "got" first still holds at least the rest of its batch when it dies.
    """
    proc = start_local_cli(
        "--items", "24", "--producers", "1", "--consumers", "3", "--batch", "4",
        "--max-delay", "0.4", "--seed", "7", "--json",
    )
    try:
        head = read_until(proc, GOT)
        victim = int(GOT.match(head[-1].rstrip("\n")).group(1))  # type: ignore[union-attr]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = "".join(head) + err
    assert proc.returncode == 0, err
    data = json.loads(out)
    assert (data["consumed"], data["lost"], data["missing"]) == (24, 0, [])
    assert data["redelivered"] >= 1
    assert data["replacements"] == 1
    assert str(victim) in data["per_consumer"]
    assert len(data["per_consumer"]) == 4  # the dead one, its replacement and two others
    assert re.search(rf"Consumer {victim} died \(SIGKILL\)", err)


def test_kill_hook_consumer_dies_mid_item() -> None:
    run = run_local_cli(
        # one consumer: it must take the first item, and dies in the middle of it
        "--items", "30", "--consumers", "1", "--max-delay", "0.01", "--kill-consumer-after",
        "1", "--quiet", "--json",
    )
    assert run.code == 0, run.stderr
    assert (run.data["consumed"], run.data["lost"], run.data["replacements"]) == (30, 0, 1)
    assert run.data["redelivered"] >= 1  # the item it was handling when it died


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_ctrl_c_stops_reports_and_leaves_no_process(method: str) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C does."""
    proc = start_local_cli(
        "--items", "400", "--max-delay", "0.3", "--queue-size", "4", "--start-method", method,
        "--json", new_session=True,
    )
    try:
        # running: all six consumers started, producers blocked on the bounded queue
        head = read_until(proc, STARTED, count=6)
        head += read_until(proc, GOT, count=2)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len(family) >= 9  # 3 producers and 6 consumers at least
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None or proc.returncode != 130:
            _kill_session(proc)
    err = "".join(head) + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    data = json.loads(out)
    assert data["interrupted"] is True and data["stopped_by"] == "SIGINT"
    assert data["not_consumed"] == data["produced"] - data["consumed"] - len(data["dead_letters"])
    assert data["not_produced"] == 400 - data["produced"] > 0
    # every item a consumer announced ("got") was finished, none was cut short
    started_items = [line for line in err.splitlines() if GOT.match(line)]
    assert data["consumed"] == len(started_items) >= 2
    summary = r"^pcq: interrupted \(SIGINT\): \d+ item\(s\) produced but not consumed"
    assert re.search(summary, err, re.MULTILINE)
    # every child (and multiprocessing's helpers) is gone, not left as orphan or zombie
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], [(p.pid, p.status()) for p in alive]


def test_children_exit_when_the_parent_is_killed() -> None:
    """kill -9 of pcq itself: no sentinel will ever come, the children must not wait forever."""
    proc = start_local_cli(
        "--items", "60", "--max-delay", "0.1", "--queue-size", "2", "--json", new_session=True
    )
    try:
        read_until(proc, STARTED, count=6)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len(family) >= 9
        proc.kill()
        proc.wait(10)
        # orphans are re-parented; where PID 1 does not reap, "exited" shows as zombie
        deadline = time.monotonic() + 20
        running = family
        while running and time.monotonic() < deadline:
            running = [p for p in family if _running(p)]
            time.sleep(0.05)
        assert running == [], [(p.pid, p.name()) for p in running]
    finally:
        _kill_session(proc)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_session(proc: subprocess.Popen[str]) -> None:
    """Clean up after a failed test: kill the whole session, children included."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)


def test_second_ctrl_c_does_not_wait_for_slow_handlers() -> None:
    """One Ctrl-C lets handlers finish (here up to 30 s each); a second one stops now."""
    proc = start_local_cli(
        "--items", "50", "--max-delay", "30", "--queue-size", "2", "--json", new_session=True
    )
    try:
        read_until(proc, STARTED, count=6)
        read_until(proc, GOT, count=2)
        family = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)
        # producers blocked on the full queue see the stop flag and leave: the
        # first Ctrl-C has been handled (two at once could merge into one signal)
        read_until(proc, re.compile(r"^Producer \d+ exiting"))
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None or proc.returncode != 130:
            _kill_session(proc)
    assert proc.returncode == 130, err
    data = json.loads(out)
    assert data["interrupted"] is True
    assert data["not_consumed"] >= 1  # the items cut short are reported, not pretended done
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []


def test_sigterm_to_the_parent_stops_cleanly_too() -> None:
    """`kill PID` (SIGTERM) of pcq itself: the same clean stop, exit 128 + 15."""
    proc = start_local_cli(
        "--items", "400", "--max-delay", "0.2", "--queue-size", "4", "--json", new_session=True
    )
    try:
        read_until(proc, STARTED, count=6)
        read_until(proc, GOT, count=2)
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None or proc.returncode != 143:
            _kill_session(proc)
    assert proc.returncode == 143, err
    data = json.loads(out)
    assert data["interrupted"] is True and data["stopped_by"] == "SIGTERM"
    assert data["lost"] == data["not_consumed"]
    assert "pcq: interrupted (SIGTERM)" in err
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []
