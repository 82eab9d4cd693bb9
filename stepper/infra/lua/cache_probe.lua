-- Read the result or, when there is none, claim its computation: one round trip on every miss.
local value = redis.call('GET', KEYS[1])
if value then return {value, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {false, 1} end
if redis.call('GET', KEYS[2]) == ARGV[1] then return {false, 1} end
return {false, 0}
