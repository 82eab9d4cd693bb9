-- ARGV: task id, candidate entry id, entry JSON, now (ms), TTL cutoff (ms), max entries, key TTL (ms),
-- expired entries to drop at most.
-- A task already in the store keeps its entry id (and its replays); the entry gets the latest failure.
local id = redis.call('HGET', KEYS[3], ARGV[1])
if not id or redis.call('HEXISTS', KEYS[1], id) == 0 then
  id = ARGV[2]
  local n = 1
  while redis.call('HEXISTS', KEYS[1], id) == 1 do
    id = ARGV[2] .. '-' .. n
    n = n + 1
  end
  redis.call('HSET', KEYS[3], ARGV[1], id)
end
redis.call('HSET', KEYS[1], id, ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], id)
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5], 'LIMIT', 0, ARGV[8])) do
  drop(old)
end
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do drop(old) end
end
-- Every entry is older than the newest: when nothing is added for a whole TTL, the store expires whole.
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
return id
