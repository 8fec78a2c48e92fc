"""What both Redis transports (the list, RQ jobs) share, and nothing else.

* :mod:`~pcq.core.redis_common.settings` -- :class:`RedisSettings`, read once
  from the environment and the command line, then passed down;
* :mod:`~pcq.core.redis_common.connection` -- one client per process, retried
  through outages (:class:`Retrier`), errors as one line;
* :mod:`~pcq.core.redis_common.keys` -- every key name, with the layout;
* :mod:`~pcq.core.redis_common.payload` -- one item on the wire: schema-v1
  JSON, size-capped, never pickle (the list pushes it, an RQ job carries it).
"""
