#!lua flags=allow-oom
-- A producer closes its run's stream: `consume --drain` stops waiting for it.
-- allow-oom: a producer that just filled Redis must still be able to say it is done
-- (a few bytes written, the liveness key freed).
-- KEYS[1] run hash, KEYS[2] open set, KEYS[3] run liveness key
-- ARGV[1] run id, ARGV[2] now (seconds)
-- Returns 1.
redis.call('HSET', KEYS[1], 'closed_at', ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
