"""The producer side of the distributed demo: ``pcq produce`` / ``python -m pcq.producer``.

It pushes a run of items onto the Redis list (:mod:`pcq.core.redis_list.producer`), closes its
stream, then waits until every one of its items is acknowledged or
dead-lettered and prints the run's tally read back from Redis.
"""
