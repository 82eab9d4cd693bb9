-- Read the result or, when there is none, claim its computation: one round trip on every miss.
-- KEYS and ARGV as cache_claim.lua's probe takes them. Returns {value or nil, claimed (1 or 0)}.
local value, claimed = probe(KEYS, ARGV)
return {value, claimed}
