#!lua flags=allow-oom
-- Acknowledge handled items and/or claim the next items, in one call.
-- allow-oom: acknowledging is what frees memory, and a claim moves payloads
-- (queue -> processing list) without growing them: both must work on a full Redis.
-- (Prepended with lib/envelope.lua: size, lines, envelope; lib/acked.lua: BITS_CAP,
-- run_of, bit_of, is_acked.)
-- KEYS[1] queue, KEYS[2] this consumer's processing list, KEYS[3] consumers set,
-- KEYS[4] deliveries hash, KEYS[5] errors hash, KEYS[6] the queue's extra-items counter,
-- KEYS[7] call-id key
-- ARGV[1] key prefix, ARGV[2] consumer id, ARGV[3] call-id prefix, ARGV[4] call number,
-- ARGV[5] items to claim (0: acknowledge only), ARGV[6] 'all' (everything this consumer
-- holds is settled), 'some' (the envelopes settled follow the ids) or 'none',
-- ARGV[7] how many envelopes BLMOVE has just put at the tail of the processing list
-- (counted as claimed; one that holds more than ARGV[5] items is split), usually 0,
-- ARGV[8] number of runs, then per run three arguments: the run id; its acknowledged
-- item numbers as ranges 'a-b' joined by ',' (e.g. '0-41,43-99'; numbers canonical
-- decimal under BITS_CAP; ranges in any order, and a number acknowledged twice in
-- the batch is in two of them) or ''; its other ids (a number not canonical, or not
-- under BITS_CAP) joined by ',' or ''; then (mode 'some') the envelopes to drop from
-- the processing list.
-- (Ranges: a batch is usually one range, so the client sends a few bytes and Lua
-- splits nothing per item. Joined arguments instead of one per id: packing
-- arguments costs the client more than splitting them costs Lua.)
-- Where acknowledgements go: numbers below the run's produced count (push.lua
-- raises it before any consumer can see the items) set their bit in
-- P:run:<run>:bits; the rest, and the other ids, are added to P:run:<run>:acked.
-- So a made-up id with a huge number costs one set member, never a big bitmap.
-- An id in neither key counts as new; in either, as a duplicate.
-- Returns {HLEN deliveries, busy, {envelope...}, whole[, fenced]}: failures pending anywhere,
-- 1 if the queue may hold more, the envelopes claimed, and whole = 1 when this call
-- had been applied before (a retry after a lost reply): the envelopes are then
-- everything the consumer holds. Claims take whole envelopes while they fit in
-- ARGV[5] items and split the one that does not (its rest goes back to the head), so
-- a consumer never holds more than it asked for. For a batch, busy is whether the
-- claim got all it asked for: a guess that saves an LLEN per call (when wrong, the
-- next claim finds nothing and the client blocks in BLMOVE). One by one the guess
-- would be wrong whenever the queue runs dry, so LLEN tells.
-- fenced (a fifth element, 1) when a reaper had removed this consumer: the call
-- only recorded its acknowledgements, and left the failure counts of those items
-- alone (core/redis_list/lease.py).
-- Every redis.call costs about a microsecond of Redis CPU on top of its work (the
-- reply round-trips through RESP), so this script makes as few as it can.

local failures = redis.call('HLEN', KEYS[4])

-- A call retried after its reply was lost must not be applied twice: call
-- numbers grow, so a number at or below the last one applied is a retry.
-- (SET ... GET may store a smaller number on a retry; only calls without
-- acknowledgements can follow it, and re-applying those is harmless.)
local rolled_back, fenced = false, false
local last = redis.call('SET', KEYS[7], ARGV[3] .. ':' .. ARGV[4], 'GET')
if last then
  local who, n = string.match(last, '^(.*):(%d+)$')
  if who == ARGV[3] and tonumber(n) >= tonumber(ARGV[4]) then
    return {failures, 1, redis.call('LRANGE', KEYS[2], 0, -1), 1}
  end
  -- Our previous call is not here: Redis restarted from an AOF that ended before
  -- writes it had already confirmed (appendfsync everysec). The processing list is
  -- then not what this consumer thinks it holds (see below).
  rolled_back = who == ARGV[3] and tonumber(n) < tonumber(ARGV[4]) - 1
elseif redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 0 then
  -- No call key and not registered: a reaper removed us (it deletes both) while
  -- we were paused, and gave what we held to others. Registering here would let
  -- the consumer go on handling items that are no longer its own. Record the
  -- acknowledgements (those items were handled), settle and claim nothing, and
  -- say so: the consumer rejoins (beat.lua 'join'), as it did when it started.
  -- (No call key but registered: the first call since joining.)
  redis.call('DEL', KEYS[7])
  fenced = true
end

local prefix, consumer = ARGV[1], ARGV[2]

