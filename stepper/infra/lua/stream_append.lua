-- Append a task's stream events in one round trip (stepper.infra.streams.RedisStreamSink).
-- KEYS[1]: the stream. ARGV[1]: the entries it keeps (approximately: XADD MAXLEN ~). ARGV[2]: its time to live in
-- seconds, set with this write ('0': left as it is). Then each event's type and text, in order.
-- Returns the number of events appended.
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'type', ARGV[i], 'text', ARGV[i + 1])
end
if ARGV[2] ~= '0' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return (#ARGV - 2) / 2
