-- The baseline moves only when it is at least min_age_s old, so a checker running right after another
-- reuses that check's growth instead of measuring zero growth and clearing the alert the other one raised.
local count, now, min_age = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local at = tonumber(redis.call('HGET', KEYS[1], 'at'))
if at ~= nil and now - at < min_age then
  return tonumber(redis.call('HGET', KEYS[1], 'growth')) or 0
end
local growth = 0
if at ~= nil then growth = count - (tonumber(redis.call('HGET', KEYS[1], 'count')) or count) end
redis.call('HSET', KEYS[1], 'count', count, 'at', ARGV[2], 'growth', growth)
return growth
