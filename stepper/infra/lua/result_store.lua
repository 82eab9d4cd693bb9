-- Store a task's result and publish it to the producers waiting on it, unless a SUCCESS is stored already: Celery's
-- own rule (BaseKeyValueStoreBackend._store_result: a lost worker's late update must not overwrite a success),
-- kept atomically and in one round trip instead of a GET, then a SETEX and a PUBLISH. The writes that ride with
-- the result (stepper.infra.result_riders: the task's cache entries, and the release of their single-flight
-- claims) go first, whatever the stored state: they are written before anyone hears of the result.
-- KEYS[1]: celery-task-meta-<task id>; KEYS[2..n+1]: keys to set; KEYS[n+2..]: keys to delete.
-- ARGV[1]: the encoded meta (JSON); ARGV[2]: expiry in seconds, 0 for none; ARGV[3]: n, the keys to set (0 if
-- absent); ARGV[4..3+2n]: each key's value and PX in milliseconds.
-- Returns 1 when stored, 0 when a SUCCESS was kept.
local set = tonumber(ARGV[3] or '0')
for i = 1, set do
  redis.call('SET', KEYS[1 + i], ARGV[2 + 2 * i], 'PX', ARGV[3 + 2 * i])
end
if #KEYS > 1 + set then
  redis.call('DEL', unpack(KEYS, 2 + set))
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
