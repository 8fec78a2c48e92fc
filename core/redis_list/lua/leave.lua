#!lua flags=allow-oom
-- A consumer leaves (orderly shutdown): deregister and drop its keys, unless it
-- still holds items (then it stays registered without a heartbeat, and a reaper
-- gives them to another consumer). allow-oom: it only frees memory.
-- KEYS[1] processing list, KEYS[2] consumers set, KEYS[3] heartbeat, KEYS[4] call-id key
-- ARGV[1] consumer id
-- Returns 1 when deregistered, 0 when it still held items.
if redis.call('LLEN', KEYS[1]) > 0 then
  return 0
end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[1])
return 1
