-- Keep one delayed message in Redis until it is due (stepper.infra.delayed), timed by Redis's own clock.
-- KEYS: the due times (sorted set), the messages (hash). ARGV: the entry's id, its delay (ms), the message JSON.
-- Returns the due time (ms since the epoch).
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], due, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return due
