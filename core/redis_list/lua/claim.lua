-- Acknowledge handled items and/or claim the next batch, in one call.
-- KEYS[1] queue, KEYS[2] this consumer's processing list, KEYS[3] consumers set,
-- KEYS[4] deliveries hash, KEYS[5] errors hash, KEYS[6] (unused), KEYS[7] call-id key
-- ARGV[1] key prefix, ARGV[2] consumer id, ARGV[3] call-id prefix, ARGV[4] call number,
-- ARGV[5] items to claim, ARGV[6] 'all' (the acks cover everything this consumer
-- holds) or 'some' (payloads to remove follow the ids), ARGV[7] number of runs, then
-- per run: run id and its item ids joined by ','; then (mode 'some') the payloads to remove.
-- (One joined argument instead of one per id: packing arguments costs the client
-- more than splitting them costs Lua.)
-- Returns {HLEN deliveries, busy, {payload...}}: failures pending anywhere, 1 if the
-- queue may hold more, and what the consumer holds after the call. For a batch, busy
-- is whether the claim got all it asked for: a guess that saves an LLEN per call (when
-- wrong, the next claim finds nothing and the client blocks in BLMOVE). One by one
-- the guess would be wrong whenever the queue runs dry, so LLEN tells.
-- Every redis.call costs about a microsecond of Redis CPU on top of its work (the
-- reply round-trips through RESP), so this script makes as few as it can.

local failures = redis.call('HLEN', KEYS[4])

-- A call retried after its reply was lost must not be applied twice: call
-- numbers grow, so a number at or below the last one applied is a retry.
-- (SET ... GET may store a smaller number on a retry; only calls without
-- acknowledgements can follow it, and re-applying those is harmless.)
local rolled_back = false
local last = redis.call('SET', KEYS[7], ARGV[3] .. ':' .. ARGV[4], 'GET')
if last then
  local who, n = string.match(last, '^(.*):(%d+)$')
  if who == ARGV[3] and tonumber(n) >= tonumber(ARGV[4]) then
    return {failures, 1, redis.call('LRANGE', KEYS[2], 0, -1)}
  end
  -- Our previous call is not here: Redis restarted from an AOF that ended before
  -- writes it had already confirmed (appendfsync everysec). The processing list is
  -- then not what this consumer thinks it holds (see below).
  rolled_back = who == ARGV[3] and tonumber(n) < tonumber(ARGV[4]) - 1
else
  -- No call key: our first call, or a reaper (or our own deregistration) removed
  -- us from the consumers set, always together with this key. Register before
  -- claiming, or a reaper would never see what we claim. (The heartbeat thread
  -- registers too, but only once per beat.)
  redis.call('SADD', KEYS[3], ARGV[2])
end

local prefix, consumer = ARGV[1], ARGV[2]
local i, acked = 8, 0
for _ = 1, tonumber(ARGV[7]) do
  local run, ids, k = ARGV[i], {ARGV[i + 1]}, 1
  if string.find(ARGV[i + 1], ',', 1, true) then  -- more than one id (one: no split)
    k = 0
    for id in string.gmatch(ARGV[i + 1], '[^,]+') do
      k = k + 1
      ids[k] = id
    end
  end
  -- The run's acked set: SADD returns how many ids were new; the rest were duplicates.
  local added = redis.call('SADD', prefix .. ':run:' .. run .. ':acked', unpack(ids))
  redis.call('HINCRBY', prefix .. ':run:' .. run .. ':by', consumer, k)
  if added < k then
    redis.call('HINCRBY', prefix .. ':run:' .. run, 'duplicates', k - added)
  end
  if failures > 0 then
    redis.call('HDEL', KEYS[4], unpack(ids))
    redis.call('HDEL', KEYS[5], unpack(ids))
  end
  acked = acked + k
  i = i + 2
end
if rolled_back then
  -- Hand back whatever the processing list holds that is not acknowledged,
  -- counted as redeliveries, rather than drop it with the list ('all' below).
  local raws = redis.call('LRANGE', KEYS[2], 0, -1)
  local back = 0
  for j = #raws, 1, -1 do
    local ok, p = pcall(cjson.decode, raws[j])
    local id = ok and type(p) == 'table' and type(p.id) == 'string' and p.id or nil
    local run = id and (string.match(id, '^(.*):%d+$') or '') or ''
    if not id or redis.call('SISMEMBER', prefix .. ':run:' .. run .. ':acked', id) == 0 then
      redis.call('LPUSH', KEYS[1], raws[j])
      back = back + 1
      if id then
        redis.call('HINCRBY', prefix .. ':run:' .. run, 'redelivered', 1)
      end
    end
  end
  redis.call('DEL', KEYS[2])
  redis.call('HINCRBY', prefix .. ':stats', 'redelivered', back)
end
if acked > 0 then
  if ARGV[6] == 'all' then
    -- Everything this consumer holds was acknowledged: drop the list whole.
    -- (A processing list only ever holds what its consumer claimed and was told
    -- about; if a reaper took it meanwhile, there is nothing to drop.)
    redis.call('DEL', KEYS[2])
  else
    for j = i, #ARGV do
      redis.call('LREM', KEYS[2], 1, ARGV[j])
    end
  end
end

local want = tonumber(ARGV[5])
local emptied = acked > 0 and ARGV[6] == 'all'  -- the processing list was just dropped
local busy = 1
if want == 1 then
  local one = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not one then
    busy = 0
  elseif emptied or redis.call('LLEN', KEYS[2]) == 1 then
    return {failures, redis.call('LLEN', KEYS[1]), {one}}
  end
elseif want > 1 then
  local popped = redis.call('LMPOP', 1, KEYS[1], 'LEFT', 'COUNT', want)
  if not popped then
    busy = 0
  else
    local got = popped[2]
    if #got < want then
      busy = 0
    end
    if redis.call('RPUSH', KEYS[2], unpack(got)) == #got then
      return {failures, busy, got}
    end
  end
end
return {failures, busy, redis.call('LRANGE', KEYS[2], 0, -1)}
