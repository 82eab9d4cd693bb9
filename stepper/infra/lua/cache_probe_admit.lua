-- A cache probe (cache_claim.lua) and, when it found nothing and claimed the computation, the admission of the
-- chain's first provider call (admission.lua) in the same round trip: the call the claim is for comes next.
-- KEYS[1..2] and ARGV[1..2] are the probe's, the rest the admission's (admission.lua says which).
-- Returns {value or nil, claimed (1 or 0), and when claimed the admission's answer}.
local value, claimed = probe(KEYS, ARGV)
if claimed == 0 then return {value, 0} end
return {false, 1, admit({unpack(KEYS, 3)}, {unpack(ARGV, 3)})}
