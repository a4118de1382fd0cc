-- hold.lua: atomically claim the best free compatible spot of one lot for one window.
-- KEYS[1] meta hash, KEYS[2] candidates of the vehicle type, KEYS[3] hold record,
--   KEYS[4] drift counter, then per day d = 1..n: KEYS[3+2d] bitmap, KEYS[4+2d] counters.
-- ARGV[1] n days, ARGV[2] hold record TTL in ms, ARGV[3] only-this-spot idx or -1,
--   ARGV[4] excluded spot indices, space separated ('' for none), ARGV[5] best-fit scan limit,
--   then per day d: ARGV[4d+2] day label YYYYMMDD, ARGV[4d+3] first slot,
--   ARGV[4d+4] last slot (exclusive), ARGV[4d+5] EXPIREAT unix time for the day's keys.
-- Reply: the spot idx (>= 0); -1 sold out; -2 lot not loaded (rebuild it from PostgreSQL).
--   An existing hold record answers its own spot idx, so a retried hold is idempotent.
local n = tonumber(ARGV[1])
local meta = redis.call('HMGET', KEYS[1], 'n', 'strategy', 'caps')
if not meta[1] then return -2 end
local n_spots, caps = tonumber(meta[1]), meta[3]
local best_fit = meta[2] == 'best_fit'

local existing = redis.call('GET', KEYS[3])
if existing then return tonumber(string.match(existing, '^(%d+)')) end

local only = tonumber(ARGV[3])
local excluded = {}
for idx in string.gmatch(ARGV[4], '%d+') do excluded[tonumber(idx)] = true end
local scan_limit = tonumber(ARGV[5])

local days = {}
for d = 1, n do
  local k = 4 * d
  days[d] = {bm = KEYS[3 + 2 * d], cnt = KEYS[4 + 2 * d], label = ARGV[k + 2],
             a = tonumber(ARGV[k + 3]), b = tonumber(ARGV[k + 4]), exp = ARGV[k + 5]}
  -- Small lots: one GET of the day, then pure Lua byte checks per candidate. Big lots: a
  -- 12-byte GETRANGE per candidate, so a hold never copies megabytes.
  if n_spots * SPOT_BYTES <= 65536 then days[d].whole = redis.call('GET', days[d].bm) or '' end
end

-- The spot's bytes for day d: (string, base offset of the spot's first byte in it).
local function spot_bytes(d, spot)
  local day = days[d]
  if day.whole then return day.whole, spot * SPOT_BYTES end
  return redis.call('GETRANGE', day.bm, spot * SPOT_BYTES, spot * SPOT_BYTES + SPOT_BYTES - 1), 0
end

local function fits(spot)
  for d = 1, n do
    local s, base = spot_bytes(d, spot)
    if not range_clear(s, base, days[d].a, days[d].b) then return false end
  end
  return true
end

-- Best fit: free slots touching the window on both sides; 0 means the window plugs a gap exactly.
local function slack(spot)
  local s1, b1 = spot_bytes(1, spot)
  local sn, bn = spot_bytes(n, spot)
  return free_run(s1, b1, days[1].a - 1, -1) + free_run(sn, bn, days[n].b, 1)
end

local CHUNK = 256
local best, best_ti, best_score, n_fits = -1, -1, 1e9, 0
local pos, done = 0, false
while not done do
  local chunk = redis.call('GETRANGE', KEYS[2], pos * 4, (pos + CHUNK) * 4 - 1)
  for p = 1, #chunk - 3, 4 do
    local b1, b2, b3, ti = string.byte(chunk, p, p + 3)
    local spot = b1 * 65536 + b2 * 256 + b3
    if n_fits > 0 and ti ~= best_ti then done = true break end -- never trade type preference for fit
    if (only < 0 or spot == only) and not excluded[spot] and fits(spot) then
      if not best_fit then best, best_ti, done = spot, ti, true break end
      local score = slack(spot)
      n_fits = n_fits + 1
      if score < best_score then best, best_ti, best_score = spot, ti, score end
      if score == 0 or n_fits >= scan_limit then done = true break end
    end
  end
  if #chunk < CHUNK * 4 then break end
  pos = pos + CHUNK
end
if best < 0 then return -1 end

local cap = cap_of(caps, best_ti)
local record = {best, best_ti}
for d = 1, n do
  local day = days[d]
  local s, base = spot_bytes(d, best)
  apply(day.bm, day.cnt, KEYS[4], s, base, best, day.a, day.b, true, best_ti, cap)
  redis.call('EXPIREAT', day.bm, day.exp)
  redis.call('EXPIREAT', day.cnt, day.exp)
  record[#record + 1] = day.label .. ':' .. day.a .. ':' .. day.b
end
redis.call('SET', KEYS[3], table.concat(record, ' '), 'PX', ARGV[2])
return best
