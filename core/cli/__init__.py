"""The ``pcq`` command line: one Typer app, one module per command.

Each command module exposes ``register(app)``. Core's own commands (``fork``,
``local``, ``compare``, ``status``, ``watch``, ``dead``, ``dashboard``) are listed here; the distributed
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

import functools
import importlib
import os
import sys
import threading
from typing import Any

import typer

try:  # Typer >= 0.22 vendors its own copy of Click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older Typer on top of Click
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # type: ignore

from pcq.core.cli import coercion
from pcq.core.errors import PcqError

__all__ = ["COMMAND_GROUP", "COMMAND_MODULES", "app", "build_app", "entry", "main"]

# Core's own commands, by name -> the module that registers them (each defines
# ``register(app: typer.Typer)``): the local demos come first in ``--help``, then
# the roles' commands, then the tools. ``pcq NAME ...`` imports NAME's module
# alone (:func:`_modules_for`); ``tests/test_cli.py`` checks this table against
# what each module registers.
LOCAL_COMMANDS = {"fork": "pcq.core.cli.fork", "local": "pcq.core.cli.local"}
TOOL_COMMANDS = {"compare": "pcq.core.cli.compare", "status": "pcq.core.cli.status",
                 "watch": "pcq.core.cli.status", "dead": "pcq.core.cli.dead",
                 "dashboard": "pcq.core.cli.dashboard"}  # fmt: skip
COMMAND_GROUP = "pcq.commands"  # entry points: name -> "module:register"
ROLE_ORDER = ("produce", "consume")  # how --help lists the entry points' commands

def _root() -> None:
    """pcq: producer/consumer, done right."""


def _role_rank(name: str) -> tuple[int, str]:
    return (ROLE_ORDER.index(name) if name in ROLE_ORDER else len(ROLE_ORDER), name)


@functools.cache
def _roles() -> dict[str, str]:
    """The commands that plug in through entry points (the roles): name -> module.

    Read on first use, not on import: scanning the installed distributions costs
    ~25 ms, which ``pcq local`` (a core command) does without.
    """
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: _role_rank(ep.name))
    return {ep.name: ep.module for ep in found}


def _all_modules() -> tuple[str, ...]:
    """Every module that adds commands, in ``--help`` order."""
    names = [*LOCAL_COMMANDS.values(), *_roles().values(), *TOOL_COMMANDS.values()]
    return tuple(dict.fromkeys(names))


def build_app(modules: tuple[str, ...] | None = None) -> typer.Typer:
    """The ``pcq`` app with the commands of ``modules`` (default: all of them)."""
    new = typer.Typer(
        name="pcq",
        help="The producer/consumer pattern, locally (multiprocessing) and across containers (Redis).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    new.callback()(_root)  # a group even with one command: `pcq consume` keeps its name
    for name in _all_modules() if modules is None else modules:
        importlib.import_module(name).register(new)
    return new


def _modules_for(args: list[str]) -> tuple[str, ...]:
    """What ``pcq ARGS`` needs: the named command's module alone, else every command.

    A long-lived consumer or producer then never loads the local demos, compare
    or status (~3.5 MiB of resident memory per consumer, docs/benchmarks.md),
    and ``pcq local`` starts without the Redis tools (~0.1 s, "Start-up" there).
    """
    name = args[0] if args else ""
    module = LOCAL_COMMANDS.get(name) or TOOL_COMMANDS.get(name)
    if module is None and name and not name.startswith("-"):
        module = _roles().get(name)
    return (module,) if module else _all_modules()


_app: list[typer.Typer] = []  # the full app, built on first use of ``app``


def __getattr__(name: str) -> Any:
    # ``app`` (every command) is built when first asked for, not on import: the
    # roles' modules import pcq.core.cli.options, and must not load them all.
    if name == "app":
        if not _app:
            _app.append(build_app())
        return _app[0]
    if name == "COMMAND_MODULES":  # every module that adds commands, in --help order
        return _all_modules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    coercion.install()  # plain option values without pydantic (~80 ms of every start)
    command = typer.main.get_command(build_app(_modules_for(args)))
    try:
        code = command.main(args=args, prog_name="pcq", standalone_mode=False)
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


def entry() -> None:
    """The ``pcq`` console script: :func:`main`, then exit without Python's finalization.

    Tearing down the interpreter (Typer, pydantic, Rich, redis-py and their
    objects) took 35-90 ms of every ``pcq`` process's life, after its work was
    done (strace of ``pcq consume``; ``pcq local --items 10``: 0.21 against
    0.26 s of CPU, means of 18 runs, docs/benchmarks.md). Nothing pcq writes
    needs it: output is flushed here, every file is closed by then (the ledger
    writes straight to its descriptor), the heartbeat thread is stopped and
    the local run's children are joined. Should a command ever leave a child
    process or a non-daemon thread behind, the ordinary exit runs instead (it
    waits for the thread and ends the daemonic children). An unexpected
    exception takes the ordinary way out too, traceback and all.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message"): print it, as Python would
            print(exc.code, file=sys.stderr)
            code = 1
    if _left_behind():
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`pcq ... | head`) or stream
            pass
    os._exit(code)


def _left_behind() -> bool:
    """Whether a non-daemon thread or a multiprocessing child is still running."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return True
    mp = sys.modules.get("multiprocessing")
    return mp is not None and bool(mp.active_children())


if __name__ == "__main__":
    main()
