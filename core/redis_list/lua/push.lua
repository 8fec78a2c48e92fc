-- Push one batch of a producer run, with backpressure and idempotence.
-- KEYS[1] queue list, KEYS[2] run hash
-- ARGV[1] high-water mark (0 = none), ARGV[2] batch sequence number, ARGV[3..] payloads
-- Returns {status, queue length}: 1 pushed, 0 queue full (nothing pushed),
-- 2 this sequence number was already pushed (a retried call whose reply was lost).
local seq = tonumber(ARGV[2])
local run = redis.call('HMGET', KEYS[2], 'seq', 'produced')
if seq <= tonumber(run[1] or '0') then
  return {2, redis.call('LLEN', KEYS[1])}
end
local n = #ARGV - 2
local hw = tonumber(ARGV[1])
if hw > 0 then
  local len = redis.call('LLEN', KEYS[1])
  if len + n > hw then
    return {0, len}
  end
end
local len = redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
redis.call('HSET', KEYS[2], 'seq', seq, 'produced', tonumber(run[2] or '0') + n)
return {1, len}
