-- Acknowledge the previous batch and claim the next one, in one round trip.
-- KEYS[1] queue, KEYS[2] this consumer's processing list, KEYS[3] consumers set,
-- KEYS[4] deliveries hash, KEYS[5] errors hash, KEYS[6] stats hash, KEYS[7] call-id key
-- ARGV[1] key prefix, ARGV[2] consumer id, ARGV[3] call id, ARGV[4] items to claim,
-- ARGV[5..] pairs (item id, payload) to acknowledge.
-- Returns {failed deliveries pending on the queue (HLEN), payload...}: the whole
-- processing list after the claim.
local prefix, consumer = ARGV[1], ARGV[2]
if redis.call('GET', KEYS[7]) == ARGV[3] then
  -- Retried call already applied (its reply was lost): just report what we hold.
  local held = redis.call('LRANGE', KEYS[2], 0, -1)
  table.insert(held, 1, redis.call('HLEN', KEYS[4]))
  return held
end
redis.call('SET', KEYS[7], ARGV[3])

local nacks = 0
local ids = {}
local count, dups = {}, {}
for i = 5, #ARGV, 2 do
  local id, raw = ARGV[i], ARGV[i + 1]
  redis.call('LREM', KEYS[2], 1, raw)
  local run = string.match(id, '^(.*):%d+$') or ''
  nacks = nacks + 1
  ids[nacks] = id
  count[run] = (count[run] or 0) + 1
  if redis.call('SADD', prefix .. ':run:' .. run .. ':acked', id) == 0 then
    dups[run] = (dups[run] or 0) + 1
  end
end
if nacks > 0 then
  for run, n in pairs(count) do
    redis.call('HINCRBY', prefix .. ':run:' .. run .. ':by', consumer, n)
  end
  for run, n in pairs(dups) do
    redis.call('HINCRBY', prefix .. ':run:' .. run, 'duplicates', n)
  end
  if redis.call('HLEN', KEYS[4]) > 0 then
    redis.call('HDEL', KEYS[4], unpack(ids))
    redis.call('HDEL', KEYS[5], unpack(ids))
  end
  redis.call('HINCRBY', KEYS[6], 'acked', nacks)
end

redis.call('SADD', KEYS[3], consumer)
local want = tonumber(ARGV[4])
if want > 0 then
  local got = redis.call('LRANGE', KEYS[1], 0, want - 1)
  if #got > 0 then
    redis.call('LTRIM', KEYS[1], #got, -1)
    redis.call('RPUSH', KEYS[2], unpack(got))
  end
end
local held = redis.call('LRANGE', KEYS[2], 0, -1)
table.insert(held, 1, redis.call('HLEN', KEYS[4]))
return held
