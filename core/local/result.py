"""The outcome of a local run: counts from the shared state, a JSON form and a Rich table."""

from __future__ import annotations

import signal
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TextIO

from rich.console import Console as RichConsole
from rich.table import Table

__all__ = ["DeadLetter", "LocalResult", "render_table"]


@dataclass(frozen=True)
class DeadLetter:
    """An item given up on after ``--max-deliveries`` failed deliveries."""

    id: str
    body: str
    deliveries: int
    reason: str


@dataclass(frozen=True)
class LocalResult:
    """What a run did, counted from the run's shared state (not from log lines).

    ``lost`` is ``produced - consumed - len(dead_letters)``: 0 on every normal
    run. After Ctrl-C the same figure is what was ``not_consumed``.
    """

    planned: int
    produced: int
    consumed: int
    duplicates: int
    redelivered: int
    retried: int
    per_consumer: dict[int, int]
    seconds: float
    dead_letters: list[DeadLetter] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ids not consumed (first 100)
    replacements: int = 0
    interrupted: bool = False
    stopped_by: str | None = None  # the signal that interrupted the run
    failure: str | None = None
    start_method: str = ""
    batch: int = 1
    queue_size: int | None = None

    @property
    def lost(self) -> int:
        """Produced but neither consumed nor dead-lettered."""
        return self.produced - self.consumed - len(self.dead_letters)

    @property
    def not_produced(self) -> int:
        """Planned but never put on the queue (Ctrl-C)."""
        return self.planned - self.produced

    @property
    def items_per_second(self) -> float:
        """Unique items consumed per second of the run."""
        return self.consumed / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """128 + the signal after an interruption (Ctrl-C: 130, SIGTERM: 143); 1 on a
        failure or anything unaccounted for; else 0."""
        if self.interrupted:
            return 128 + signal.Signals[self.stopped_by or "SIGINT"].value
        if self.failure or self.lost or self.not_produced:
            return 1
        return 0

    def finish(self, **fields: Any) -> LocalResult:
        """Copy with run-level details (start method, batch ...) filled in."""
        return replace(self, **fields)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object (JSON keys are strings: pids become text)."""
        data = asdict(self)
        data["per_consumer"] = {str(pid): n for pid, n in self.per_consumer.items()}
        data.update(
            lost=self.lost,
            not_consumed=self.lost if self.interrupted else 0,
            not_produced=self.not_produced,
            items_per_second=round(self.items_per_second, 1),
            seconds=round(self.seconds, 4),
        )
        return data


def render_table(result: LocalResult, stream: TextIO) -> None:
    """Print the end-of-run table: items per consumer, total, seconds, items/s."""
    table = Table(title="pcq local", title_justify="left")
    table.add_column("consumer (pid)", justify="right")
    table.add_column("items", justify="right")
    for pid, count in result.per_consumer.items():
        table.add_row(str(pid), str(count))
    table.add_section()
    table.add_row("total", str(result.consumed))
    table.add_row("seconds", f"{result.seconds:.3f}")
    table.add_row("items/s", f"{result.items_per_second:,.0f}")
    extras = {
        "produced": result.produced,
        "lost": result.lost,
        "duplicates": result.duplicates,
        "redelivered": result.redelivered,
        "dead letters": len(result.dead_letters),
    }
    if result.interrupted:
        extras["not consumed"] = result.lost
        extras["not produced"] = result.not_produced
    table.add_section()
    for name, value in extras.items():
        table.add_row(name, str(value))
    RichConsole(file=stream, highlight=False).print(table)
