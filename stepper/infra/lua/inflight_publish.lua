-- After inflight_journal.lua: publish the message and journal it, both or neither, in one round trip. The push
-- comes first: a push refused (a key of another type, Redis out of memory) fails before anything is written.
-- KEYS[3]: the queue's list for the message's priority (kombu's key). ARGV[3]: the message as kombu carries it.
redis.call('LPUSH', KEYS[3], ARGV[3])
journal()
return 1
