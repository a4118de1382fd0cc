-- _lib.lua: helpers prepended to every slot script by booking/slotstore.py; not a script itself.
-- Bitmap layout: bit offset spot*96 + slot, so each spot's day is 12 bytes at byte spot*12,
-- with slot 0 in the most significant bit of the first byte (Redis SETBIT/BITFIELD order).
-- Counters: BITFIELD u16 at #(type_index*96 + slot).
local SLOTS = 96
local SPOT_BYTES = 12

-- Mask of slots [lo, hi) inside one byte, 0 <= lo < hi <= 8, first slot in the high bit.
local function byte_mask(lo, hi)
  return bit.band(bit.rshift(0xFF, lo), bit.lshift(0xFF, 8 - hi), 0xFF)
end

-- True when slots [a, b) of the spot whose bytes start after byte `base` of `s` are all clear.
-- Bytes past the end of `s` count as zero (keys are created lazily and only grow as needed).
local function range_clear(s, base, a, b)
  for j = math.floor(a / 8), math.floor((b - 1) / 8) do
    local byte = string.byte(s, base + j + 1)
    if byte and byte ~= 0 then
      local lo = a - j * 8
      if lo < 0 then lo = 0 end
      local hi = b - j * 8
      if hi > 8 then hi = 8 end
      if bit.band(byte, byte_mask(lo, hi)) ~= 0 then return false end
    end
  end
  return true
end

local function bit_at(s, base, t)
  local byte = string.byte(s, base + math.floor(t / 8) + 1) or 0
  return bit.band(byte, bit.rshift(0x80, t % 8)) ~= 0
end

-- Clear slots met walking from slot `t` by `step` until a set bit or the edge of the day.
local function free_run(s, base, t, step)
  local n = 0
  while t >= 0 and t < SLOTS and not bit_at(s, base, t) do
    n = n + 1
    t = t + step
  end
  return n
end

-- Capacity of type `ti` from the packed big-endian u16 capacities in the meta hash.
local function cap_of(caps, ti)
  local hi, lo = string.byte(caps, ti * 2 + 1, ti * 2 + 2)
  return (hi or 0) * 256 + (lo or 0)
end

-- Adds `delta` (+1 or -1) to the type-`ti` counters of the given slots, never leaving [0, cap].
-- OVERFLOW FAIL refuses to go below 0; a result above cap is clamped back. Either case means
-- the counters disagreed with the bitmap, so it is counted in the drift key for the reconciler.
local function bump(cnt_key, drift_key, ti, slots, delta, cap)
  if #slots == 0 then return 0 end
  local args = {'OVERFLOW', 'FAIL'}
  for _, t in ipairs(slots) do
    args[#args + 1] = 'INCRBY'
    args[#args + 1] = 'u16'
    args[#args + 1] = '#' .. (ti * SLOTS + t)
    args[#args + 1] = delta
  end
  local res = redis.call('BITFIELD', cnt_key, unpack(args))
  local drift = 0
  for i, v in ipairs(res) do
    if not v then
      drift = drift + 1
    elseif v > cap then
      redis.call('BITFIELD', cnt_key, 'SET', 'u16', '#' .. (ti * SLOTS + slots[i]), cap)
      drift = drift + 1
    end
  end
  if drift > 0 then redis.call('INCRBY', drift_key, drift) end
  return drift
end

-- Sets (on) or clears (not on) slots [a, b) of `spot` in bitmap `key`, whose current bytes
-- for the spot are at `base` in `s`, and moves the counters by exactly the bits that changed.
-- Returns the number of bits changed.
local function apply(key, cnt_key, drift_key, s, base, spot, a, b, on, ti, cap)
  local j0, j1 = math.floor(a / 8), math.floor((b - 1) / 8)
  local out, changed = {}, {}
  for j = j0, j1 do
    local byte = string.byte(s, base + j + 1) or 0
    local nb = byte
    for t = math.max(a, j * 8), math.min(b, j * 8 + 8) - 1 do
      local m = bit.rshift(0x80, t % 8)
      local set = bit.band(nb, m) ~= 0
      if on and not set then
        nb = bit.bor(nb, m)
        changed[#changed + 1] = t
      elseif set and not on then
        nb = bit.band(nb, bit.bnot(m))
        changed[#changed + 1] = t
      end
    end
    out[#out + 1] = bit.band(nb, 0xFF)
  end
  if #changed > 0 then
    redis.call('SETRANGE', key, spot * SPOT_BYTES + j0, string.char(unpack(out)))
    bump(cnt_key, drift_key, ti, changed, on and 1 or -1, cap)
  end
  return #changed
end
