-- Admission of one provider call: breaker state and rate limits in one round trip (stepper.guards.admission).
-- KEYS: pybreaker state, fail counter, opened-at; the half-open probe lease; the rpm and tpm buckets; the
-- provider's cooldown (set from its Retry-After).
-- ARGV: reset timeout (ms), requests per minute, tokens per minute (0 = no limit), tokens this call reserves,
-- tokens earlier calls used beyond their estimate (settled first).
-- Returns {state, fail counter, verdict ('closed' | 'probe' | 'reject' | 'cooldown'), wait (ms): before the
-- buckets have room, or, for 'cooldown', before the provider takes calls again}.
local reset_ms = tonumber(ARGV[1])
local overspent = tonumber(ARGV[5])
if overspent ~= 0 and tonumber(ARGV[3]) > 0 and redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('HINCRBYFLOAT', KEYS[6], 'tokens', -overspent)
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('GET', KEYS[1]) or 'closed'
local fails = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local cooldown = redis.call('PTTL', KEYS[7])
if cooldown > 0 then
  return {state, fails, 'cooldown', cooldown}
end
local verdict = 'closed'
if state ~= 'closed' then
  local opened_s = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
  if state == 'open' and now_ms < opened_s * 1000 + reset_ms then
    return {state, fails, 'reject', 0}
  end
  if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', reset_ms) then
    return {state, fails, 'reject', 0}
  end
  verdict = 'probe'
end
local function take(key, per_minute, cost)
  if per_minute <= 0 then return 0, nil end
  local rate = per_minute / 60000.0
  local data = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(data[1]) or per_minute
  local ts = tonumber(data[2]) or now_ms
  tokens = math.min(per_minute, tokens + math.max(0, now_ms - ts) * rate)
  cost = math.min(cost, per_minute)
  if tokens >= cost then return 0, tokens - cost end
  return math.ceil((cost - tokens) / rate), nil
end
local rpm_wait, rpm_left = take(KEYS[5], tonumber(ARGV[2]), 1)
local tpm_wait, tpm_left = take(KEYS[6], tonumber(ARGV[3]), tonumber(ARGV[4]))
local wait = math.max(rpm_wait, tpm_wait)
if wait > 0 then
  if verdict == 'probe' then redis.call('DEL', KEYS[4]) end
  return {state, fails, verdict, wait}
end
local now = string.format('%d', now_ms)
if rpm_left then
  redis.call('HSET', KEYS[5], 'tokens', tostring(rpm_left), 'ts', now)
  redis.call('PEXPIRE', KEYS[5], 120000)
end
if tpm_left then
  redis.call('HSET', KEYS[6], 'tokens', tostring(tpm_left), 'ts', now)
  redis.call('PEXPIRE', KEYS[6], 120000)
end
return {state, fails, verdict, 0}
