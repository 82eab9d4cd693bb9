-- The result cached at K[1] or, when there is none, the claim of its computation (K[2], SET NX PX A[2] ms) for
-- the run A[1] (stepper.reuse.cache). A claim held by another run, even a run of the same task (its message put
-- back while it still runs), is not taken: its holder renews it while it lives (stepper.reuse.leases).
-- Returns the cached value (false when there is none) and 1 when this caller claimed the computation, else 0.
local function probe(K, A)
  local value = redis.call('GET', K[1])
  if value then return value, 0 end
  if redis.call('SET', K[2], A[1], 'NX', 'PX', A[2]) then return false, 1 end
  return false, 0
end
