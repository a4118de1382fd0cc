-- occupancy_replace.lua: replace a lot's live counters hash with counts computed from PostgreSQL, atomically
-- (one script: no MULTI/EXEC, which redis-py's cluster client runs on a thread per command).
-- KEYS[1] the lot's counters hash; ARGV: field, value, field, value, ... (READY among them).
redis.call('DEL', KEYS[1])
return redis.call('HSET', KEYS[1], unpack(ARGV))
