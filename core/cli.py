"""The ``pcq`` command line: one Typer app, one sub-command per module.

Each command lives in its own module that exposes ``register(app)``; this file
only assembles them and turns every expected failure into one line on stderr
with a meaningful exit code (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

try:  # Typer >= 0.22 vendors its own copy of Click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older Typer on top of Click
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # type: ignore

from core.errors import PcqError

# Modules that add sub-commands (each defines ``register(app: typer.Typer)``).
COMMAND_MODULES: tuple[str, ...] = (
    "core.cli_fork",
    "core.cli_local",
    "producer.cli",
    "consumer.cli",
    "core.cli_compare",
    "core.cli_status",
)

app = typer.Typer(
    name="pcq",
    help="The producer/consumer pattern, locally (multiprocessing) and across containers (Redis).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """pcq: producer/consumer, done right."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="pcq", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "", file=sys.stderr)
        sys.exit(2)
    except UsageError as exc:
        print(f"pcq: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except ClickException as exc:
        print(f"pcq: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("pcq: interrupted", file=sys.stderr)
        sys.exit(130)
    except PcqError as exc:
        print(f"pcq: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
