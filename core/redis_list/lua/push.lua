#!lua
-- Push one batch of a producer run, with backpressure and idempotence.
-- No allow-oom flag, on purpose: on a full Redis (maxmemory, noeviction) Redis
-- refuses the whole call with OOM *before* running it, so a refused batch applies
-- nothing (neither the payloads nor the run's counts); the producer waits and retries.
-- KEYS[1] queue list, KEYS[2] run hash
-- ARGV[1] high-water mark in items (0 = none), ARGV[2] high-water mark in bytes of the
-- queue list (MEMORY USAGE, sampled; 0 = none), ARGV[3] batch sequence number,
-- ARGV[4..] payloads
-- Returns {status, queue length}: 1 pushed, 0 queue full (nothing pushed),
-- 2 this sequence number was already pushed (a retried call whose reply was lost).
local seq = tonumber(ARGV[3])
local run = redis.call('HMGET', KEYS[2], 'seq', 'produced')
if seq <= tonumber(run[1] or '0') then
  return {2, redis.call('LLEN', KEYS[1])}
end
local n = #ARGV - 3
local hw = tonumber(ARGV[1])
if hw > 0 then
  local len = redis.call('LLEN', KEYS[1])
  if len + n > hw then
    return {0, len}
  end
end
local hwb = tonumber(ARGV[2])
if hwb > 0 then
  -- MEMORY USAGE samples 5 of the list's nodes: O(1), a few microseconds. An empty
  -- queue always takes the batch, so a batch above the mark cannot wait for ever.
  local used = redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', 5)
  if used then
    local bytes = 0
    for i = 4, #ARGV do
      bytes = bytes + #ARGV[i]
    end
    if used + bytes > hwb then
      return {0, redis.call('LLEN', KEYS[1])}
    end
  end
end
local len = redis.call('RPUSH', KEYS[1], unpack(ARGV, 4))
redis.call('HSET', KEYS[2], 'seq', seq, 'produced', tonumber(run[2] or '0') + n)
return {1, len}
