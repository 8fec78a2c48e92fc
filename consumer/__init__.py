"""The consumer side of the distributed demo: ``python -m consumer`` / ``pcq consume``.

A consumer claims batches from the Redis list (:mod:`pcq.core.redis_list.consumer`), handles each
item (:mod:`pcq.consumer.run`), acknowledges it, keeps a heartbeat and reaps dead
consumers' items. ``python -m consumer healthcheck`` is ``pcq consume --check``.
"""
