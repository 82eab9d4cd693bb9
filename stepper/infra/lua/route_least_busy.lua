-- Pick the deployment with the fewest calls in flight across the fleet, and count this call on it, in one step
-- (stepper.guards.routing). KEYS: each candidate deployment's in-flight set (call id -> lease end, ms), in the
-- caller's tie-breaking order. ARGV: this call's id, its lease (ms).
-- Leases that ended (a worker that died mid-call) are dropped first. Returns the 1-based index of the pick.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local best, fewest = 1, nil
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local busy = redis.call('ZCARD', key)
  if fewest == nil or busy < fewest then
    best, fewest = i, busy
  end
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[best], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[best], lease)
return best
