-- Apply occupancy deltas to one lot's live counters, clamped to [0, sensors] (sensors <= capacity).
-- KEYS[1]  occupancy hash of the lot ({lot:<id>} tag); fields "<level>|<type>|{c,n,o,u,t}", "_ready"
-- KEYS[2]  drift counter of the lot (incremented by the number of clamped values)
-- ARGV     repeated groups of five: group "<level>|<type>", d_occupied, d_unknown, d_sensors,
--          seen (epoch ms of the newest reading; the group's as_of only moves forward)
-- Reply: -1 when the hash was never built (the caller rebuilds from PostgreSQL), else the clamp count.
if redis.call('HEXISTS', KEYS[1], '_ready') == 0 then
  return -1
end
local clamped = 0
local function num(field)
  return tonumber(redis.call('HGET', KEYS[1], field) or '0')
end
for i = 1, #ARGV, 5 do
  local g = ARGV[i]
  local cap = num(g .. '|c')
  local n = num(g .. '|n') + tonumber(ARGV[i + 3])
  if n < 0 then n = 0; clamped = clamped + 1 elseif n > cap then n = cap; clamped = clamped + 1 end
  local o = num(g .. '|o') + tonumber(ARGV[i + 1])
  if o < 0 then o = 0; clamped = clamped + 1 elseif o > n then o = n; clamped = clamped + 1 end
  local u = num(g .. '|u') + tonumber(ARGV[i + 2])
  if u < 0 then u = 0; clamped = clamped + 1 elseif u > n - o then u = n - o; clamped = clamped + 1 end
  local t = num(g .. '|t')
  local seen = tonumber(ARGV[i + 4])
  if seen > t then t = seen end
  redis.call('HSET', KEYS[1], g .. '|n', n, g .. '|o', o, g .. '|u', u, g .. '|t', t)
end
if clamped > 0 then
  redis.call('INCRBY', KEYS[2], clamped)
end
return clamped
