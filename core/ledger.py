"""The ledger: append-only files kept outside the transport (``--ledger DIR``).

The transports keep their own books (the Redis run sets, the local supervisor's
shared memory). An audit that only read those would trust the thing it audits,
so producers and consumers can also append what they did to plain files in a
directory they share (a bind mount when they run in containers):

* ``DIR/produced`` -- one line per item id, written once the transport
  *confirmed* the item's batch (:class:`LedgerProducer`: the Redis list's
  producer keeps several batches in flight, and a batch is confirmed when its
  reply is read, which may be after ``put`` returned);
* ``DIR/handled`` -- ``id<TAB>consumer<TAB>delivery`` per item, written after the
  handler returned and *before* the acknowledgement, so a consumer killed
  between the two leaves a record and the redelivery that follows shows up as a
  second record with a higher delivery number.

Every record is one ``os.write`` on an ``O_APPEND`` descriptor: it is whole or
absent even if its writer is SIGKILLed, and any number of writers in any number
of processes (or containers on one host) never interleave. The test suite's
audit (``tests/audit.py``) reads these files and counts lost, duplicated,
unexpected and recovered ids.

(Elsewhere pcq keeps other books, each under its own name: the local run's
:class:`~pcq.core.local.shared_state.SharedState`, and in Redis a run's *acked
bitmap* and *acked set*, ``P:run:<run>:bits`` and ``:acked`` in
:mod:`pcq.core.redis_common.keys`.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from pcq.core.pattern import Handler
from pcq.core.transport import Item

B = TypeVar("B", bound=Iterable[Item])
B_contra = TypeVar("B_contra", contravariant=True)

__all__ = [
    "HANDLED", "PRODUCED", "ConfirmingProducer", "LedgerFile", "LedgerProducer", "ledger_dir",
    "ledger_handler",
]  # fmt: skip

PRODUCED = "produced"
HANDLED = "handled"


class LedgerFile:
    """Appends tab-separated records to one file (safe across processes and SIGKILL).

    Args:
        path: The file (created if missing).
        buffer: Records to collect before one write; 0 writes each at once.
            Only for runs where nobody is killed (a buffered record dies with
            its process).
    """

    def __init__(self, path: str | Path, buffer: int = 0) -> None:
        self.path = Path(path)
        self.buffer = buffer
        self._pending: list[str] = []
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def add(self, *fields: object) -> None:
        """Append one record."""
        line = "\t".join(str(f).replace("\t", " ").replace("\n", " ") for f in fields) + "\n"
        if self.buffer:
            self._pending.append(line)
            if len(self._pending) >= self.buffer:
                self.flush()
        else:
            os.write(self._fd, line.encode("utf-8"))

    def add_many(self, records: Iterable[tuple[object, ...]]) -> None:
        """Append several records with one write (e.g. the ids of one accepted batch)."""
        text = "".join("\t".join(map(str, rec)) + "\n" for rec in records)
        if text:
            os.write(self._fd, text.encode("utf-8"))

    def flush(self) -> None:
        """Write buffered records now."""
        if self._pending:
            os.write(self._fd, "".join(self._pending).encode("utf-8"))
            self._pending = []

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


def ledger_handler(handle: Handler, out: LedgerFile, consumer: str) -> Handler:
    """Wrap ``handle`` so each item it completes is recorded in ``out``."""

    def audited(item: Item) -> None:
        handle(item)
        out.add(item.id, consumer, item.deliveries)

    return audited


class ConfirmingProducer(Protocol[B_contra]):
    """A producer whose ``put`` may return before the transport confirmed the batch.

    ``done()`` runs once it did (the Redis list's
    :class:`~pcq.core.redis_list.producer.ListProducer` and ``ListRunProducer``);
    ``end_stream`` waits for every confirmation first.
    """

    def put(self, batch: B_contra, done: Callable[[], object] | None = None) -> None:
        """Send ``batch``; call ``done()`` once the transport confirmed it."""

    def end_stream(self) -> None:
        """Wait for every confirmation; this producer will put nothing more."""


class LedgerProducer(Generic[B]):
    """A producer that records in the ledger the ids its inner producer confirmed.

    Of whatever batch type the inner producer takes, as long as iterating a
    batch gives its items.
    """

    def __init__(self, inner: ConfirmingProducer[B], out: LedgerFile) -> None:
        self.inner = inner
        self.out = out

    def put(self, items: B) -> None:
        """Put; the ids are recorded once the transport confirmed the batch, never before."""
        ids = [(item.id,) for item in items]  # now: the caller may reuse its batch
        self.inner.put(items, done=lambda: self.out.add_many(ids))

    def end_stream(self) -> None:
        """Delegate (every confirmed batch is recorded by then)."""
        self.inner.end_stream()


def ledger_dir(path: str | Path) -> Path:
    """Check that ``path`` is a writable directory (created if missing)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"ledger directory {directory} is not writable")
    return directory
