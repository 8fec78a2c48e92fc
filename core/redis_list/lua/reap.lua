#!lua flags=allow-oom
-- Give the in-flight items of dead consumers (heartbeat expired) back to the queue.
-- allow-oom: a dead consumer's items must come back even on a full Redis.
-- KEYS[1] consumers set, KEYS[2] queue, KEYS[3] deliveries, KEYS[4] errors, KEYS[5] dead,
-- KEYS[6] stats
-- ARGV[1] prefix, ARGV[2] max deliveries, ARGV[3] now (seconds, 3 decimals),
-- ARGV[4] the calling consumer (never reaped), ARGV[5] payload size cap,
-- ARGV[6] a consumer reaped whatever its heartbeat says, or '': the previous process
-- that had the caller's id (a restarted container keeps its hostname and pid)
-- Returns {consumers reaped, items requeued, items dead-lettered}.
-- Payloads are only read (cjson.decode for the id), never re-encoded.
local prefix, max = ARGV[1], tonumber(ARGV[2])
local cap = tonumber(ARGV[5])
local reaped, requeued, dead = 0, 0, 0
for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if c == ARGV[6] or (c ~= ARGV[4] and redis.call('EXISTS', prefix .. ':hb:' .. c) == 0) then
    local proc = prefix .. ':proc:' .. c
    local raws = redis.call('LRANGE', proc, 0, -1)
    for i = #raws, 1, -1 do
      local raw = raws[i]
      local id = nil
      if #raw <= cap then
        local ok, p = pcall(cjson.decode, raw)
        if ok and type(p) == 'table' and type(p.id) == 'string' then
          id = p.id
        end
      end
      local f = 0
      if id then
        f = redis.call('HINCRBY', KEYS[3], id, 1)
      end
      local run = id and (string.match(id, '^(.*):%d+$') or '') or ''
      if id and f >= max then
        redis.call('RPUSH', KEYS[5], cjson.encode({
          reason = 'consumer ' .. c .. ' died holding it; ' .. f .. ' deliveries (max ' .. max .. ')',
          payload = raw, consumer = c, at = tonumber(ARGV[3]), id = id, run = run,
          deliveries = f}))
        redis.call('HDEL', KEYS[3], id)
        redis.call('HDEL', KEYS[4], id)
        redis.call('SADD', prefix .. ':run:' .. run .. ':dead', id)
        redis.call('HINCRBY', KEYS[6], 'dead_letters', 1)
        dead = dead + 1
      else
        -- Back at the head: these items already waited their turn once.
        -- (Undecodable payloads go back too: a live consumer dead-letters them.)
        redis.call('LPUSH', KEYS[2], raw)
        if id then
          redis.call('HSET', KEYS[4], id, 'consumer ' .. c .. ' died holding it')
          redis.call('HINCRBY', prefix .. ':run:' .. run, 'redelivered', 1)
        end
        redis.call('HINCRBY', KEYS[6], 'redelivered', 1)
        requeued = requeued + 1
      end
    end
    redis.call('DEL', proc, prefix .. ':call:' .. c)
    redis.call('SREM', KEYS[1], c)
    redis.call('HINCRBY', KEYS[6], 'reaped', 1)
    reaped = reaped + 1
  end
end
return {reaped, requeued, dead}
