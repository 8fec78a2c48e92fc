-- Envelope framing, shared by the scripts that open envelopes (prepended to
-- them by scripts.py; the Python side is pcq.core.redis_list.envelope):
-- a list element is one payload, or '#batch <n>\n' and n payloads, one per line.

-- How many payloads an element carries, by its header.
local function size(element)
  if string.byte(element, 1) ~= 35 then return 1 end  -- 35 = '#'
  return math.max(1, tonumber(string.match(element, '^#batch (%d+)\n')) or 1)
end

-- The payloads of an element, in order (a header-less element is one payload).
local function lines(element)
  if string.byte(element, 1) ~= 35 or not string.match(element, '^#batch %d+\n') then
    return {element}
  end
  local out, from = {}, string.find(element, '\n', 1, true) + 1
  while true do
    local stop = string.find(element, '\n', from, true)
    if not stop then
      out[#out + 1] = string.sub(element, from)
      return out
    end
    out[#out + 1] = string.sub(element, from, stop - 1)
    from = stop + 1
  end
end

-- One element for payloads[first..last].
local function envelope(payloads, first, last)
  if last == first then return payloads[first] end
  return '#batch ' .. (last - first + 1) .. '\n' .. table.concat(payloads, '\n', first, last)
end
