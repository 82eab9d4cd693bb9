-- Admission of one provider call: breaker state and rate limits in one round trip (stepper.guards.admission), as
-- a function: admit.lua asks it alone, cache_probe_admit.lua right after a cache probe that missed.
-- K (its keys): pybreaker state, fail counter, opened-at; the half-open probe lease; the rpm and tpm buckets; the
-- provider's cooldown (set from its Retry-After).
-- A (its arguments): reset timeout (ms), requests per minute, tokens per minute (0 = no limit), tokens this call
-- reserves; then, settled first, tokens earlier calls used beyond their estimate and requests earlier admissions
-- took for calls never made.
-- Returns {state, fail counter, verdict ('closed' | 'probe' | 'reject' | 'cooldown'), wait (ms): before the
-- buckets have room, or, for 'cooldown', before the provider takes calls again}.
local function admit(K, A)
  local reset_ms = tonumber(A[1])
  local overspent = tonumber(A[5])
  if overspent ~= 0 and tonumber(A[3]) > 0 and redis.call('EXISTS', K[6]) == 1 then
    redis.call('HINCRBYFLOAT', K[6], 'tokens', -overspent)
  end
  local unused = tonumber(A[6] or '0')
  if unused ~= 0 and tonumber(A[2]) > 0 and redis.call('EXISTS', K[5]) == 1 then
    redis.call('HINCRBYFLOAT', K[5], 'tokens', unused)
  end
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local state = redis.call('GET', K[1]) or 'closed'
  local fails = tonumber(redis.call('GET', K[2]) or '0') or 0
  local cooldown = redis.call('PTTL', K[7])
  if cooldown > 0 then
    return {state, fails, 'cooldown', cooldown}
  end
  local verdict = 'closed'
  if state ~= 'closed' then
    local opened_s = tonumber(redis.call('GET', K[3]) or '0') or 0
    if state == 'open' and now_ms < opened_s * 1000 + reset_ms then
      return {state, fails, 'reject', 0}
    end
    if not redis.call('SET', K[4], '1', 'NX', 'PX', reset_ms) then
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
  local rpm_wait, rpm_left = take(K[5], tonumber(A[2]), 1)
  local tpm_wait, tpm_left = take(K[6], tonumber(A[3]), tonumber(A[4]))
  local wait = math.max(rpm_wait, tpm_wait)
  if wait > 0 then
    if verdict == 'probe' then redis.call('DEL', K[4]) end
    return {state, fails, verdict, wait}
  end
  local now = string.format('%d', now_ms)
  if rpm_left then
    redis.call('HSET', K[5], 'tokens', tostring(rpm_left), 'ts', now)
    redis.call('PEXPIRE', K[5], 120000)
  end
  if tpm_left then
    redis.call('HSET', K[6], 'tokens', tostring(tpm_left), 'ts', now)
    redis.call('PEXPIRE', K[6], 120000)
  end
  return {state, fails, verdict, 0}
end
