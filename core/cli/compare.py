"""``pcq compare``: one workload through local, Redis-list and RQ transports, side by side."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console as RichConsole
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pcq.core.compare.workload import Workload, parse_consumers, parse_transports, parse_work
from pcq.core.errors import PcqError, UsageProblem
from pcq.core.local.children import stop_helpers

if TYPE_CHECKING:
    from pcq.core.compare.run import CompareConfig

__all__ = ["compare", "register"]


class _RichReporter:
    """One progress bar per run, on stderr (a :class:`pcq.core.compare.run.Reporter`)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def start(self, label: str, total: int) -> Callable[[int], None]:
        task = self.progress.add_task(label, total=total)
        return lambda done: self.progress.update(task, completed=done)

    def line(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)


# The options, one alias each, so that the command's signature stays readable.
Items = Annotated[int, typer.Option("--items", help="Items per run.")]
PayloadBytes = Annotated[int, typer.Option("--payload-bytes", help="Bytes of body per item (1-60000).")]
Work = Annotated[
    str, typer.Option("--work", help="Per item: noop, sleep:MS (I/O-bound) or cpu:MS (CPU-bound).")
]
Consumers = Annotated[str, typer.Option("--consumers", help="Consumer counts to try, e.g. 1,2,4,8.")]
Transports = Annotated[str, typer.Option("--transports", help="Any of local,redis,rq.")]
Batch = Annotated[int, typer.Option("--batch", help="Items per queue message / round trip.")]
Repeat = Annotated[int, typer.Option("--repeat", help="Runs per configuration (medians reported).")]
Docker = Annotated[
    bool,
    typer.Option(
        "--docker",
        help="Also the Redis list with consumer containers scaled by docker compose "
        "(slow: builds the image).",
    ),
]
Out = Annotated[Path, typer.Option("--out", help="Report folder.", file_okay=False)]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print results.json on stdout (table and bars go to stderr).")
]
RedisUrl = Annotated[
    str | None,
    typer.Option("--redis-url", help="Use this Redis (env REDIS_URL) instead of a throwaway one."),
]
RqWorker = Annotated[
    str, typer.Option("--rq-worker", help="RQ worker class: fork (RQ's default) or simple.")
]
Timeout = Annotated[
    float | None,
    typer.Option("--timeout", help="Longest single run, seconds [default: from the workload]."),
]


def compare(
    items: Items = 200,
    payload_bytes: PayloadBytes = 64,
    work: Work = "noop",
    consumers: Consumers = "1,2,4",
    transports: Transports = "local,redis,rq",
    batch: Batch = 1,
    repeat: Repeat = 1,
    docker: Docker = False,
    out: Out = Path("pcq-report"),
    as_json: AsJson = False,
    redis_url: RedisUrl = None,
    rq_worker: RqWorker = "fork",
    timeout: Timeout = None,
) -> None:
    """Run one workload through each transport and report throughput, latency and fairness."""
    # Imported here: the runners load redis and rq, which `pcq --help` never needs.
    from pcq.core.compare.report import render_summary, write_report

    cfg = _config(items, payload_bytes, work, consumers, transports, batch, repeat, docker,
                  redis_url, rq_worker, timeout)
    _require_matplotlib()
    try:  # fail now, not after minutes of measuring
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageProblem(f"--out {out}: {exc.strerror or exc}") from None
    results = _measure(cfg)
    paths = write_report(results, out)
    render_summary(results, sys.stderr if as_json else sys.stdout)
    if as_json:
        sys.stdout.write(json.dumps(results) + "\n")
        sys.stdout.flush()
    print(f"report: {paths['report']} (results.json, throughput.png, latency.png in {out})", file=sys.stderr)
    bad = [r for r in results["runs"] if r["lost"] or r["notes"]]
    if bad:
        raise PcqError(f"{len(bad)} run(s) did not account for every item: see {paths['results']}")


def _measure(cfg: CompareConfig) -> dict[str, Any]:
    """Run the comparison under progress bars on stderr; Ctrl-C: exit 130, no report."""
    from pcq.core.compare.run import run_compare

    err = RichConsole(file=sys.stderr)
    columns = (TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    interrupted = False
    try:
        with Progress(*columns, console=err) as progress:
            results = run_compare(cfg, _RichReporter(progress))
    except KeyboardInterrupt:
        # Every runner has stopped its processes (and the throwaway Redis) on the way out.
        interrupted = True
    finally:
        stop_helpers()  # reap the fork server before pcq exits (after the except: no traceback holds our semaphores)
    if interrupted:
        print("pcq: interrupted: comparison stopped, no report written", file=sys.stderr)
        raise typer.Exit(130)
    return results


def _config(
    items: int, payload_bytes: int, work: str, consumers: str, transports: str, batch: int,
    repeat: int, docker: bool, redis_url: str | None, rq_worker: str, timeout: float | None,
) -> CompareConfig:
    """Validate every knob (usage errors: one line, exit 2)."""
    from pcq.core.compare.rq_runner import WORKER_CLASSES
    from pcq.core.compare.run import CompareConfig

    if repeat < 1:
        raise UsageProblem(f"--repeat must be >= 1, got {repeat}")
    if rq_worker not in WORKER_CLASSES:
        raise UsageProblem(f"--rq-worker must be one of {', '.join(WORKER_CLASSES)}, not {rq_worker!r}")
    if timeout is not None and not timeout > 0:
        raise UsageProblem(f"--timeout must be > 0, got {timeout}")
    workload = Workload(items=items, payload_bytes=payload_bytes, work=parse_work(work), batch=batch)
    return CompareConfig(
        workload=workload, consumers=parse_consumers(consumers),
        transports=parse_transports(transports), repeat=repeat, redis_url=redis_url,
        rq_worker=rq_worker, docker=docker, timeout=timeout,
    )


def _require_matplotlib() -> None:
    """Fail before measuring, not after, when the plots cannot be drawn."""
    try:
        import matplotlib  # noqa: F401 - only whether it imports
    except ImportError:
        raise PcqError(
            "pcq compare draws its plots with matplotlib, which is not installed: "
            "pip install 'pcq[compare]' (in a clone: pip install -e '.[compare]')"
        ) from None


def register(app: typer.Typer) -> None:
    """Add ``pcq compare`` to the CLI."""
    app.command("compare")(compare)
