#!lua flags=allow-oom
-- Purge dead letters: remove each given record (exact bytes) from the dead list and
-- count it in stats `dead_purged`. The items stay dead-lettered in their runs'
-- tallies (the run's dead set): purging empties the inbox, it does not rewrite history.
-- KEYS[1] dead list, KEYS[2] stats; ARGV the records
-- Returns how many were still there and were removed.
local n = 0
for i = 1, #ARGV do
  n = n + redis.call('LREM', KEYS[1], 1, ARGV[i])
end
if n > 0 then
  redis.call('HINCRBY', KEYS[2], 'dead_purged', n)
end
return n
