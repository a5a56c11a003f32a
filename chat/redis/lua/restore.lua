-- KEYS: the room's keys. ARGV: 1 the worker's epoch, 2 its offset, 3 its seq, 4 new epoch,
-- 5 state (msgpack: {rec, settings map, members [[pid, sealed name, fields map]...], bans,
-- reports map, log list, held map, keys map}), 6 sealed envelope of a Reset, 7 channel,
-- 8 now, 9 ttl, 10 oldest history ts (held messages older go; the held key expires with its
-- newest's age bound, §14).
-- Writes the room back, as a new epoch starting with a Reset entry, when Redis lost it (and it
-- was not closed); or holds it at an older offset of the worker's epoch (a failover that lost
-- writes); or was restored from the worker's epoch at an older offset by another worker and
-- nothing was committed since (the worker that heard more wins). History is kept: its entries
-- are valid by seq. Returns {epoch, off}, or nil when the store is as good as the worker.
local ctr = redis.call('HMGET', KEYS[K_CTR], 'ep', 'off', 'seq', 'rfrom_ep', 'rfrom_off', 'rstart')
local my_epoch, my_off, my_seq = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local seq = my_seq
if ctr[1] then
  local behind = ctr[1] == my_epoch and tonumber(ctr[2]) < my_off
  local outheard = ctr[4] == my_epoch and tonumber(ctr[5]) < my_off and ctr[2] == ctr[6]
  if not behind and not outheard then return nil end
  seq = math.max(seq, tonumber(ctr[3]))
elseif redis.call('EXISTS', KEYS[K_CLOSED]) == 1 then
  return nil
end
for i = 1, K_ALIVE do
  if i ~= K_HISTORY then redis.call('DEL', KEYS[i]) end
end
local state = cmsgpack.unpack(ARGV[5])
local now, ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
redis.call('HSET', KEYS[K_ROOM], 'rec', state[1])
for name, v in pairs(state[2]) do redis.call('HSET', KEYS[K_ROOM], 's:' .. name, v) end
for _, m in ipairs(state[3]) do
  local pid = m[1]
  redis.call('HSET', KEYS[K_MEMBERS], pid, m[2])
  for name, v in pairs(m[3]) do redis.call('HSET', KEYS[K_FIELDS], pid .. '|' .. name, v) end
  redis.call('HSET', KEYS[K_NAMES], cmsgpack.unpack(m[3]['name_token']), pid)
  redis.call('HSET', KEYS[K_RESUME], cmsgpack.unpack(m[3]['resume_hash']), pid)
  redis.call('ZADD', KEYS[K_ALIVE], now, pid)
end
for _, b in ipairs(state[4]) do redis.call('SADD', KEYS[K_BANS], b) end
for key, r in pairs(state[5]) do redis.call('HSET', KEYS[K_REPORTS], key, r) end
for _, e in ipairs(state[6]) do redis.call('RPUSH', KEYS[K_LOG], e) end
for mid, h in pairs(state[7]) do redis.call('HSET', KEYS[K_HELD], mid, h) end
for token, k in pairs(state[8]) do redis.call('HSET', KEYS[K_KEYS], token, k) end
local off = my_off + 1
redis.call('HSET', KEYS[K_CTR], 'ep', ARGV[4], 'off', off, 'seq', seq,
  'rfrom_ep', my_epoch, 'rfrom_off', my_off, 'rstart', off)
local frame = ARGV[4] .. ':' .. off .. ':0:' .. ARGV[6]
redis.call('PUBLISH', ARGV[7], frame)
-- A room restored after its end lives END_LATE more: the worker's clock closes it then.
local cap = end_cap()
if cap and cap < now + END_LATE then cap = now + END_LATE end
for i = 1, K_ALIVE do
  -- History keeps the expiry of its age bound (COMMIT); the stream starts again empty.
  if i ~= K_HISTORY and i ~= K_HELD and redis.call('EXISTS', KEYS[i]) == 1 then
    renew(i, now, ttl, cap)
  end
end
trim_held(now, tonumber(ARGV[10]), ttl, cap)
return {ARGV[4], off}
