-- A run's acknowledged items, shared by the scripts that write or read them
-- (prepended by scripts.py; keys in pcq.core.redis_common.keys, the Python side
-- is pcq.core.redis_list.acked): P:run:<run>:bits, a bitmap with bit n set when
-- item <run>:<n> was acknowledged, and P:run:<run>:acked, a set of the other
-- acknowledged ids (unusual or made-up ones). An id is acknowledged when it is in either.

-- keys.BITS_CAP (see there why): item numbers at or above it never get a bit.
local BITS_CAP = 16777216

-- The run an id belongs to: what precedes ':<digits>' at its end, else ''.
local function run_of(id)
  return string.match(id, '^(.*):%d+$') or ''
end

-- The id's bit in its run's bitmap, or nil when it cannot have one: its number
-- is not canonical decimal (no sign, no leading zero but "0") or not under the cap.
local function bit_of(id)
  local digits = string.match(id, ':(%d+)$')
  if not digits or #digits > 8 or (#digits > 1 and string.byte(digits, 1) == 48) then
    return nil  -- 8 digits hold every number under the cap; 48 = '0'
  end
  local n = tonumber(digits)
  if n >= BITS_CAP then return nil end
  return n
end

-- Whether id was acknowledged: its bit, else the acked set.
local function is_acked(prefix, id)
  local base = prefix .. ':run:' .. run_of(id)
  local n = bit_of(id)
  if n and redis.call('GETBIT', base .. ':bits', n) == 1 then return true end
  return redis.call('SISMEMBER', base .. ':acked', id) == 1
end
