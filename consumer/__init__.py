"""The consumer side of the distributed demo: ``pcq consume`` / ``python -m pcq.consumer``.

A consumer claims batches from the Redis list (:mod:`pcq.core.redis_list.consumer`), handles each
item (:mod:`pcq.consumer.run`), acknowledges it, keeps a heartbeat and reaps dead
consumers' items. ``python -m pcq.consumer healthcheck`` is ``pcq consume --check``.
"""
