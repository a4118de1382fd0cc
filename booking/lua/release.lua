-- release.lua: free what one hold set, wholly or from a cut-off slot onward; idempotent.
-- KEYS[1] hold record, KEYS[2] meta hash, KEYS[3] drift counter,
--   then per range r = 1..n of the record, in record order: KEYS[2+2r] bitmap, KEYS[3+2r] counters.
-- ARGV[1] the record as the caller read it (optimistic check: it names the keys above),
--   ARGV[2] cut-off day label YYYYMMDD or '' to release everything,
--   ARGV[3] cut-off slot: slots >= it on the cut-off day, and all later days, are released.
-- Reply: {1, slots freed}; {0, 0} when the record is gone (released twice frees nothing);
--   {-1, 0} when the record changed since the caller read it (read it again and retry).
local record = redis.call('GET', KEYS[1])
if not record then return {0, 0} end
if record ~= ARGV[1] then return {-1, 0} end
local caps = redis.call('HGET', KEYS[2], 'caps') or ''

local it = string.gmatch(record, '%S+')
local spot, ti = tonumber(it()), tonumber(it())
local cap = cap_of(caps, ti)
local cut_day, cut_slot = ARGV[2], tonumber(ARGV[3])
local keep = {spot, ti}
local freed, r = 0, 0
for range in it do
  r = r + 1
  local label, a, b = string.match(range, '^(%d+):(%d+):(%d+)$')
  a, b = tonumber(a), tonumber(b)
  local from = a
  if cut_day ~= '' then
    if label < cut_day then from = b elseif label == cut_day then from = math.max(a, cut_slot) end
  end
  if from < b then
    local bm = KEYS[2 + 2 * r]
    local s = redis.call('GETRANGE', bm, spot * SPOT_BYTES, spot * SPOT_BYTES + SPOT_BYTES - 1)
    -- Clears only bits still set: a repair may already have cleared some, and counters must
    -- move by what actually changed.
    freed = freed + apply(bm, KEYS[3 + 2 * r], KEYS[3], s, 0, spot, from, b, false, ti, cap)
  end
  if from > a then keep[#keep + 1] = label .. ':' .. a .. ':' .. math.min(from, b) end
end
if #keep > 2 then
  redis.call('SET', KEYS[1], table.concat(keep, ' '), 'KEEPTTL')
else
  redis.call('DEL', KEYS[1])
end
return {1, freed}