-- Run cmd on key with the items of list as arguments, at most 1000 at a time
-- (unpack has a limit); returns the sum of the replies.
local function each(cmd, key, list, from, to)
  local sum = 0
  for j = from, to, 1000 do
    sum = sum + redis.call(cmd, key, unpack(list, j, math.min(j + 999, to)))
  end
  return sum
end

-- The ids run:a .. run:b.
local function ids(run, a, b)
  local out = {}
  for n = a, b do
    out[#out + 1] = run .. ':' .. n
  end
  return out
end

-- Set bits a..b of key; returns how many were already set. One bit: SETBIT.
-- Partial bytes at
-- either end with BITFIELD (u<w> set to all ones), whole bytes between with one
-- SETRANGE of 0xff bytes (either pads the string with zero bytes as it grows).
local function mark(key, a, b)
  if a == b then  -- one by one: SETBIT says whether the bit was set, in one call
    return redis.call('SETBIT', key, a, 1)
  end
  local had = redis.call('BITCOUNT', key, a, b, 'BIT')
  if had == b - a + 1 then return had end
  local first, last = math.floor(a / 8), math.floor(b / 8)
  if first == last then
    redis.call('BITFIELD', key, 'SET', 'u' .. (b - a + 1), a, 2 ^ (b - a + 1) - 1)
    return had
  end
  local edges, from, to = {}, first, last
  if a % 8 ~= 0 then  -- a starts inside its byte
    local w = 8 - a % 8
    edges[#edges + 1], edges[#edges + 2], edges[#edges + 3], edges[#edges + 4] =
      'SET', 'u' .. w, a, 2 ^ w - 1
    from = first + 1
  end
  if b % 8 ~= 7 then  -- b ends inside its byte
    local w = b % 8 + 1
    edges[#edges + 1], edges[#edges + 2], edges[#edges + 3], edges[#edges + 4] =
      'SET', 'u' .. w, last * 8, 2 ^ w - 1
    to = last - 1
  end
  if to >= from then
    redis.call('SETRANGE', key, from, string.rep('\255', to - from + 1))
  end
  if #edges > 0 then
    redis.call('BITFIELD', key, unpack(edges))
  end
  return had
end

local i = 9
for _ = 1, tonumber(ARGV[8]) do
  local run, ranges, others = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local base = prefix .. ':run:' .. run
  -- k acknowledgements, dups of them duplicates; loose: ids for the acked set;
  -- every: all the ids, built only when failures must be cleared (HDEL).
  local k, dups, loose, every = 0, 0, {}, {}
  if ranges ~= '' then
    -- (HMGET: the consumer's ACL user has it, and it does what HGET would.)
    local limit = math.min(tonumber(redis.call('HMGET', base, 'produced')[1]) or 0, BITS_CAP)
    -- The set may hold ids that fit the bitmap: acknowledged before their run
    -- produced them (made up), or by an older pcq. Those move to the bitmap as
    -- they are acknowledged again, so no id is in both (a run's count is
    -- BITCOUNT + SCARD). Usually the set does not exist and this costs one call.
    local sweep = redis.call('EXISTS', base .. ':acked') == 1
    for a, b in string.gmatch(ranges, '(%d+)%-(%d+)') do
      a, b = tonumber(a), tonumber(b)
      k = k + b - a + 1
      local top = math.min(b, limit - 1)
      if a <= top then
        dups = dups + mark(base .. ':bits', a, top)
        if sweep then
          local moved = ids(run, a, top)
          dups = dups + each('SREM', base .. ':acked', moved, 1, #moved)
        end
      end
      for n = math.max(a, top + 1), b do
        loose[#loose + 1] = run .. ':' .. n
      end
      if failures > 0 then
        for n = a, b do
          every[#every + 1] = run .. ':' .. n
        end
      end
    end
  end
  if others ~= '' then
    for id in string.gmatch(others, '[^,]+') do
      k = k + 1
      loose[#loose + 1] = id
      every[#every + 1] = id
    end
  end
  if #loose > 0 then
    dups = dups + #loose - each('SADD', base .. ':acked', loose, 1, #loose)
  end
  redis.call('HINCRBY', base .. ':by', consumer, k)
  if dups > 0 then
    redis.call('HINCRBY', base, 'duplicates', dups)
  end
  -- Fenced: a reaper requeued these items before their acknowledgements came; the
  -- copies in the queue are redeliveries and keep their counts (the acknowledgement
  -- of the copy clears them).
  if failures > 0 and #every > 0 and not fenced then
    each('HDEL', KEYS[4], every, 1, #every)
    each('HDEL', KEYS[5], every, 1, #every)
  end
  i = i + 3
end
if fenced then
  return {failures, 1, {}, 0, 1}
end
if rolled_back then
  -- Hand back whatever the processing list holds that is not acknowledged,
  -- counted as redeliveries, rather than drop it with the list ('all' below).
  local elements, extra = redis.call('LRANGE', KEYS[2], 0, -1), 0
  local back = 0
  for e = #elements, 1, -1 do
    local kept = {}
    for _, raw in ipairs(lines(elements[e])) do
      local ok, p = pcall(cjson.decode, raw)
      local id = ok and type(p) == 'table' and type(p.id) == 'string' and p.id or nil
      local run = id and run_of(id) or ''
      if not id or not is_acked(prefix, id) then
        kept[#kept + 1] = raw
        if id then
          redis.call('HINCRBY', prefix .. ':run:' .. run, 'redelivered', 1)
        end
      end
    end
    if #kept > 0 then
      redis.call('LPUSH', KEYS[1], envelope(kept, 1, #kept))
      extra, back = extra + #kept - 1, back + #kept
    end
  end
  redis.call('DEL', KEYS[2])
  redis.call('HINCRBY', prefix .. ':stats', 'redelivered', back)
  if extra > 0 then
    redis.call('INCRBY', KEYS[6], extra)
  end
end
if ARGV[6] == 'all' then
  -- Everything this consumer holds is settled: drop the list whole. (A
  -- processing list only ever holds what its consumer claimed and was told
  -- about; if a reaper took it meanwhile, there is nothing to drop.)
  redis.call('DEL', KEYS[2])
elseif ARGV[6] == 'some' then
  for j = i, #ARGV do
    redis.call('LREM', KEYS[2], 1, ARGV[j])
  end
end

local want = tonumber(ARGV[5])
local got, n, extra, busy = {}, 0, 0, 1

-- Keep the first `keep` payloads of `element` (returned), the rest back at the head.
local function split(element, keep)
  local payloads = lines(element)
  if #payloads <= keep then return element end  -- a header that overstated its count
  redis.call('LPUSH', KEYS[1], envelope(payloads, keep + 1, #payloads))
  extra = extra - (#payloads - keep - 1)
  return envelope(payloads, 1, keep)
end

local adopt = tonumber(ARGV[7])
if adopt > 0 then
  got = redis.call('LRANGE', KEYS[2], -adopt, -1)
  for e = 1, #got do
    local m = size(got[e])
    extra = extra + m - 1
    if m > want and #got == 1 then
      got[1] = split(got[1], want)
      redis.call('LSET', KEYS[2], -1, got[1])
      m = want
    end
    n = n + m
  end
elseif want == 1 then
  -- One by one: LMOVE straight into the processing list, its reply tells the rest.
  local one = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not one then
    return {failures, 0, {}, 0}
  end
  local m = size(one)
  if m > 1 then
    extra = m - 1
    one = split(one, 1)
    redis.call('LSET', KEYS[2], -1, one)
    redis.call('DECRBY', KEYS[6], extra)
  end
  return {failures, redis.call('LLEN', KEYS[1]), {one}, 0}
end
if adopt == 0 and want > 0 then
  -- The first envelope goes straight into the processing list (LMOVE: its bytes
  -- are copied once, where LINDEX + LMPOP + RPUSH copied them three times); when
  -- producer and consumer batch alike, it is all the claim takes.
  local first = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not first then
    return {failures, 0, {}, 0}
  end
  local m = size(first)
  extra = m - 1
  if m > want then
    first = split(first, want)
    redis.call('LSET', KEYS[2], -1, first)
    m = want
  end
  got[1], n = first, m
end
local adopted = #got  -- already in the processing list

-- Take whole envelopes while they fit: the head's size guesses how many to pop
-- at once; an envelope that does not fit is split (its rest stays at the head).
while n < want do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then
    busy = 0
    break
  end
  local per = size(head)
  if n + per > want then
    redis.call('LPOP', KEYS[1])
    extra = extra + per - 1
    got[#got + 1] = split(head, want - n)
    break
  end
  local k = math.floor((want - n) / per)
  local envs = redis.call('LMPOP', 1, KEYS[1], 'LEFT', 'COUNT', k)[2]
  local returned = false
  for e = 1, #envs do
    local m = size(envs[e])
    if n + m > want then  -- sizes differ: this one and those after it go back
      for back = #envs, e, -1 do
        redis.call('LPUSH', KEYS[1], envs[back])
      end
      returned = true
      break
    end
    got[#got + 1] = envs[e]
    n = n + m
    extra = extra + m - 1
  end
  if #envs < k and not returned then
    busy = 0
    break
  end
end
if #got > adopted then
  redis.call('RPUSH', KEYS[2], unpack(got, adopted + 1))
end
if extra ~= 0 then
  redis.call('DECRBY', KEYS[6], extra)
end
return {failures, busy, got, 0}
