-- Renew the claim of a computation in flight (stepper.reuse.leases) while its run still holds it.
-- KEYS[1]: the claim (an entry's ``:flight`` key). ARGV[1]: the run holding it; ARGV[2]: its new lease, in ms.
-- Returns 1 when renewed, 0 when the claim is gone or held by another run (it ran out first).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
