-- After admission.lua and inflight_journal.lua: the rate-limit admission of whoever publishes (a gateway key's
-- buckets), then, only if it admits, what inflight_publish.lua does (the message pushed and journaled), in one
-- round trip. It admits unless it says 'reject' or 'cooldown' or to wait; a refused message is neither pushed nor
-- journaled.
-- KEYS[1..3] and ARGV[1..3] are inflight_publish.lua's; the rest are admission.lua's admit's.
-- Returns {1 when pushed or 0, the admission's answer}.
local answer = admit({unpack(KEYS, 4)}, {unpack(ARGV, 4)})
if answer[3] == 'reject' or answer[3] == 'cooldown' or tonumber(answer[4]) > 0 then
  return {0, answer}
end
redis.call('LPUSH', KEYS[3], ARGV[3])
journal()
return {1, answer}
