-- Store a task's result and publish it to the producers waiting on it, unless a SUCCESS is stored already: Celery's
-- own rule (BaseKeyValueStoreBackend._store_result: a lost worker's late update must not overwrite a success),
-- kept atomically and in one round trip instead of a GET, then a SETEX and a PUBLISH. The writes that ride with
-- the result (stepper.infra.result_riders) go first, whatever the stored state, so they are done before anyone
-- hears of the result: the task's cache entries, the release of their single-flight claims, and the removal of
-- the task's delivered messages from kombu's unacknowledged index and hash (the acknowledgement, with a SUCCESS).
-- KEYS[1]: celery-task-meta-<task id>; then ARGV[3] keys to set, ARGV[4] keys to delete, and when ARGV[5] > 0
-- the unacknowledged index (a sorted set) and hash.
-- ARGV[1]: the encoded meta (JSON); ARGV[2]: expiry in seconds, 0 for none; ARGV[3..5]: the counts above (all
-- 0 if absent); then each key set's value and PX in milliseconds; then the delivery tags to remove.
-- Returns 1 when stored, 0 when a SUCCESS was kept.
local set, deleted, acked = tonumber(ARGV[3] or '0'), tonumber(ARGV[4] or '0'), tonumber(ARGV[5] or '0')
for i = 1, set do
  redis.call('SET', KEYS[1 + i], ARGV[4 + 2 * i], 'PX', ARGV[5 + 2 * i])
end
if deleted > 0 then
  redis.call('DEL', unpack(KEYS, 2 + set, 1 + set + deleted))
end
if acked > 0 then
  local tags = {unpack(ARGV, 6 + 2 * set, 5 + 2 * set + acked)}
  redis.call('ZREM', KEYS[2 + set + deleted], unpack(tags))
  redis.call('HDEL', KEYS[3 + set + deleted], unpack(tags))
end
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
local expires = tonumber(ARGV[2])
if expires > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', expires)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
