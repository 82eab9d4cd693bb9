-- Claim up to ARGV[1] due delayed messages for ARGV[2] ms: each claimed entry becomes due again after that
-- lease, so a mover that dies before publishing loses nothing (one that dies after publishing may publish
-- twice: the task id is the same, and a stored result or idempotency key answers the copy).
-- KEYS: the due times (sorted set), the messages (hash). Returns {id, message, id, message, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local claimed = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))) do
  local message = redis.call('HGET', KEYS[2], id)
  if message then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    table.insert(claimed, id)
    table.insert(claimed, message)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return claimed
