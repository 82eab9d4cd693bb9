-- A fleet-wide cooldown of one provider (its Retry-After): KEYS[1] the cooldown key, ARGV[1] its length (ms).
-- A longer cooldown already running is kept.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
