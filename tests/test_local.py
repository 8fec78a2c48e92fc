"""`pcq local` through its real command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures_local import run_local_cli, start_local_cli

from pcq.core.names import SEED_NAMES

JSON_KEYS = {
    "produced", "consumed", "lost", "duplicates", "redelivered", "per_consumer",
    "seconds", "items_per_second",
}


def test_seed_scenario_by_default_json() -> None:
    run = run_local_cli("--max-delay", "0.02", "--seed", "1", "--json")
    assert run.code == 0, run.stderr
    data = run.data
    assert JSON_KEYS <= data.keys()
    assert (data["produced"], data["consumed"], data["lost"], data["duplicates"]) == (14, 14, 0, 0)
    assert data["missing"] == []
    assert len(data["per_consumer"]) == 6  # 3 producers (one per list), 2x consumers
    assert sum(data["per_consumer"].values()) == 14
    assert all(pid.isdigit() for pid in data["per_consumer"])
    # the demo lines went to stderr, in the seed's wording
    assert len(re.findall(r"^Starting producer => \d+$", run.stderr, re.MULTILINE)) == 3
    assert len(re.findall(r"^Producer \d+ exiting\.\.\.$", run.stderr, re.MULTILINE)) == 3
    got = re.findall(r"^(\d+) got (.+)$", run.stderr, re.MULTILINE)
    assert sorted(name for _, name in got) == sorted(n for names in SEED_NAMES for n in names)
    assert {pid for pid, _ in got} <= set(data["per_consumer"])
    assert run.stderr.rstrip().endswith("Parent process exiting...")


def test_table_on_stdout_without_json() -> None:
    run = run_local_cli("--items", "10", "--max-delay", "0", "--quiet")
    assert run.code == 0, run.stderr
    assert " got " not in run.stdout  # --quiet: no per-item lines
    for label in ("total", "seconds", "items/s", "lost"):
        assert label in run.stdout
    assert re.search(r"total\s*│\s*10\b", run.stdout)


def test_names_file(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("Ada\n\n  Grace  \nLinus\nKen\nDennis\n", encoding="utf-8")
    run = run_local_cli(
        "--names-file", str(names), "--producers", "2", "--consumers", "3",
        "--max-delay", "0", "--json",
    )
    assert run.code == 0, run.stderr
    assert run.data["consumed"] == 5 and run.data["lost"] == 0
    got = sorted(re.findall(r"^\d+ got (.+)$", run.stderr, re.MULTILINE))
    assert got == ["Ada", "Dennis", "Grace", "Ken", "Linus"]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_every_start_method_consumes_everything_once(method: str) -> None:
    run = run_local_cli(
        "--start-method", method, "--items", "40", "--batch", "3", "--producers", "2",
        "--consumers", "3", "--max-delay", "0", "--quiet", "--json",
    )
    assert run.code == 0, run.stderr
    data = run.data
    assert data["start_method"] == method
    assert (data["consumed"], data["lost"], data["duplicates"], data["missing"]) == (40, 0, 0, [])
    assert len(data["per_consumer"]) == 3


def test_batch_and_bounded_queue_still_exactly_once() -> None:
    run = run_local_cli(
        "--items", "300", "--batch", "16", "--queue-size", "2", "--consumers", "4",
        "--max-delay", "0", "--quiet", "--json",
    )
    assert run.code == 0, run.stderr
    assert (run.data["consumed"], run.data["lost"], run.data["batch"]) == (300, 0, 16)


def _got_before_producer_exit(output: str) -> int:
    lines = output.splitlines()
    end = next(i for i, line in enumerate(lines) if re.match(r"Producer \d+ exiting", line))
    return sum(1 for line in lines[:end] if " got " in line)


def test_queue_size_is_backpressure() -> None:
    """With --queue-size 2 the producer cannot finish before the consumer nearly has.

    When it puts its last item at most 2 messages wait in the queue and one
    more is in the consumer's hands: at least 20 - 2 - 1 - 1 "got" lines were
    printed before "Producer ... exiting". Unbounded, it finishes at once.
    """
    common = ("--items", "20", "--producers", "1", "--consumers", "1", "--max-delay", "0.08")
    bounded = run_local_cli(*common, "--queue-size", "2", "--seed", "3")
    assert bounded.code == 0, bounded.stderr
    assert _got_before_producer_exit(bounded.stdout) >= 16
    unbounded = run_local_cli(*common, "--seed", "3")
    assert unbounded.code == 0, unbounded.stderr
    assert _got_before_producer_exit(unbounded.stdout) < 16  # the check can fail


def test_failing_handler_retries_then_dead_letters() -> None:
    run = run_local_cli(
        "--items", "20", "--max-delay", "0", "--fail-on", "Rick", "--max-deliveries", "3",
        "--quiet", "--json",
    )
    assert run.code == 0, run.stderr
    data = run.data
    # generated names cycle through the 14 seed names: "Rick #9" is the only Rick
    assert [(d["id"], d["body"], d["deliveries"]) for d in data["dead_letters"]] == [
        ("9", "Rick #9", 3)
    ]
    assert "ValueError" in data["dead_letters"][0]["reason"]
    assert data["retried"] == 2
    assert (data["consumed"], data["lost"]) == (19, 0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--consumers", "0"], "--consumers"),
        (["--producers", "0"], "--producers"),
        (["--max-delay", "-1"], "--max-delay"),
        (["--max-delay", "nan"], "--max-delay"),
        (["--names-file", "/nonexistent/names.txt"], "not found"),
        (["--items", "3", "--names-file", "x"], "mutually exclusive"),
        (["--queue-size", "0"], "--queue-size"),
        (["--batch", "0"], "--batch"),
        (["--start-method", "thread"], "--start-method"),
        (["--no-such-option"], "no-such-option"),
        (["--items", "many"], "--items"),
        (["--items", "60000000"], "at most"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    run = run_local_cli(*args)
    assert run.code == 2
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert message in run.stderr
    assert run.stdout == ""


def test_empty_names_file_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n", encoding="utf-8")
    run = run_local_cli("--names-file", str(empty))
    assert run.code == 2
    assert run.stderr.strip() == f"pcq: error: names file is empty: {empty}"


def test_overlong_name_is_a_usage_error(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("Ada\n" + "x" * 20_000 + "\n", encoding="utf-8")
    run = run_local_cli("--names-file", str(names))
    assert run.code == 2
    assert run.stderr.strip() == f"pcq: error: names file {names}: line 2 is over 10000 characters"


def test_reader_going_away_is_not_a_crash() -> None:
    """`pcq local | head -1`: the run still finishes every item, quietly, exit 0."""
    proc = start_local_cli("--items", "200", "--max-delay", "0")
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("Starting ")
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read()
    assert proc.wait(60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    proc.stderr.close()
