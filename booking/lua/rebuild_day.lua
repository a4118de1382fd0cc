-- rebuild_day.lua: replace one lot-day's bitmap and counters with state computed from PostgreSQL.
-- KEYS[1] bitmap, KEYS[2] counters, KEYS[3] scratch key (same lot; gone when the script ends).
-- ARGV[1] desired bitmap ('' = nothing occupied), ARGV[2] desired counters ('' = all zero),
--   ARGV[3] EXPIREAT unix time for the day's keys.
-- Reply: {bits set, bits cleared} relative to what Redis held (the drift repaired).
-- Bit counting runs in C (BITCOUNT/BITOP), so a 100,000-spot day costs milliseconds.
local before = redis.call('BITCOUNT', KEYS[1])
local after, common = 0, 0
if #ARGV[1] > 0 then
  redis.call('SET', KEYS[3], ARGV[1])
  after = redis.call('BITCOUNT', KEYS[3])
  if before > 0 then
    -- bitmap := old AND new; its popcount is the bits both agree on.
    redis.call('BITOP', 'AND', KEYS[1], KEYS[1], KEYS[3])
    common = redis.call('BITCOUNT', KEYS[1])
  end
  redis.call('RENAME', KEYS[3], KEYS[1])
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
if #ARGV[2] > 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'EXAT', ARGV[3])
else
  redis.call('DEL', KEYS[2])
end
return {after - common, before - common}
