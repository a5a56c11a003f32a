-- KEYS: the room's keys. ARGV: 1 the room's sealed record, 2 its settings (msgpack map of
-- packed values), 3 epoch, 4 ttl (ms), 5 now (ms). Creates the room's record and its stream
-- counters.
redis.call('HSET', KEYS[K_ROOM], 'rec', ARGV[1])
for name, v in pairs(cmsgpack.unpack(ARGV[2])) do
  redis.call('HSET', KEYS[K_ROOM], 's:' .. name, v)
end
redis.call('HSET', KEYS[K_CTR], 'ep', ARGV[3], 'off', 0, 'seq', 0)
local now, ttl, cap = tonumber(ARGV[5]), tonumber(ARGV[4]), end_cap()
renew(K_ROOM, now, ttl, cap)
renew(K_CTR, now, ttl, cap)
return 1
