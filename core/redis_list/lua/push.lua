#!lua
-- Push one batch of a producer run as one envelope, with backpressure and idempotence.
-- No allow-oom flag, on purpose: on a full Redis (maxmemory, noeviction) Redis
-- refuses the whole call with OOM *before* running it, so a refused batch applies
-- nothing (neither the payloads nor the run's counts); the producer waits and retries.
-- KEYS[1] queue list, KEYS[2] run hash, KEYS[3] the queue's extra-items counter
-- ARGV[1] high-water mark in items (0 = none), ARGV[2] high-water mark in bytes of the
-- queue list (MEMORY USAGE, sampled; 0 = none), ARGV[3] batch sequence number,
-- ARGV[4] items in the envelope, ARGV[5] the envelope (pcq.core.redis_list.envelope)
-- Returns {status, queue length in items, or in list elements for status 2}: 1 pushed,
-- 0 queue full (nothing pushed), 2 this sequence number was already pushed (a retried
-- call whose reply was lost).
local seq = tonumber(ARGV[3])
local run = redis.call('HMGET', KEYS[2], 'seq', 'produced')
if seq <= tonumber(run[1] or '0') then
  return {2, redis.call('LLEN', KEYS[1])}
end
local n = tonumber(ARGV[4])
local hw = tonumber(ARGV[1])
if hw > 0 then
  -- Items queued: one per element, plus what envelopes hold beyond their first.
  local len = redis.call('LLEN', KEYS[1])
  local items = len
  if len > 0 then
    items = len + math.max(0, tonumber(redis.call('GET', KEYS[3]) or '0'))
  end
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
