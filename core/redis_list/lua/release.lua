#!lua flags=allow-oom
-- Hand back claimed, unhandled items (shutdown): to the head of the queue, in
-- allow-oom: handing back moves payloads; it must work on a full Redis.
-- their original order, without counting a delivery.
-- KEYS[1] processing list, KEYS[2] queue, KEYS[3] the queue's extra-items counter
-- ARGV: per envelope, in claim order, four arguments: the envelope as held; what stays
-- held of it ('' for nothing: its other items are settled and acknowledged); the
-- envelope of the items handed back; how many items that is.
-- Returns how many items went back.
local n, extra = 0, 0
for i = #ARGV - 3, 1, -4 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    if ARGV[i + 1] ~= '' then
      redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    end
    redis.call('LPUSH', KEYS[2], ARGV[i + 2])
    local m = tonumber(ARGV[i + 3])
    n = n + m
    extra = extra + m - 1
  end
end
if extra > 0 then
  redis.call('INCRBY', KEYS[3], extra)
end
return n
