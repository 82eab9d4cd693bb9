-- Journal one published task message (stepper.infra.inflight), stamped with Redis's clock.
-- KEYS[1]: the stamps (sorted set), KEYS[2]: the messages (hash). ARGV[1]: the task id, ARGV[2]: the message JSON.
local function journal()
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
