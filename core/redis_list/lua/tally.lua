#!lua flags=no-writes
-- Read a run's counts in one atomic step. A script, not MULTI: Redis refuses every
-- command queued in a MULTI while it is at maxmemory, reads included; a no-writes
-- script runs on a full Redis.
-- KEYS[1] run hash, KEYS[2] run's acked set, KEYS[3] run's dead set, KEYS[4] run's by-consumer hash
-- Returns {run hash (flat field/value list), acked count, dead count, ids in both,
-- by-consumer hash (flat)}.
return {
  redis.call('HGETALL', KEYS[1]),
  redis.call('SCARD', KEYS[2]),
  redis.call('SCARD', KEYS[3]),
  redis.call('SINTERCARD', 2, KEYS[2], KEYS[3]),
  redis.call('HGETALL', KEYS[4]),
}
