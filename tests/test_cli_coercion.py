"""pcq.core.cli.coercion: plain option values without pydantic, and Typer's answer for all else.

The wrapper must never answer differently from Typer: for every option of every
pcq command, and values a user may type (good, bad, odd), both give the same
value of the same type, or the same error.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer

from pcq.core.cli import LOCAL_COMMANDS as LOCAL
from pcq.core.cli import TOOL_COMMANDS, build_app, coercion

typer_core = pytest.importorskip("typer.core")
if not hasattr(typer_core, "build_runtime_param"):
    pytest.skip("this Typer has no build_runtime_param: pcq uses Typer's coercion as it is",
                allow_module_level=True)  # fmt: skip
from typer import _coercion  # (only once the seam is known to exist)
from typer._click.core import Context

ROLES = {"produce": "pcq.producer.cli", "consume": "pcq.consumer.cli"}
TYPED = ["0", "1", "7", "-3", "+5", "007", "512", "513", "1000000", "1.5", "-0.25", ".5", "5.",
         "1e3", "1E-2", "2.5e+1", "inf", "nan", "abc", "", " 7", "7 ", "1_000", "٣", "0x10",
         "item", "batch", "ITEM", "Batch", "true", "-", "/tmp", "spawn"]  # fmt: skip


def outcome(run: Any) -> tuple[str, str, str]:
    try:
        value = run()
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return ("error", type(exc).__name__, str(exc))
    return ("value", type(value).__name__, repr(value))


def options() -> list[tuple[str, Any, Any]]:
    found = []
    for name, module in {**LOCAL, **TOOL_COMMANDS, **ROLES}.items():
        group = typer.main.get_command(build_app((module,)))
        command = group.commands[name]  # type: ignore[attr-defined]
        for param in command.params:
            if getattr(param, "type_descriptor", None) is not None:
                found.append((f"{name} {param.name}", command, param))
    return found


OPTIONS = options()


def test_every_command_has_typed_options() -> None:
    assert len(OPTIONS) > 50, len(OPTIONS)  # so the comparison below covers something


@pytest.mark.parametrize(("where", "command", "param"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_plain_values_match_typer_for_every_option(where: str, command: Any, param: Any) -> None:
    ctx = Context(command)
    typers = _coercion.build_runtime_param(param.type_descriptor)
    plain = coercion.PlainParam(param.type_descriptor, _coercion.build_runtime_param)
    for value in [param.default, None, *TYPED]:
        theirs = outcome(lambda v=value: typers.coerce(v, param=param, ctx=ctx))
        ours = outcome(lambda v=value: plain.coerce(v, param=param, ctx=ctx))
        assert ours == theirs, (where, value)


def test_pcq_local_runs_without_pydantic() -> None:
    # What the wrapper is for: a command with plain options never imports pydantic.
    code = ("import sys\nfrom pcq.core.cli import main\n"
            "try:\n    main(['local', '--items', '3', '--quiet', '--max-delay', '0', '--batch', '2',"
            " '--ack', 'batch'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:]


def test_a_bad_value_still_gets_typers_message() -> None:
    code = ("from pcq.core.cli import main\nmain(['local', '--items', 'abc'])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("pcq: error: Invalid value for '--items'"), out.stderr
    assert "Traceback" not in out.stderr


def test_install_is_idempotent_and_reported() -> None:
    assert coercion.install() and coercion.install()
    assert coercion.installed()
