-- Release the claim of a computation that failed, unless another run holds it by now (its lease ran out first).
-- KEYS[1]: the claim (an entry's ``:flight`` key). ARGV[1]: the run that took it. Returns 1 when released, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
