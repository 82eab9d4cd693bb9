-- Removes one entry from all four keys; the by-task mapping only if it still points at this entry.
local function drop(id)
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local task_id = cjson.decode(raw)['task_id']
    if redis.call('HGET', KEYS[3], task_id) == id then redis.call('HDEL', KEYS[3], task_id) end
  end
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  return raw and 1 or 0
end
