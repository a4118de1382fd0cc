-- count.lua: how many spots a vehicle type could get for a window, exactly or as an upper bound.
-- KEYS[1] meta hash, KEYS[2] candidates of the vehicle type,
--   then per day d = 1..n: KEYS[1+2d] bitmap, KEYS[2+2d] counters.
-- ARGV[1] n days, ARGV[2] 'exact' or 'bound', ARGV[3] vehicle type,
--   then per day d: ARGV[2+2d] first slot, ARGV[3+2d] last slot (exclusive).
-- Reply: the count; -2 when the lot is not loaded (rebuild it from PostgreSQL).
--   exact: candidates whose bits are clear for every slot of the window (O(candidates)).
--   bound: sum over compatible types of capacity - max booked over the window's slots
--          (O(types * slots), independent of lot size; never below the exact count).
local n = tonumber(ARGV[1])
local meta = redis.call('HMGET', KEYS[1], 'n', 'caps', 'compat:' .. ARGV[3])
if not meta[1] then return -2 end
local n_spots, caps, compat = tonumber(meta[1]), meta[2], meta[3] or ''

local days = {}
for d = 1, n do
  days[d] = {bm = KEYS[1 + 2 * d], cnt = KEYS[2 + 2 * d],
             a = tonumber(ARGV[2 + 2 * d]), b = tonumber(ARGV[3 + 2 * d])}
end

if ARGV[2] == 'bound' then
  local total = 0
  for i = 1, #compat do
    local ti = string.byte(compat, i)
    local max_booked = 0
    for d = 1, n do
      local args = {}
      for t = days[d].a, days[d].b - 1 do
        args[#args + 1] = 'GET'
        args[#args + 1] = 'u16'
        args[#args + 1] = '#' .. (ti * SLOTS + t)
      end
      for _, v in ipairs(redis.call('BITFIELD_RO', days[d].cnt, unpack(args))) do
        if v > max_booked then max_booked = v end
      end
    end
    local free = cap_of(caps, ti) - max_booked
    if free > 0 then total = total + free end
  end
  return total
end

for d = 1, n do
  if n_spots * SPOT_BYTES <= 65536 then days[d].whole = redis.call('GET', days[d].bm) or '' end
end
local count = 0
local cands = redis.call('GET', KEYS[2]) or ''
for p = 1, #cands - 3, 4 do
  local b1, b2, b3 = string.byte(cands, p, p + 2)
  local spot = b1 * 65536 + b2 * 256 + b3
  local free = true
  for d = 1, n do
    local day = days[d]
    local s, base = day.whole, spot * SPOT_BYTES
    if not s then
      s, base = redis.call('GETRANGE', day.bm, base, base + SPOT_BYTES - 1), 0
    end
    if not range_clear(s, base, day.a, day.b) then free = false break end
  end
  if free then count = count + 1 end
end
return count
