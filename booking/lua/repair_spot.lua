-- repair_spot.lua: make one spot's bits equal to what PostgreSQL says, fixing the counters.
-- KEYS[1] meta hash, KEYS[2] drift counter, KEYS[3] spot types,
--   then per day d = 1..n: KEYS[2+2d] bitmap, KEYS[3+2d] counters.
-- ARGV[1] n days, ARGV[2] spot idx,
--   then per day d: ARGV[1+2d] the spot's 12 desired bytes, ARGV[2+2d] EXPIREAT unix time.
-- Reply: {bits set, bits cleared} (drift repaired in each direction); {-2, 0} if not loaded.
local caps = redis.call('HGET', KEYS[1], 'caps')
if not caps then return {-2, 0} end
local n, spot = tonumber(ARGV[1]), tonumber(ARGV[2])
local ti = string.byte(redis.call('GETRANGE', KEYS[3], spot, spot) .. '\0')
local cap = cap_of(caps, ti)
local set_total, cleared_total = 0, 0
for d = 1, n do
  local bm, cnt, want = KEYS[2 + 2 * d], KEYS[3 + 2 * d], ARGV[1 + 2 * d]
  local have = redis.call('GETRANGE', bm, spot * SPOT_BYTES, spot * SPOT_BYTES + SPOT_BYTES - 1)
  local set, cleared = {}, {}
  for t = 0, SLOTS - 1 do
    local w, h = bit_at(want, 0, t), bit_at(have, 0, t)
    if w and not h then set[#set + 1] = t elseif h and not w then cleared[#cleared + 1] = t end
  end
  if #set + #cleared > 0 then
    redis.call('SETRANGE', bm, spot * SPOT_BYTES, want)
    bump(cnt, KEYS[2], ti, set, 1, cap)
    bump(cnt, KEYS[2], ti, cleared, -1, cap)
    redis.call('EXPIREAT', bm, ARGV[2 + 2 * d])
    redis.call('EXPIREAT', cnt, ARGV[2 + 2 * d])
  end
  set_total, cleared_total = set_total + #set, cleared_total + #cleared
end
return {set_total, cleared_total}
