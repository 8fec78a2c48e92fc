#!lua flags=allow-oom
-- Is the queue drained? At least one run ever, no open stream whose producer is
-- alive, nothing queued, nothing in flight at any registered consumer.
-- A run still open whose producer's liveness key expired (producer killed) is
-- marked abandoned and no longer waited for.
-- KEYS[1] runs zset, KEYS[2] open set, KEYS[3] queue, KEYS[4] consumers;
-- ARGV[1] prefix, ARGV[2] now (seconds)
-- allow-oom: marks abandoned runs (a few bytes); must answer on a full Redis.
if redis.call('ZCARD', KEYS[1]) == 0 then return 0 end
for _, run in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[1] .. ':run:' .. run .. ':alive') == 1 then return 0 end
  redis.call('SREM', KEYS[2], run)
  redis.call('HSET', ARGV[1] .. ':run:' .. run, 'abandoned_at', ARGV[2])
end
if redis.call('LLEN', KEYS[3]) > 0 then return 0 end
for _, c in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if redis.call('LLEN', ARGV[1] .. ':proc:' .. c) > 0 then return 0 end
end
return 1
