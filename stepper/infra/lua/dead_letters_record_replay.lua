-- Appends one JSON object to the entry's JSON list of replays, without decoding (and re-encoding) it.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local replays = redis.call('HGET', KEYS[4], ARGV[1])
if replays then
  replays = string.sub(replays, 1, -2) .. ',' .. ARGV[2] .. ']'
else
  replays = '[' .. ARGV[2] .. ']'
end
redis.call('HSET', KEYS[4], ARGV[1], replays)
return 1
