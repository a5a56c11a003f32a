-- KEYS[1]: the deployment's room index (a zset: room -> ms when its keys expire). ARGV: room,
-- now, when it expires, the most live rooms. Returns 1 when the room may be created (§11).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
