#!lua flags=allow-oom
-- Move one payload from a processing list's envelope to the dead-letter list.
-- allow-oom: dead-lettering must work on a full Redis (retain.lua bounds the list).
-- KEYS[1] processing list, KEYS[2] dead list, KEYS[3] stats, KEYS[4] deliveries, KEYS[5] errors
-- ARGV[1] prefix, ARGV[2] the payload's envelope as held, ARGV[3] that envelope without
-- the payload ('' when it was the only one), ARGV[4] record (JSON), ARGV[5] item id
-- ('' if unknown), ARGV[6] counter to bump besides dead_letters ('' for none, e.g. 'malformed')
-- Returns 1, or 0 when the payload was no longer ours.
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 0 then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('RPUSH', KEYS[1], ARGV[3])
end
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[3], 'dead_letters', 1)
if ARGV[6] ~= '' then
  redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
end
local id = ARGV[5]
if id ~= '' then
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  local run = string.match(id, '^(.*):%d+$') or ''
  redis.call('SADD', ARGV[1] .. ':run:' .. run .. ':dead', id)
end
return 1
