#!lua flags=allow-oom
-- Give the in-flight items of dead consumers (heartbeat expired) back to the queue.
-- allow-oom: a dead consumer's items must come back even on a full Redis.
-- (Prepended with lib/envelope.lua: size, lines, envelope; lib/acked.lua: run_of, is_acked.)
-- KEYS[1] consumers set, KEYS[2] queue, KEYS[3] deliveries, KEYS[4] errors, KEYS[5] dead,
-- KEYS[6] stats, KEYS[7] the queue's extra-items counter
-- ARGV[1] prefix, ARGV[2] max deliveries, ARGV[3] now (seconds, 3 decimals),
-- ARGV[4] the calling consumer (never reaped), ARGV[5] payload size cap,
-- ARGV[6] a consumer reaped whatever its heartbeat says, or '': the previous process
-- that had the caller's id (a restarted container keeps its hostname and pid)
-- Returns {consumers reaped, items requeued, items dead-lettered}.
-- Each envelope is opened: an item already acknowledged (its run's bitmap or acked
-- set) was handled (the consumer died before the rest of its envelope was settled)
-- and is dropped; the others go back to the head (an envelope's in one envelope), or to the dead list one by one.
-- Payloads are only read (cjson.decode for the id), never re-encoded.
local prefix, max = ARGV[1], tonumber(ARGV[2])
local cap = tonumber(ARGV[5])
local reaped, requeued, dead = 0, 0, 0

local function id_of(raw)
  if #raw > cap then return nil end
  local ok, p = pcall(cjson.decode, raw)
  if ok and type(p) == 'table' and type(p.id) == 'string' then return p.id end
  return nil
end

for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if c == ARGV[6] or (c ~= ARGV[4] and redis.call('EXISTS', prefix .. ':hb:' .. c) == 0) then
    local proc = prefix .. ':proc:' .. c
    local backs = {}  -- per element held, what of it goes back (framing kept)
    for _, element in ipairs(redis.call('LRANGE', proc, 0, -1)) do
      local back = {}
      backs[#backs + 1] = back
      for _, raw in ipairs(lines(element)) do
        local id = id_of(raw)
        local run = id and run_of(id) or ''
        if id and is_acked(prefix, id) then
          -- handled and acknowledged: nothing to deliver again
        else
          local f = 0
          if id then
            f = redis.call('HINCRBY', KEYS[3], id, 1)
          end
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
            back[#back + 1] = raw
            if id then
              redis.call('HSET', KEYS[4], id, 'consumer ' .. c .. ' died holding it')
              redis.call('HINCRBY', prefix .. ':run:' .. run, 'redelivered', 1)
            end
            redis.call('HINCRBY', KEYS[6], 'redelivered', 1)
          end
        end
      end
    end
    local extra = 0
    for e = #backs, 1, -1 do  -- from the last, so the head keeps their order
      local back = backs[e]
      if #back > 0 then
        redis.call('LPUSH', KEYS[2], envelope(back, 1, #back))
        extra = extra + #back - 1
        requeued = requeued + #back
      end
    end
    if extra > 0 then
      redis.call('INCRBY', KEYS[7], extra)
    end
    redis.call('DEL', proc, prefix .. ':call:' .. c)
    redis.call('SREM', KEYS[1], c)
    redis.call('HINCRBY', KEYS[6], 'reaped', 1)
    reaped = reaped + 1
  end
end
return {reaped, requeued, dead}
