"""The ``pcq`` command line: one Typer app, one module per command.

Each command module exposes ``register(app)``. Core's own commands (``fork``,
``local``, ``compare``, ``status``, ``watch``, ``dashboard``) are listed here; the distributed
demo's roles (``produce``, ``consume``) live in the ``producer`` and
``consumer`` packages, which depend on core and not the other way round, so
they plug themselves in through the ``pcq.commands`` entry-point group
(``pyproject.toml``).

Start-up: every command module imports only Typer and what its options need;
the work (redis, rq, matplotlib) is imported when the command runs, so
``pcq local`` and ``pcq --help`` never load a Redis client.

This module also turns every expected failure into one line on stderr with a
meaningful exit code (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points

import typer

try:  # Typer >= 0.22 vendors its own copy of Click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older Typer on top of Click
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # type: ignore

from pcq.core.errors import PcqError

__all__ = ["COMMAND_GROUP", "COMMAND_MODULES", "app", "main"]

# Core's own command modules (each defines ``register(app: typer.Typer)``): the
# local demos come first in ``--help``, then the roles' commands, then the tools.
LOCAL_COMMANDS = ("pcq.core.cli.fork", "pcq.core.cli.local")
TOOL_COMMANDS = ("pcq.core.cli.compare", "pcq.core.cli.status", "pcq.core.cli.dashboard")
COMMAND_GROUP = "pcq.commands"  # entry points: name -> "module:register"
ROLE_ORDER = ("produce", "consume")  # how --help lists the entry points' commands

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




def _role_rank(name: str) -> tuple[int, str]:
    return (ROLE_ORDER.index(name) if name in ROLE_ORDER else len(ROLE_ORDER), name)


_PLUGINS = sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: _role_rank(ep.name))
#: Every module that adds commands, in ``--help`` order.
COMMAND_MODULES: tuple[str, ...] = (
    *LOCAL_COMMANDS, *(ep.module for ep in _PLUGINS), *TOOL_COMMANDS
)
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
