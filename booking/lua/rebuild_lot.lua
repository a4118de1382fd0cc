-- rebuild_lot.lua: replace a lot's metadata and, for each given day, its bitmap and counters with state
-- computed from PostgreSQL, in one script: atomic on a single Redis and on a cluster's node alike (every key
-- carries the lot's hash tag), without MULTI/EXEC (redis-py's cluster transactions block the event loop).
-- KEYS[1] meta, KEYS[2] spot types, KEYS[3] scratch key (gone when the script ends),
--   KEYS[4 .. 3+V] candidate lists by vehicle type, then per day: bitmap, counters.
-- ARGV[1] V (vehicle types), ARGV[2] D (days), ARGV[3] spot types (one byte per spot),
--   ARGV[4 .. 3+V] candidate lists ('' = no candidates: the key is deleted), ARGV[4+V] M (meta hash field
--   and value arguments that follow, 2 per field), then per day: desired bitmap ('' = nothing occupied),
--   desired counters ('' = all zero), EXPIREAT unix time for the day's keys.
-- Reply: {bits set, bits cleared} summed over the days, relative to what Redis held (the drift repaired).
local v, d = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, v do
  local candidates = ARGV[3 + i]
  if #candidates > 0 then
    redis.call('SET', KEYS[3 + i], candidates)
  else
    redis.call('DEL', KEYS[3 + i])
  end
end
redis.call('SET', KEYS[2], ARGV[3])
local m = tonumber(ARGV[4 + v])
redis.call('DEL', KEYS[1])
if m > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5 + v, 4 + v + m))
end
local set, cleared = 0, 0
local a0, k0 = 4 + v + m, 3 + v
for day = 1, d do
  local bitmap, counters = KEYS[k0 + 2 * day - 1], KEYS[k0 + 2 * day]
  local want_bits, want_counts, expire_at = ARGV[a0 + 3 * day - 2], ARGV[a0 + 3 * day - 1], ARGV[a0 + 3 * day]
  -- as rebuild_day.lua: bit counting runs in C (BITCOUNT/BITOP)
  local before = redis.call('BITCOUNT', bitmap)
  local after, common = 0, 0
  if #want_bits > 0 then
    redis.call('SET', KEYS[3], want_bits)
    after = redis.call('BITCOUNT', KEYS[3])
    if before > 0 then
      redis.call('BITOP', 'AND', bitmap, bitmap, KEYS[3])
      common = redis.call('BITCOUNT', bitmap)
    end
    redis.call('RENAME', KEYS[3], bitmap)
    redis.call('EXPIREAT', bitmap, expire_at)
  else
    redis.call('DEL', bitmap)
  end
  if #want_counts > 0 then
    redis.call('SET', counters, want_counts, 'EXAT', expire_at)
  else
    redis.call('DEL', counters)
  end
  set, cleared = set + after - common, cleared + before - common
end
return {set, cleared}
