#!lua flags=allow-oom
-- Refresh a liveness key: a consumer's heartbeat (and its registration) or a
-- producer run's liveness key. allow-oom: on a full Redis a refused beat would make
-- a working consumer look dead (and get reaped), or a waiting producer's run look
-- abandoned; a beat rewrites a key of a few hundred bytes.
-- KEYS[1] the key, KEYS[2] (optional) a set to register in
-- ARGV[1] value, ARGV[2] lifetime in milliseconds, ARGV[3] member to add to KEYS[2]
-- Returns 1.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if #KEYS > 1 then
  redis.call('SADD', KEYS[2], ARGV[3])
end
return 1
