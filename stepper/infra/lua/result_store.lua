-- Store a task's result and publish it to the producers waiting on it, unless a SUCCESS is stored already: Celery's
-- own rule (BaseKeyValueStoreBackend._store_result: a lost worker's late update must not overwrite a success),
-- kept atomically and in one round trip instead of a GET, then a SETEX and a PUBLISH.
-- KEYS[1]: celery-task-meta-<task id>. ARGV[1]: the encoded meta (JSON); ARGV[2]: expiry in seconds, 0 for none.
-- Returns 1 when stored, 0 when a SUCCESS was kept.
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
