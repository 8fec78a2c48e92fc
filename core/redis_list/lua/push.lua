#!lua
-- Push one batch of a producer run as one envelope, with backpressure and idempotence.
-- No allow-oom flag, on purpose: on a full Redis (maxmemory, noeviction) Redis
-- refuses the whole call with OOM *before* running it, so a refused batch applies
-- nothing (neither the payloads nor the run's counts); the producer waits and retries.
-- KEYS[1] queue list, KEYS[2] run hash, KEYS[3] the queue's extra-items counter
-- ARGV[1] high-water mark in items (0 = none), ARGV[2] high-water mark in bytes of the
-- queue list (MEMORY USAGE, sampled; 0 = none), ARGV[3] batch sequence number,
-- ARGV[4] items in the envelope, ARGV[5] the envelope (pcq.core.redis_list.envelope),
-- ARGV[6] floor: the sequence number of the producer's oldest push not yet confirmed
-- (its reply read) when this call was built (pcq.core.redis_list.pushes)
-- Returns {status, queue length in items, or in list elements for status 2}: 1 pushed,
-- 0 queue full (nothing pushed), 2 this sequence number was already pushed (a retried
-- call whose reply was lost), 3 gap: the push before this one in the producer's window
-- was not applied (refused, or never arrived), so this one is refused too, nothing pushed.
local seq = tonumber(ARGV[3])
local run = redis.call('HMGET', KEYS[2], 'seq', 'produced')
local last = tonumber(run[1] or '0')
if seq <= last then
  return {2, redis.call('LLEN', KEYS[1])}
end
-- Several pushes travel at once; each applies only right after its predecessor,
-- so the list keeps the producer's order (as Kafka's idempotent producer does).
-- The floor itself is never a gap: after a restart that forgot confirmed pushes
-- (AOF everysec), the oldest unconfirmed push must still go in, as before.
local n = tonumber(ARGV[4])
local function queued()
  -- Items queued: one per element, plus what envelopes hold beyond their first.
  local len = redis.call('LLEN', KEYS[1])
  if len > 0 then
    return len + math.max(0, tonumber(redis.call('GET', KEYS[3]) or '0'))
  end
  return len
end
if seq > tonumber(ARGV[6]) and last < seq - 1 then
  return {3, queued()}
end
local hw = tonumber(ARGV[1])
if hw > 0 then
  local items = queued()
  if items + n > hw then
    return {0, items}
  end
end
local hwb = tonumber(ARGV[2])
if hwb > 0 then
  -- MEMORY USAGE samples 5 of the list's nodes: O(1), a few microseconds. An empty
  -- queue always takes the batch, so a batch above the mark cannot wait for ever.
  local used = redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', 5)
  if used and used + #ARGV[5] > hwb then
    return {0, redis.call('LLEN', KEYS[1])}
  end
end
local len = redis.call('RPUSH', KEYS[1], ARGV[5])
if n > 1 then
  redis.call('INCRBY', KEYS[3], n - 1)
end
redis.call('HSET', KEYS[2], 'seq', seq, 'produced', tonumber(run[2] or '0') + n)
return {1, len}
