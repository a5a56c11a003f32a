-- KEYS: the room's keys. No ARGV. Returns nil for no room, else
-- {epoch, off, seq, room hash, members hash, fields hash, bans, reports hash, log, held hash,
--  keys hash}.
local counters = redis.call('HMGET', KEYS[K_CTR], 'ep', 'off', 'seq')
if not counters[1] then return nil end
return {
  counters[1], counters[2], counters[3],
  redis.call('HGETALL', KEYS[K_ROOM]),
  redis.call('HGETALL', KEYS[K_MEMBERS]),
  redis.call('HGETALL', KEYS[K_FIELDS]),
  redis.call('SMEMBERS', KEYS[K_BANS]),
  redis.call('HGETALL', KEYS[K_REPORTS]),
  redis.call('LRANGE', KEYS[K_LOG], 0, -1),
  redis.call('HGETALL', KEYS[K_HELD]),
  redis.call('HGETALL', KEYS[K_KEYS]),
}
