"""Every Redis key the list transport uses, in one place.

All keys of queue ``Q`` start with ``pcq:{Q}``. The braces are a Redis Cluster
hash tag: every key of one queue lands in the same slot, so the Lua scripts
(which touch several keys at once) stay valid on a cluster too.

Key layout (``P`` = ``pcq:{Q}``)::

    P:queue               LIST   envelopes waiting (one per producer batch: a bare
                                 payload, or "#batch <n>" and n payloads, one per
                                 line; pcq.core.redis_list.envelope); producers
                                 RPUSH at the tail, consumers claim from the head
    P:queue_extra         STRING items queued beyond one per envelope, so the queue
                                 holds LLEN P:queue + this many items
    P:proc:<consumer>     LIST   envelopes a consumer has claimed and not yet
                                 settled (the reliable-list pattern); an item
                                 settled alone (nack, dead letter) leaves its
                                 envelope, acknowledged ones wait for the rest
    P:consumers           SET    consumer ids that may hold a processing list
    P:hb:<consumer>       STRING heartbeat, JSON {host, pid, ttl, at, acked,
                                 since: [time, acked] <= 10 s before}; expires
                                 after PCQ_HEARTBEAT_TTL unless refreshed
    P:call:<consumer>     STRING id of the consumer's last applied ack+claim
                                 call, so a call retried after a lost reply is
                                 not applied twice
    P:deliveries          HASH   item id -> failed deliveries so far (handler
                                 raised, or its consumer died); absent = none
    P:errors              HASH   item id -> last failure reason
    P:dead                LIST   dead letters, oldest at the head: JSON {reason,
                                 payload | payload_b64, consumer, at, id, run,
                                 deliveries[, truncated, payload_bytes,
                                 payload_sha256]}; a record is named by the
                                 first 12 hex digits of the SHA-1 of its bytes
                                 (``pcq dead``)
    P:stats               HASH   queue-wide counters: acked, redelivered,
                                 dead_letters, malformed, reaped; requeued,
                                 dead_purged, dead_trimmed (``pcq dead``, retention)
    P:runs                ZSET   run id -> start time (Redis clock)
    P:open                SET    runs whose producer has not closed its stream
    P:run:<run>           HASH   produced, seq (last batch pushed), started_at,
                                 closed_at, redelivered, requeued, duplicates,
                                 host, pid
    P:run:<run>:bits      STRING the run's acked bitmap: bit n set = item <run>:<n>
                                 acknowledged at least once (n canonical decimal,
                                 below the run's produced count when acknowledged,
                                 and below BITS_CAP); bit 0 is the high bit of byte 0
    P:run:<run>:acked     SET    the run's acked set: the other ids acknowledged at
                                 least once (unusual or made-up ids; none is also in
                                 the bitmap). Acknowledged = in either; a run's
                                 acked count = BITCOUNT :bits + SCARD :acked
    P:run:<run>:dead      SET    the run's ids that were dead-lettered (a requeue
                                 takes the id out until it dies again)
    P:run:<run>:by        HASH   consumer id -> acknowledgements (duplicates
                                 included)
    P:run:<run>:alive     STRING producer liveness (its pid), refreshed while it
                                 runs, expires 6 x PCQ_HEARTBEAT_TTL after it died:
                                 ``consume --drain`` then stops waiting for the run

Retention: once a producer has read its run's final tally, ``P:run:<run>``,
``:bits``, ``:acked``, ``:dead`` and ``:by`` expire after PCQ_RUN_TTL (7 days), and runs
older than that leave ``P:runs``. ``P:dead`` is the operator's inbox
(``pcq dead``): capped at PCQ_DEAD_MAX records (1000) and PCQ_DEAD_MAX_AGE
seconds (7 days) by ``retain.lua``, oldest first; every trimmed record is
counted in ``P:stats`` ``dead_trimmed``.

Memory: Redis should run with ``maxmemory`` and ``noeviction``. At the cap the
consumers' scripts still run (``allow-oom``), the producer's push is refused
whole and waited for (see :mod:`pcq.core.redis_list.scripts`). A run's acked
bitmap costs 1 bit per item (a million items: 125 kB) until the run is
retired; only ids that do not fit it cost ~72 bytes each, in the acked set.

RQ mode (``pcq produce --via rq``; ``Q`` is the RQ queue name, and RQ's own
keys ``rq:queue:Q``, ``rq:job:<id>``, ``rq:finished:Q``, ``rq:failed:Q``... sit
beside these; see :mod:`pcq.core.rq_jobs.jobs`)::

    P:rq:<run>:handled    SET    the run's handled set: ids handled at least once
    P:rq:<run>:done       STRING handler completions (duplicates included)
    P:rq:<run>:by         HASH   RQ worker name -> completions

Item ids are ``<run>:<n>``; the Lua scripts derive the run from the id.
Payloads are never rewritten in Redis: delivery counts live in ``P:deliveries``
(Redis's cjson would round ``produced_at`` to 14 significant digits).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BITS_CAP", "Keys"]

# Item numbers at or above this never go to a run's acked bitmap (they go to its
# acked set): it bounds one run's bitmap to BITS_CAP / 8 bytes (2 MiB), and so
# the string Redis reallocates (copies) when the bitmap grows and the SETRANGE a
# claim sends. Runs longer than that still work, at the set's cost past the cap.
# lua/lib/acked.lua holds the same number (tests/test_redis_acked_bits.py checks).
BITS_CAP = 1 << 24


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one queue."""

    queue_name: str

    @property
    def prefix(self) -> str:
        """Common prefix of every key (with the cluster hash tag)."""
        return f"pcq:{{{self.queue_name}}}"

    @property
    def queue(self) -> str:
        return f"{self.prefix}:queue"

    @property
    def queue_extra(self) -> str:
        return f"{self.prefix}:queue_extra"

    @property
    def consumers(self) -> str:
        return f"{self.prefix}:consumers"

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}:deliveries"

    @property
    def errors(self) -> str:
        return f"{self.prefix}:errors"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    @property
    def runs(self) -> str:
        return f"{self.prefix}:runs"

    @property
    def open(self) -> str:
        return f"{self.prefix}:open"

    def processing(self, consumer: str) -> str:
        """The consumer's in-flight list (the Lua reaper builds the same name)."""
        return f"{self.prefix}:proc:{consumer}"

    def heartbeat(self, consumer: str) -> str:
        return f"{self.prefix}:hb:{consumer}"

    def call(self, consumer: str) -> str:
        return f"{self.prefix}:call:{consumer}"

    def run(self, run: str) -> str:
        return f"{self.prefix}:run:{run}"

    def acked(self, run: str) -> str:
        """The run's acked set: acknowledged ids that do not fit its bitmap."""
        return f"{self.prefix}:run:{run}:acked"

    def acked_bits(self, run: str) -> str:
        """The run's acked bitmap: bit n set = item ``<run>:<n>`` acknowledged."""
        return f"{self.prefix}:run:{run}:bits"

    def run_dead(self, run: str) -> str:
        return f"{self.prefix}:run:{run}:dead"

    def by_consumer(self, run: str) -> str:
        return f"{self.prefix}:run:{run}:by"

    def run_alive(self, run: str) -> str:
        return f"{self.prefix}:run:{run}:alive"

    # RQ mode ----------------------------------------------------------------
    def rq_handled(self, run: str) -> str:
        return f"{self.prefix}:rq:{run}:handled"

    def rq_done(self, run: str) -> str:
        return f"{self.prefix}:rq:{run}:done"

    def rq_by(self, run: str) -> str:
        return f"{self.prefix}:rq:{run}:by"
