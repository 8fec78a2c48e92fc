"""The RQ transport: one RQ job per item, run by stock ``rq worker`` processes.

One item's way (``pcq produce --via rq``)::

    producer/cli.py --texts--> producer.py enqueue(): a job per item naming
        jobs.HANDLER, its one argument the schema-v1 payload (JSON serializer),
        Retry(max = max_deliveries - 1); backpressure by LLEN
      -> Redis rq:queue:<Q> (RQ's keys)
      -> rq worker (workers.PcqWorker) loads the job as jobs.AllowlistJob, which
         refuses anything but HANDLER (no import of what a job names)
      -> jobs.handle(payload): decode, pcq.core.work, record the id in the run's
         handled set (P:rq:<run>:handled, pcq.core.redis_common.keys)
    producer.py wait() + read_tally(): RQ's finished/failed registries and the
    handled set give consumed, dead letters, redeliveries; status.py reads
    the queue for ``pcq status``.

This transport has no :class:`~pcq.core.transport.Consumer` object: RQ's own
worker loop consumes.
"""
