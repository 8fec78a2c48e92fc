"""The consumer side of the distributed demo: ``python -m consumer`` / ``pcq consume``.

A consumer claims batches from the Redis list (:mod:`core.redisq`), handles each
item (:mod:`consumer.run`), acknowledges it, keeps a heartbeat and reaps dead
consumers' items. ``python -m consumer healthcheck`` is ``pcq consume --check``.
"""
