r"""The Redis list transport: a reliable list, one object per role.

One item's way through the queue (keys ``pcq:{Q}:...``, all listed in
:mod:`pcq.core.redis_common.keys`; Lua scripts in ``lua/``)::

    ListProducer.open_run     run:<run> hash, open + runs sets, run:<run>:alive  (producer.py)
         |  put: push.lua -- the batch as one element (an envelope), the run's
         v       `produced` and batch number together; nothing pushed above the
         |       high-water mark (backpressure)                        (envelope.py)
         |       up to WINDOW pushes in flight, each applied only right after
         |       its predecessor (status 3, gap); refused ones sent again,
         |       in order; flush/end_stream wait for every reply       (pushes.py)
       queue  LIST  ------------------------------------------------ (producer.py)
         |  get: claim.lua (or BLMOVE when the queue ran dry) -- whole envelopes
         v       up to `batch` items, the last one split if too big; one round
         |       trip on the role's Wire
       proc:<consumer>  LIST  (in flight, envelopes) --------------- (consumer.py)
         |  each item settled on its own; the envelope leaves with its last (held.py)
         |-- handled: ack is buffered, sent with the next claim:     (acks.py)
         |     item's bit set in the run's acked bitmap run:<run>:bits (other
         |     ids: acked set run:<run>:acked; a duplicate is counted),
         |     per-consumer count; settled envelopes dropped
         |-- handler failed: nack -> retry.lua (out of its envelope, back to
         |     the tail alone, failure counted) or, at max_deliveries,
         |     dead.lua -> dead LIST                                   (consumer.py)
         |     (pcq dead: requeue.lua back to the queue, purge.lua;
         |      retain.lua caps it by count and age)                 (dead_letters.py)
         |-- not handled (shutdown): release.lua -> head of the queue  (consumer.py)
         '-- consumer died: its hb:<consumer> key expires; reap.lua, run
               by every consumer's heartbeat thread, puts what it held and
               had not acknowledged back at the head, failures counted (reaper.py);
               a consumer that was only paused handles none of it when it
               wakes, and rejoins                                      (lease.py)
    ListProducer.end_stream   run leaves the open set; drained.lua then tells a
                              `consume --drain` consumer that nothing is left   (consumer.py)

A payload that cannot be an item (not JSON, wrong schema, too big, invalid
UTF-8) is dead-lettered at once with the reason; the consumer keeps going.
The heartbeat thread refreshes ``hb:<consumer>`` (TTL ``heartbeat_ttl``) five
times per TTL and runs ``reap.lua`` every ``0.4 x TTL``: with the default 5 s
TTL a SIGKILLed consumer's items are back in play within ~7 s, and an item
that keeps killing its consumer is dead-lettered too.

Modules, one thing each:

* ``producer`` -- :class:`~pcq.core.redis_list.producer.ListProducer`, the
  producer role: open a run, push, end the stream, keep the run alive; and
  :class:`~pcq.core.redis_list.producer.ListRunProducer`, the same fed bodies
  (``pcq produce``'s fast path);
* ``pushes`` -- a producer's pushes in flight: the window, resending in order,
  and the backpressure waits (high-water mark, full Redis);
* ``consumer`` -- :class:`~pcq.core.redis_list.consumer.ListConsumer`, the
  consumer role: claim, ack, nack, release, beat, reap, drained;
* ``serve`` -- one consumer's life: connect, consume, close (what
  ``pcq consume`` and the comparisons run);
* ``envelope`` -- one list element per batch: the framing;
* ``held`` -- the envelopes a consumer holds, and which items are settled;
* ``claims`` -- a consumer's claims: claim, wait, prefetch;
* ``link`` -- :class:`~pcq.core.redis_list.link.ListLink`, what both roles
  hold: client, settings, keys, retrier, scripts, and the Wire;
* ``wire`` -- the hot path's own connection, and the figures that justify it;
* ``scripts`` -- the Lua scripts, loaded and reloaded;
* ``acks`` -- acknowledgements waiting for the next claim;
* ``heartbeat`` -- the beating (and reaping) thread;
* ``reaper`` -- reap.lua's call: dead consumers' items back in the queue;
* ``lease`` -- fencing: a consumer paused past its heartbeat's lifetime
  handles nothing it held (it was reaped) and rejoins;
* ``rates`` -- items/s over the last 10 s, for heartbeats and ``pcq watch``;
* ``tally`` -- a run's counts, read back (what ``pcq produce`` prints);
* ``status`` -- a queue's state right now (``pcq status``/``watch``);
* ``dead_records`` -- dead-letter records as read back, and selections of them;
* ``dead_letters`` -- the dead-letter inbox in Redis: read, requeue, purge,
  retain (``pcq dead``).

A full Redis (``maxmemory``, ``noeviction``): every consumer-side script is
flagged ``allow-oom`` and runs there; ``push.lua`` is refused whole and the
producer waits (see :mod:`pcq.core.redis_list.scripts`).

Claims with their acknowledgements and pushes -- the per-item hot path -- go
over the Wire, without redis-py's per-command machinery; the rest (heartbeat
thread, nack, release, status) goes through redis-py as usual. Every step is
retried through Redis outages (:class:`pcq.core.redis_common.connection.Retrier`)
and safe to repeat: pushes carry a batch number (and a floor that keeps them
in order while several are in flight), claims a call number.
"""
