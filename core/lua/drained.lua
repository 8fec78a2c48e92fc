-- Is the queue drained? At least one run ever, no open stream, nothing queued,
-- nothing in flight at any registered consumer.
-- KEYS[1] runs zset, KEYS[2] open set, KEYS[3] queue, KEYS[4] consumers; ARGV[1] prefix
if redis.call('ZCARD', KEYS[1]) == 0 then return 0 end
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
if redis.call('LLEN', KEYS[3]) > 0 then return 0 end
for _, c in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if redis.call('LLEN', ARGV[1] .. ':proc:' .. c) > 0 then return 0 end
end
return 1
