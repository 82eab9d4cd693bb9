-- The result cached at K[1] or, when there is none, the claim of its computation (K[2], SET NX PX A[2] ms) for
-- the owner A[1], kept by that owner when its task is redelivered (stepper.reuse.cache).
-- Returns the cached value (false when there is none) and 1 when this caller claimed the computation, else 0.
local function probe(K, A)
  local value = redis.call('GET', K[1])
  if value then return value, 0 end
  if redis.call('SET', K[2], A[1], 'NX', 'PX', A[2]) then return false, 1 end
  if redis.call('GET', K[2]) == A[1] then return false, 1 end
  return false, 0
end
