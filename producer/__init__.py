"""The producer side of the distributed demo: ``python -m producer`` / ``pcq produce``.

It pushes a run of items onto the Redis list (:mod:`pcq.core.redis_list.consumer`), closes its
stream, then waits until every one of its items is acknowledged or
dead-lettered and prints the run's tally read back from Redis.
"""
