"""The reliability tests' audit: ids produced vs ids handled, read from ledger files.

The transports keep their own books (the local supervisor's shared memory, the
Redis run sets); a test that only read those would trust the thing it tests.
The ledger is kept *outside* the transport, in append-only files written by
the processes themselves (pcq's own ``--ledger DIR`` format, :mod:`pcq.core.ledger`):

* a producer appends each id once the transport confirmed its batch (the
  Redis list: once the push's reply was read, which may come after ``put``
  returned: :class:`pcq.core.ledger.LedgerProducer`);
* each handler appends ``id, consumer, delivery`` once it has handled an item,
  before the transport's ``ack`` -- so a consumer killed between the two leaves
  a record, and the redelivery that follows shows up as a duplicate with a
  higher delivery number;
* dead letters are added by the test from the transport's dead-letter list.

One ``os.write`` per record on an ``O_APPEND`` descriptor: a record is whole
or absent even when its writer is SIGKILLed, and writers in any number of
processes never interleave.

:meth:`Audit.report` then counts, against the produced ids:

* ``lost``        -- produced, never handled, not dead-lettered;
* ``duplicated``  -- handled more than once (a redelivery must explain each);
* ``unexpected``  -- handled but never produced (or garbled);
* ``recovered``   -- handled on a delivery > 1: it came back after a failure
  or a dead consumer and then got through;
* ``unexplained`` -- duplicated ids whose handlings share a delivery number
  (two deliveries the transport did not count as such).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pcq.core.ledger import HANDLED, PRODUCED, LedgerFile

__all__ = ["DEAD", "HANDLED", "PRODUCED", "Audit", "AuditReport", "LedgerFile"]

DEAD = "dead"




@dataclass(frozen=True)
class AuditReport:
    """What the ledger says about one run (see the module docstring)."""

    produced: int
    handled: int  # distinct ids handled
    handlings: int  # handler completions, duplicates included
    dead: int
    lost: int
    duplicated: int
    unexpected: int
    recovered: int
    unexplained: int
    per_consumer: dict[str, int] = field(default_factory=dict)
    lost_ids: list[str] = field(default_factory=list)  # first few, for messages
    unexpected_ids: list[str] = field(default_factory=list)
    unexplained_ids: list[str] = field(default_factory=list)

    def assert_sound(self, *, duplicates_allowed: int = 0, strict_deliveries: bool = True) -> None:
        """Fail unless nothing is lost or unexpected and duplicates are explained.

        Args:
            duplicates_allowed: Most duplicated ids tolerated (the transport's own
                count of redeliveries is the usual bound).
            strict_deliveries: Also require every duplicate to carry distinct
                delivery numbers.
        """
        assert self.lost == 0, f"lost {self.lost} item(s), e.g. {self.lost_ids}: {self}"
        assert self.unexpected == 0, f"unexpected ids {self.unexpected_ids}: {self}"
        assert self.duplicated <= duplicates_allowed, (
            f"{self.duplicated} duplicated id(s), only {duplicates_allowed} explained: {self}"
        )
        if strict_deliveries:
            assert self.unexplained == 0, f"same delivery twice: {self.unexplained_ids}: {self}"

    def summary(self) -> str:
        """One line for test output and benchmark logs."""
        return (
            f"produced={self.produced} handled={self.handled} dead={self.dead} lost={self.lost} "
            f"duplicated={self.duplicated} unexpected={self.unexpected} "
            f"recovered={self.recovered} unexplained={self.unexplained}"
        )


class Audit:
    """The ledger of one run: a directory of append-only record files."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def writer(self, kind: str, buffer: int = 0) -> LedgerFile:
        """A writer for ``produced``, ``handled`` or ``dead`` records."""
        return LedgerFile(self.dir / kind, buffer)

    def produce(self, ids: Iterable[str]) -> None:
        """Record ``ids`` as produced (confirmed by the transport)."""
        out = self.writer(PRODUCED)
        try:
            out.add_many((i,) for i in ids)
        finally:
            out.close()

    def dead_letter(self, item_id: str, reason: str) -> None:
        """Record a dead letter (id and the transport's reason)."""
        out = self.writer(DEAD)
        try:
            out.add(item_id, reason)
        finally:
            out.close()

    def rows(self, kind: str) -> list[list[str]]:
        """Every record of ``kind`` so far, as its fields."""
        return self._rows(kind)

    def _rows(self, kind: str) -> list[list[str]]:
        path = self.dir / kind
        if not path.exists():
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
        return [line.split("\t") for line in text.splitlines() if line]

    def handled_ids(self) -> set[str]:
        """Ids handled at least once so far (cheap progress check)."""
        return {row[0] for row in self._rows(HANDLED)}

    def count(self, kind: str) -> int:
        """Records of ``kind`` so far."""
        return len(self._rows(kind))

    def report(self) -> AuditReport:
        """Count lost, duplicated, unexpected, recovered (module docstring)."""
        produced = {row[0] for row in self._rows(PRODUCED)}
        dead = {row[0] for row in self._rows(DEAD)}
        deliveries: dict[str, list[int]] = defaultdict(list)
        per_consumer: Counter[str] = Counter()
        garbled = 0
        for row in self._rows(HANDLED):
            if len(row) != 3 or not row[2].isdigit():
                garbled += 1
                continue
            deliveries[row[0]].append(int(row[2]))
            per_consumer[row[1]] += 1
        handled = set(deliveries)
        lost = sorted(produced - handled - dead)
        unexpected = sorted(handled - produced)
        dups = [i for i, d in deliveries.items() if len(d) > 1]
        unexplained = sorted(i for i in dups if len(set(deliveries[i])) != len(deliveries[i]))
        return AuditReport(
            produced=len(produced),
            handled=len(handled),
            handlings=sum(len(d) for d in deliveries.values()),
            dead=len(dead),
            lost=len(lost),
            duplicated=len(dups),
            unexpected=len(unexpected) + garbled,
            recovered=sum(1 for d in deliveries.values() if max(d) > 1),
            unexplained=len(unexplained),
            per_consumer=dict(per_consumer),
            lost_ids=lost[:10],
            unexpected_ids=unexpected[:10],
            unexplained_ids=unexplained[:10],
        )
