#!lua flags=allow-oom
-- Hand back claimed, unhandled payloads (shutdown): to the head of the queue, in
-- allow-oom: handing back moves payloads; it must work on a full Redis.
-- their original order, without counting a delivery.
-- KEYS[1] processing list, KEYS[2] queue; ARGV payloads in claim order.
local n = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
