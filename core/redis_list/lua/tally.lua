#!lua flags=no-writes
-- Read a run's counts in one atomic step. A script, not MULTI: Redis refuses every
-- command queued in a MULTI while it is at maxmemory, reads included; a no-writes
-- script runs on a full Redis.
-- (Prepended with lib/acked.lua: bit_of.)
-- KEYS[1] run hash, KEYS[2] run's acked set, KEYS[3] run's dead set, KEYS[4] run's
-- by-consumer hash, KEYS[5] run's acked bitmap
-- Returns {run hash (flat field/value list), acked count, dead count, ids in both,
-- by-consumer hash (flat)}. Acked = bits set + set members (claim.lua keeps an id
-- out of one when it is in the other). Ids in both: the dead ids acknowledged, in
-- the acked set or by their bit (one GETBIT per dead id: a run has few dead letters).
local both = redis.call('SINTERCARD', 2, KEYS[2], KEYS[3])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local n = bit_of(id)
  if n and redis.call('GETBIT', KEYS[5], n) == 1 then
    both = both + 1
  end
end
return {
  redis.call('HGETALL', KEYS[1]),
  redis.call('BITCOUNT', KEYS[5]) + redis.call('SCARD', KEYS[2]),
  redis.call('SCARD', KEYS[3]),
  both,
  redis.call('HGETALL', KEYS[4]),
}
