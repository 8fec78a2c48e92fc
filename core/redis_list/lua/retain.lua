#!lua flags=allow-oom
-- Dead-letter retention: trim the oldest records (the list's head) beyond the count
-- cap, then those older than the age cut-off, and count every trimmed record in
-- stats `dead_trimmed` (never silently). allow-oom: it only frees memory.
-- Run by every consumer's reaper pass and after each dead-letter, and by `pcq dead`.
-- KEYS[1] dead list, KEYS[2] stats
-- ARGV[1] most records kept (0 = no cap), ARGV[2] cut-off time in seconds (records with
-- an older `at` go; 0 = no age limit), ARGV[3] most records looked at for age per call
-- Returns {trimmed for the count, trimmed for age}.
-- A record whose `at` cannot be read (corrupt JSON) stops the age trimming: it is not
-- known to be old; the count cap, or `pcq dead purge`, removes it.
local most, cutoff, look = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = redis.call('LLEN', KEYS[1])
local over = 0
if most > 0 and n > most then
  over = n - most
end
local old = over
if cutoff > 0 then
  while old < n and old < over + look do
    local ok, record = pcall(cjson.decode, redis.call('LINDEX', KEYS[1], old))
    local at = ok and type(record) == 'table' and tonumber(record.at)
    if not at or at >= cutoff then
      break
    end
    old = old + 1
  end
end
if old > 0 then
  redis.call('LTRIM', KEYS[1], old, -1)
  redis.call('HINCRBY', KEYS[2], 'dead_trimmed', old)
end
return {over, old - over}
