#!lua flags=allow-oom
-- A handler failed on an item: count the failed delivery and put it back at the tail.
-- allow-oom: a failed delivery moves its payload back; it must work on a full Redis.
-- KEYS[1] processing list, KEYS[2] queue, KEYS[3] deliveries, KEYS[4] errors, KEYS[5] stats
-- ARGV[1] prefix, ARGV[2] the item's envelope as held, ARGV[3] that envelope without the
-- item ('' when it was the only one), ARGV[4] the item's payload, ARGV[5] item id,
-- ARGV[6] reason
-- Returns 1, or 0 when the item was no longer ours (reaped, or a retried call).
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 0 then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('RPUSH', KEYS[1], ARGV[3])
end
local id = ARGV[5]
redis.call('HINCRBY', KEYS[3], id, 1)
redis.call('HSET', KEYS[4], id, ARGV[6])
redis.call('RPUSH', KEYS[2], ARGV[4])
local run = string.match(id, '^(.*):%d+$') or ''
redis.call('HINCRBY', ARGV[1] .. ':run:' .. run, 'redelivered', 1)
redis.call('HINCRBY', KEYS[5], 'redelivered', 1)
return 1
