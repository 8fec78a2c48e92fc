"""The hot path's connection: :class:`Wire` sends commands without redis-py's per-command machinery.

Claims, acknowledgements (sent with the next claim) and pushes -- one call per
batch, so one per item when items go one by one -- go over one connection of
the client's pool that a role object keeps for its thread. Everything else
(heartbeat thread, nack, release, status) goes through redis-py as usual.

Why hand-written (commit b5bd446, figures in ``docs/benchmarks.md``, "Redis
list"): redis-py's pool checkout, retry wrapper and metrics hooks cost more
client CPU per call than the round trip itself when items go one by one, and
its packer walks every argument in Python (100 payloads per push, 100 ids per
ack). Measured with ``benchmarks/bench_redis.py`` on the project's 2-core
machine, interleaved with the previous code: unbatched went from 0.39x-0.54x
of a raw redis-py ``RPUSH``/``BLPOP`` loop to 0.74x-0.87x, and batched from
12-14 us to about 9 us of CPU per item (producer + consumer + redis-server),
with the payload speed-ups of the same branch.

Re-measured with envelopes (issue 11: one list element per batch), where the
per-command overhead was expected to matter less: the same in-process producer
and consumer, once on the Wire and once on redis-py's own script and pipeline
API (``Script.__call__``, ``pipeline(transaction=False)``), interleaved, 2 runs
each, load average 25-30 (other jobs running). Client CPU per item:

============  ======================  ======================
              Wire (prod / cons, us)  redis-py (prod / cons)
============  ======================  ======================
unbatched     33 / 50, 36 / 49        93 / 98, 90 / 101
batch 100     2.3 / 5.8, 2.3 / 4.3    2.6 / 5.0, 2.5 / 4.8
============  ======================  ======================

Batched, one call per 100 items: no difference worth a hand-written path.
Unbatched, redis-py costs twice the client CPU per item, so the Wire stays.

It also sends without reading (:meth:`Wire.send`, :meth:`Wire.receive`), which
redis-py's blocking API cannot do: a consumer keeps its next claims in flight
while it handles a batch (``claims.DEPTH``), so their round trips overlap its
work. One consumer draining 20,000 items one by one went from 5.5-5.7k items/s
(1 claim in flight) to 12.6-14.4k (2 in flight); docs/benchmarks.md, "Fourth stop".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.connection import Connection
from redis.exceptions import ResponseError

from pcq.core.redis_common.connection import RETRYABLE

__all__ = ["Wire"]

_pack = hiredis.pack_command


class Wire:
    """One connection of the client's pool, kept for the hot path of one thread.

    ``execute`` sends commands in one write and reads their replies. Connection
    trouble is retried by the client's own ``Retry`` (as redis-py would), then
    raised for :class:`pcq.core.redis_common.connection.Retrier`. Only ever used
    by one thread (the consumer's or the producer's main thread).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._retry = client.get_retry()
        self._conn: Connection | None = None
        self.unread = 0  # commands sent whose replies are not read yet

    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` pipelined; return their replies.

        Nothing may be in flight (sent by :meth:`send`, not yet received): its
        replies would be read as theirs.

        Raises:
            ResponseError: the first error reply (after all replies were read).
        """
        assert not self.unread, "replies in flight on this Wire: receive them first"
        try:
            return self._once(commands)
        except RETRYABLE:
            if self._retry is None:
                raise
            # The same commands again: every script we send is safe to repeat.
            return self._retry.call_with_retry(lambda: self._once(commands), lambda _: None)

    def _once(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        self.send(commands)
        return self.receive(len(commands))

    def send(self, commands: Sequence[Sequence[Any]]) -> None:
        """Send ``commands`` without waiting; :meth:`receive` reads their replies.

        Used alone by a consumer's prefetch (its next claims travel while it
        handles the current batch) and by a producer's pushes in flight
        (:mod:`pcq.core.redis_list.pushes`); nothing else may use the Wire in between.
        """
        conn = self._conn
        if conn is None:
            conn = self._conn = self._checkout()
        try:
            # hiredis packs directly: redis-py's packer first walks every
            # argument in Python (100 payloads per push, 100 ids per ack).
            conn.send_packed_command([b"".join([_pack(tuple(c)) for c in commands])])
        except BaseException:
            self.drop()  # half a conversation: start the next one afresh
            raise
        self.unread += len(commands)

    def receive(self, count: int) -> list[Any]:
        """Read the replies of the ``count`` commands sent last.

        Raises:
            ResponseError: the first error reply (after all replies were read).
        """
        conn = self._conn
        if conn is None or self.unread < count:
            # Dropped since (its replies went with the connection): retried, sent again.
            raise redis.ConnectionError("no reply is awaited on this Wire")
        replies: list[Any] = []
        error: ResponseError | None = None
        try:
            for _ in range(count):
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # NOSCRIPT, WRONGTYPE...: the reply is read
                    replies.append(exc)
                    error = error or exc
                self.unread -= 1
        except BaseException:
            self.drop()  # half a conversation: start the next one afresh
            raise
        if error is not None:
            raise error
        return replies

    def _checkout(self) -> Connection:
        try:
            return self._pool.get_connection()
        except TypeError:  # an older redis-py wants a command name (newer ones warn if given)
            return self._pool.get_connection("EVALSHA")  # type: ignore[call-arg,unused-ignore]

    def drop(self) -> None:
        """Disconnect: every reply still awaited is discarded with the connection.

        The next :meth:`send` connects again. For a caller that cannot read
        the replies of what it sent (an error in between, a shutdown).
        """
        if self._conn is not None:
            self._conn.disconnect()
        self.unread = 0

    def close(self) -> None:
        """Hand the connection back to the pool (dropped first if a reply is still awaited)."""
        if self._conn is not None:
            if self.unread:
                self.drop()  # never hand the next user someone else's replies
            self._pool.release(self._conn)
            self._conn = None
