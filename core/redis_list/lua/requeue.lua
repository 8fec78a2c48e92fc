#!lua flags=allow-oom
-- Requeue one dead letter: its payload goes back to the tail of the queue as a new
-- delivery of the same item id, and the id leaves its run's dead set, so the run's
-- tally counts it as in flight until a consumer acknowledges it (consumed once: an
-- id is acknowledged or not, in its run's bitmap or acked set).
-- allow-oom: the record is bigger than the payload it frees.
-- (Prepended with lib/acked.lua: run_of, is_acked.)
-- Element format: one JSON payload per queue element (as the producer pushes).
-- KEYS[1] dead list, KEYS[2] queue, KEYS[3] stats
-- ARGV[1] key prefix, ARGV[2] the dead record (exact bytes), ARGV[3] the payload,
-- ARGV[4] item id
-- Returns 1 requeued; 0 the record is gone (requeued or purged meanwhile: nothing
-- done); 2 the id is already acknowledged (nothing done, the record stays).
local id = ARGV[4]
local base = ARGV[1] .. ':run:' .. run_of(id)
if is_acked(ARGV[1], id) then
  if redis.call('LPOS', KEYS[1], ARGV[2]) then
    return 2
  end
  return 0
end
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('SREM', base .. ':dead', id)
if redis.call('EXISTS', base) == 1 then  -- a retired run's hash is not brought back
  redis.call('HINCRBY', base, 'requeued', 1)
end
redis.call('HINCRBY', KEYS[3], 'requeued', 1)
return 1
