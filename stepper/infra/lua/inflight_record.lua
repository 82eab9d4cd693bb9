-- Journal one published task message (stepper.infra.inflight), stamped with Redis's clock.
-- KEYS: the stamps (sorted set), the messages (hash). ARGV: the task id, the message JSON.
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
