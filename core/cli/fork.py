"""``pcq fork``: the seed's basic fork demo, with every child reaped."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from pcq.core.console import Console
from pcq.core.errors import PcqError
from pcq.core.fork_demo import Forker, require_fork, results_json, run_count, run_interactive

_HELP = (
    "Fork child processes like the seed article does, but reap every one.\n\n"
    "Interactive by default: each Enter forks a child; `q` or end of input quits.\n\n"
    "The parent prints `Hello from parent PID CHILDPID`, the child `Hello from child PID`. "
    "Then the parent waits for the child (os.waitpid) and prints its exit status, so no "
    "zombie (`<defunct>` in `ps`) is ever left behind."
)


def fork_command(
    count: Annotated[
        int | None,
        typer.Option("--count", min=1, help="Fork N children without reading stdin."),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Demo lines to stderr; stdout gets one JSON object: parent_pid and "
            "children (pid, exit_code, signal).",
        ),
    ] = False,
) -> None:
    """Run the fork demo (see the command help)."""
    require_fork()
    stream = sys.stderr if json_out else sys.stdout
    if stream is None or (json_out and sys.stdout is None):
        raise PcqError("stdout or stderr is closed: nowhere to print the demo")
    forker = Forker(Console(stream=stream))
    try:
        if count is not None:
            results = run_count(count, forker)
        else:
            if sys.stdin.isatty():
                print("Press Enter to fork a child, q to quit.", file=sys.stderr, flush=True)
            results = run_interactive(sys.stdin, forker)
    except KeyboardInterrupt:
        # run_* have already waited for every child forked (also on Ctrl-C).
        left = f"{len(forker.pending)} not reaped" if forker.pending else "all reaped"
        print(f"pcq: interrupted; {forker.forked} children forked, {left}", file=sys.stderr)
        raise typer.Exit(130) from None
    if json_out:
        print(json.dumps(results_json(os.getpid(), results)), flush=True)


def register(app: typer.Typer) -> None:
    """Add ``pcq fork`` to ``app``."""
    app.command("fork", help=_HELP)(fork_command)
