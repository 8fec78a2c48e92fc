"""`pcq fork`: the seed's fork demo, with every child reaped (no zombies)."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import psutil
import pytest

from pcq.core import cli, fork_demo
from pcq.core.console import Console
from pcq.core.errors import UsageProblem

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

PARENT = re.compile(r"^Hello from parent (\d+) (\d+)$")
CHILD = re.compile(r"^Hello from child (\d+)$")
STATUS = re.compile(r"^Child (\d+) exited with status (\d+)$")
TIMEOUT = 30


def pcq(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "pcq.core", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def check_demo_lines(out: str, parent: int | None, children: int) -> list[int]:
    """Assert the seed's lines: one parent, child and status line per child, in order."""
    lines = out.splitlines()
    parents = [m.groups() for m in map(PARENT.match, lines) if m]
    assert len(parents) == children, out
    pids = [int(child) for _, child in parents]
    assert len(set(pids)) == children
    if parent is not None:
        assert {int(p) for p, _ in parents} == {parent}
    child_lines = [int(m.group(1)) for m in map(CHILD.match, lines) if m]
    assert sorted(child_lines) == sorted(pids)
    statuses = [(int(m.group(1)), int(m.group(2))) for m in map(STATUS.match, lines) if m]
    assert statuses == [(pid, 0) for pid in pids]
    for pid in pids:  # a child is reported only after it said hello
        assert lines.index(f"Hello from child {pid}") < lines.index(
            f"Child {pid} exited with status 0"
        )
    assert len(lines) == 3 * children, out
    return pids


def test_count_forks_and_reaps_each_child() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcq.core", "fork", "--count", "5"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert err == ""
    check_demo_lines(out, proc.pid, 5)


def test_json_lists_children_with_exit_status() -> None:
    result = pcq("fork", "--count", "3", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # stdout is exactly one JSON object
    pids = check_demo_lines(result.stderr, doc["parent_pid"], 3)
    assert doc["children"] == [{"pid": pid, "exit_code": 0, "signal": None} for pid in pids]


def zombie_children(pids: set[int]) -> set[int]:
    """Those of ``pids`` that are zombie children of this process."""
    found = set()
    for child in psutil.Process().children():
        try:
            if child.pid in pids and child.status() == psutil.STATUS_ZOMBIE:
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def is_our_child(pid: int) -> bool:
    return pid in {c.pid for c in psutil.Process().children()}


def test_zombie_check_sees_an_unreaped_child() -> None:
    """Control for the test below: a child nobody waits for *is* a zombie."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not zombie_children({pid}) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert zombie_children({pid}) == {pid}
    finally:
        os.waitpid(pid, 0)
    assert not is_our_child(pid)


def test_library_leaves_no_zombie() -> None:
    seen: list[int] = []

    def right_after_reaping(result: fork_demo.ChildResult) -> None:
        # Checked while the demo is still running, right after each waitpid.
        assert not is_our_child(result.pid)
        seen.append(result.pid)

    out = io.StringIO()
    forker = fork_demo.Forker(Console(stream=out), on_reaped=right_after_reaping)
    results = fork_demo.run_count(5, forker)
    pids = [r.pid for r in results]
    assert seen == pids and len(set(pids)) == 5
    assert all(r.exit_code == 0 and r.signal is None for r in results)
    assert zombie_children(set(pids)) == set()
    assert not any(is_our_child(pid) for pid in pids)
    # The child's own line went to its copy of the StringIO; the parent's are here.
    assert out.getvalue().count("Hello from parent") == 5


def test_reports_a_child_killed_by_a_signal() -> None:
    out = io.StringIO()
    forker = fork_demo.Forker(Console(stream=out))
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)  # pragma: no cover - not reached
    forker.pending.append(pid)
    result = forker.reap(pid)
    assert (result.exit_code, result.signal) == (None, signal.SIGKILL)
    assert out.getvalue() == f"Child {pid} was killed by SIGKILL (9)\n"
    assert forker.pending == [] and not is_our_child(pid)


def test_buffered_output_is_not_printed_twice(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with path.open("w") as stream:
        stream.write("written before forking\n")  # still in the parent's buffer
        fork_demo.run_count(2, fork_demo.Forker(Console(stream=stream)))
    text = path.read_text()
    assert text.count("written before forking") == 1, text
    check_demo_lines(text.replace("written before forking\n", ""), os.getpid(), 2)


def test_interactive_three_enters_then_q() -> None:
    result = pcq("fork", stdin="\n\n\nq\n\n\n")  # lines after `q` are not read
    assert result.returncode == 0, result.stderr
    check_demo_lines(result.stdout, None, 3)


@pytest.mark.parametrize(("stdin", "children"), [("\n\n", 2), ("", 0), ("x\n", 1)])
def test_interactive_end_of_input_quits(stdin: str, children: int) -> None:
    result = pcq("fork", stdin=stdin)
    assert result.returncode == 0, result.stderr
    check_demo_lines(result.stdout, None, children)


def read_lines(stream: IO[str]) -> queue.Queue[str]:
    """Feed a pipe's lines into a queue from a thread (so reads can time out)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_ctrl_c_exits_130_with_children_reaped() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcq.core", "fork"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        lines = read_lines(proc.stdout)
        proc.stdin.write("\n\n")
        proc.stdin.flush()
        got = [lines.get(timeout=TIMEOUT) for _ in range(6)]
        check_demo_lines("\n".join(got), proc.pid, 2)
        # Waiting for input now: the parent is alive and holds no child, zombie or not.
        assert psutil.Process(proc.pid).children() == []
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert err.strip() == "pcq: interrupted; 2 children forked, all reaped"


def test_without_os_fork_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delattr(os, "fork")
    with pytest.raises(UsageProblem):
        fork_demo.run_count(1, fork_demo.Forker(Console(stream=io.StringIO())))
    with pytest.raises(SystemExit) as exc:
        cli.main(["fork", "--count", "1"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("pcq: error: os.fork is not available")


def test_ctrl_c_is_held_back_while_a_fork_is_recorded() -> None:
    """In a fresh, single-threaded process, as the fork demo runs: a signal mask is a
    thread's, so in the test process (where earlier tests may have left threads, e.g.
    a client library's) the kernel could hand SIGINT to another thread."""
    code = (
        "import os, signal\n"
        "from pcq.core import fork_demo\n"
        "reached = False\n"
        "try:\n"
        "    with fork_demo._sigint_blocked():\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        reached = True  # the signal waits until the block ends\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted after the block:', reached)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)  # fmt: skip
    assert proc.stdout.strip() == "interrupted after the block: True", proc.stderr
