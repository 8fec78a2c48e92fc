-- Push one batch of a producer run as one envelope, with backpressure and idempotence.
-- KEYS[1] queue list, KEYS[2] run hash, KEYS[3] the queue's extra-items counter
-- ARGV[1] high-water mark in items (0 = none), ARGV[2] batch sequence number,
-- ARGV[3] items in the envelope, ARGV[4] the envelope (pcq.core.redis_list.envelope)
-- Returns {status, queue length in list elements}: 1 pushed, 0 queue full (nothing
-- pushed), 2 this sequence number was already pushed (a retried call whose reply was lost).
local seq = tonumber(ARGV[2])
local run = redis.call('HMGET', KEYS[2], 'seq', 'produced')
if seq <= tonumber(run[1] or '0') then
  return {2, redis.call('LLEN', KEYS[1])}
end
local n = tonumber(ARGV[3])
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
local len = redis.call('RPUSH', KEYS[1], ARGV[4])
if n > 1 then
  redis.call('INCRBY', KEYS[3], n - 1)
end
redis.call('HSET', KEYS[2], 'seq', seq, 'produced', tonumber(run[2] or '0') + n)
return {1, len}
