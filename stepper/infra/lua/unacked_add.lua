-- Record a delivered message as unacknowledged, as kombu's Redis QoS.append does with a transaction of ZADD and
-- HSET, in one command (stepper.infra.redis_transport).
-- KEYS[1]: the unacknowledged index (a sorted set scored by delivery time); KEYS[2]: the unacknowledged hash.
-- ARGV[1]: the delivery time (seconds); ARGV[2]: the delivery tag; ARGV[3]: the message as kombu keeps it there
-- (JSON of [raw message, exchange, routing key]).
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
