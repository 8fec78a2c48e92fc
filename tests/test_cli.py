"""Generic command-line checks that every `pcq` sub-command must pass.

Each command is found through the Typer app, so commands added later are
checked too: `--help` works, and bad usage is one line on stderr, exit 2,
never a traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from pcq.core import cli

ROOT = typer.main.get_command(cli.app)
COMMANDS = sorted(getattr(ROOT, "commands", {}))


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Call the console-script entry point in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(list(args))
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out, err


def assert_one_line_usage_error(code: int, out: str, err: str) -> None:
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("pcq: error: ")
    assert "Traceback" not in err


def test_every_command_module_registers_a_command() -> None:
    assert "fork" in COMMANDS
    assert len(COMMANDS) >= len(cli.COMMAND_MODULES)


@pytest.mark.parametrize("name", sorted({**cli.LOCAL_COMMANDS, **cli.TOOL_COMMANDS}))
def test_a_core_command_is_built_from_its_own_module_alone(name: str) -> None:
    # `pcq NAME` imports only the module the table names for NAME (start-up):
    # that module must register NAME.
    modules = cli._modules_for([name, "--help"])
    assert len(modules) == 1
    assert name in getattr(typer.main.get_command(cli.build_app(modules)), "commands", {})


def test_every_command_is_in_the_table_or_a_role() -> None:
    assert set(COMMANDS) == {*cli.LOCAL_COMMANDS, *cli.TOOL_COMMANDS, *cli._roles()}


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, command, "--help")
    assert code == 0, err
    assert f"pcq {command}" in out
    assert err == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_is_one_line_exit_2(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, command, "--no-such-option")
    assert_one_line_usage_error(code, out, err)
    assert "--no-such-option" in err


def test_root_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_usage_error(*run_main(capsys, "no-such-command"))


def test_no_arguments_shows_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys)
    assert code == 2
    assert "Usage" in out + err


def test_real_entry_point_bad_option() -> None:
    """The same through a fresh interpreter (`python -m pcq.core`, i.e. the `pcq` script)."""
    result = subprocess.run(
        [sys.executable, "-m", "pcq.core", "fork", "--count", "many"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_usage_error(result.returncode, result.stdout, result.stderr)
    assert "--count" in result.stderr
