"""The Lua scripts of the Redis backend: each one a check-then-write that must be atomic.

The central one is :data:`COMMIT`: it checks a commit's ops against the room's keys, assigns
the entry its offset (and, for a room message, its ``seq``), applies the ops, publishes the
entry, keeps it on the room's stream and, for a room message, in its history — one round trip,
all or nothing. It implements the op table of :mod:`chat.roomstate` on the room's keys; the
backend contract tests hold both implementations to the same results.

Values of a room's settings and of members' fields are kept as MessagePack (``cmsgpack`` in
Lua), each in its own hash field, so that one can change without rewriting a record. Names,
titles, rules, key hashes, salts, reports, log entries and envelopes are sealed by the caller
(:mod:`chat.buscrypt`) and opaque here. Key order: :data:`chat.redis.client.ROOM_PARTS`.
"""

from __future__ import annotations

# How long a room's keys outlive its end time at most (§13): long enough for a worker that holds
# members to commit the close and tell them (its clock fires at the end, retrying every 0.3 s);
# a room nobody holds goes with its keys then. Joins and GET /api/rooms refuse from the end on.
END_LATE_MS = 5_000

# Every script receives the room's keys in this order (chat.redis.client.ROOM_PARTS).
_KEYS = (
    """
local K_ROOM, K_MEMBERS, K_FIELDS, K_NAMES, K_RESUME, K_BANS = 1, 2, 3, 4, 5, 6
local K_REPORTS, K_LOG, K_CTR, K_STREAM, K_HISTORY = 7, 8, 9, 10, 11
local K_HELD, K_KEYS, K_ALIVE, K_CLOSED = 12, 13, 14, 15
local TRUE, FALSE = cmsgpack.pack(true), cmsgpack.pack(false)
local END_LATE = """
    + str(END_LATE_MS)
    + """

local function field(pid, name) return redis.call('HGET', KEYS[K_FIELDS], pid .. '|' .. name) end
local function value(pid, name)
  local raw = field(pid, name)
  if not raw then return nil end
  return cmsgpack.unpack(raw)
end

-- Keep the newest `keep` entries of a zset of "<ts>:..." members, and none older than `oldest`.
local function trim(key, keep, oldest)
  redis.call('ZREMRANGEBYRANK', key, 0, -1 - keep)
  while true do
    local first = redis.call('ZRANGE', key, 0, 0)
    if #first == 0 then break end
    local ts = tonumber(string.match(first[1], '^(%d+):'))
    if ts == nil or ts >= oldest then break end
    redis.call('ZREMRANGEBYRANK', key, 0, 0)
  end
end

-- The history entry of a message: "<ts>:<mid>:<sealed envelope>".
-- Whether any open report concerns the message `mid` (report keys are "<mid>|<by>").
local function reported(mid)
  local prefix = mid .. '|'
  local found = {}
  for _, key in ipairs(redis.call('HKEYS', KEYS[K_REPORTS])) do
    if string.sub(key, 1, #prefix) == prefix then found[#found + 1] = key end
  end
  return found
end

-- The latest a room's keys may live (ms): its end time (§13) plus END_LATE, so that a worker
-- holding members closes it and tells them before the keys go; nil for a room with no end.
local function end_cap()
  local raw = redis.call('HGET', KEYS[K_ROOM], 's:ends_at')
  if not raw then return nil end
  local ends = cmsgpack.unpack(raw)
  if type(ends) ~= 'number' then return nil end
  return ends + END_LATE
end

-- Renew key `i` for `ttl` ms from `now`, but not past `cap` (a room's end: see end_cap). Past
-- it, nothing renews the key: it goes at the expiry it has (no later than the cap). PEXPIRE
-- with the time left rather than PEXPIREAT: `now` and the end are the workers' clock, and the
-- documented ACL (docs/scaling.md) grants PEXPIRE only.
local function renew(i, now, ttl, cap)
  if not cap or now + ttl <= cap then
    redis.call('PEXPIRE', KEYS[i], ttl)
  elseif cap > now then
    redis.call('PEXPIRE', KEYS[i], cap - now)
  end
end

local function find_message(mid)
  for _, entry in ipairs(redis.call('ZRANGE', KEYS[K_HISTORY], 0, -1)) do
    local found = string.match(entry, '^%d+:([^:]*):')
    if found == mid then return entry end
  end
  return nil
end
"""
)

# KEYS: the room's keys. ARGV: 1 ops (msgpack), 2 sealed envelope, 3 channel, 4 now (ms),
# 5 ttl (ms), 6 and 7 the epoch and offset this worker has seen (the store must not be behind
# them: a failover that lost writes), 8 message (msgpack [mid, ts, guard or nil]) or '',
# 9 stream entries kept, 10 stream ms kept, 11 history entries kept, 12 oldest history ts,
# 13 history kept here ('1') or in worker memory ('0': nothing with text goes in Redis),
# 14 the highest seq this worker has seen in the room.
# Returns {1, epoch, off, seq} or {0, reason, op index}.
COMMIT = (
    _KEYS
    + """
local counters = redis.call('HMGET', KEYS[K_CTR], 'ep', 'off')
if not counters[1] then return {0, 'noroom', -1} end
if counters[1] == ARGV[6] and tonumber(counters[2]) < tonumber(ARGV[7]) then
  return {0, 'behind', -1}
end
local ops = cmsgpack.unpack(ARGV[1])
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local in_redis = ARGV[13] == '1'
local message = nil
if ARGV[8] ~= '' then message = cmsgpack.unpack(ARGV[8]) end

-- The sender may speak: checked here, against the store, whatever the worker's replica says.
if message and message[3] then
  local pid = message[3]
  if redis.call('HEXISTS', KEYS[K_MEMBERS], pid) == 0 then return {0, 'guard', -1} end
  if field(pid, 'waiting') == TRUE then return {0, 'guard', -1} end
  if field(pid, 'muted') == TRUE then
    local untl = value(pid, 'muted_until')
    if untl == nil or untl > message[2] then return {0, 'guard', -1} end
  end
  -- Under review (§14): the message must be held, not posted.
  if field(pid, 'held') == TRUE then return {0, 'guard', -1} end
  local review = redis.call('HGET', KEYS[K_ROOM], 's:review')
  if review and cmsgpack.unpack(review) == 'all' then return {0, 'guard', -1} end
end

local function mismatch(get, require)
  for name, wanted in pairs(require) do
    if get(name) ~= wanted then return true end
  end
  return false
end

-- 1. Check every op; nothing is written unless all hold.
for i, op in ipairs(ops) do
  local kind = op[1]
  local index = i - 1
  if kind == 'rs' then
    if mismatch(function(n) return redis.call('HGET', KEYS[K_ROOM], 's:' .. n) end, op[3]) then
      return {0, 'mismatch', index}
    end
  elseif kind == 'ma' then
    local pid, token = op[2], op[5]
    local owner = redis.call('HGET', KEYS[K_NAMES], token)
    if owner and owner ~= pid then return {0, 'taken', index} end
    if op[7] then
      if redis.call('SISMEMBER', KEYS[K_BANS], op[8]) == 1 then return {0, 'banned', index} end
      if redis.call('HGET', KEYS[K_ROOM], 's:locked') == TRUE then return {0, 'locked', index} end
    elseif op[9] ~= '' and redis.call('HEXISTS', KEYS[K_KEYS], op[9]) == 0 then
      return {0, 'revoked', index}  -- a co-facilitator key revoked meanwhile (§14)
    end
  elseif kind == 'ms' or kind == 'md' or kind == 'ad' then
    local pid = op[2]
    if redis.call('HEXISTS', KEYS[K_MEMBERS], pid) == 0 then return {0, 'missing', index} end
    if kind == 'ms' and mismatch(function(n) return field(pid, n) end, op[4]) then
      return {0, 'mismatch', index}
    end
    if kind == 'md' then
      if mismatch(function(n) return field(pid, n) end, op[4]) then
        return {0, 'mismatch', index}
      end
      if op[6] then
        local seen = redis.call('ZSCORE', KEYS[K_ALIVE], pid)
        if seen and tonumber(seen) > op[6] then return {0, 'lapsed', index} end
      end
    end
    if kind == 'ad' and (field(pid, 'waiting') ~= TRUE or field(pid, 'online') ~= TRUE) then
      return {0, 'waiting', index}
    end
  elseif kind == 'ra' then
    if redis.call('HEXISTS', KEYS[K_REPORTS], op[2]) == 1 then return {0, 'dup', index} end
    local mine, suffix = 0, '|' .. op[3]
    for _, key in ipairs(redis.call('HKEYS', KEYS[K_REPORTS])) do
      if string.sub(key, -#suffix) == suffix then mine = mine + 1 end
    end
    if mine >= op[5] then return {0, 'full', index} end
    if in_redis and not find_message(op[6]) then return {0, 'nomsg', index} end
  elseif kind == 'hd' then
    if in_redis and not find_message(op[2]) then return {0, 'nomsg', index} end
  elseif kind == 'hr' then
    if in_redis and redis.call('HEXISTS', KEYS[K_HELD], op[2]) == 0 then
      return {0, 'nomsg', index}
    end
  elseif kind == 'rd' then
    if #reported(op[2]) == 0 then return {0, 'missing', index} end
  elseif kind == 'ka' then
    if op[2] == 'owner' or redis.call('HEXISTS', KEYS[K_KEYS], op[2]) == 1 then
      return {0, 'taken', index}
    end
  elseif kind == 'kd' then
    if redis.call('HEXISTS', KEYS[K_KEYS], op[2]) == 0 then return {0, 'missing', index} end
    local expected, holders = {}, 0
    for _, pid in ipairs(op[3]) do expected[pid] = true end
    for _, pid in ipairs(redis.call('HKEYS', KEYS[K_MEMBERS])) do
      if value(pid, 'label') == op[2] then
        if not expected[pid] then return {0, 'mismatch', index} end
        holders = holders + 1
      end
    end
    if holders ~= #op[3] then return {0, 'mismatch', index} end
  elseif kind == 'he' then
    if in_redis and not redis.call('ZSCORE', KEYS[K_HISTORY], op[3]) then
      return {0, 'nomsg', index}
    end
  elseif kind == 'sl' then
    -- Participants present (op[2] false) or waiting (true); op[4] is the packed role.
    local seated = 0
    for _, pid in ipairs(redis.call('HKEYS', KEYS[K_MEMBERS])) do
      if field(pid, 'role') == op[4] and (field(pid, 'waiting') == TRUE) == op[2] then
        seated = seated + 1
      end
    end
    if seated >= op[3] then return {0, 'capacity', index} end
  end
end

-- 2. The entry's place on the stream.
local epoch = counters[1]
local off = redis.call('HINCRBY', KEYS[K_CTR], 'off', 1)
-- Members added or admitted by this entry are present from the seq before it (as in
-- roomstate.apply, which applies ops before the entry's own seq).
local seq_before = tonumber(redis.call('HGET', KEYS[K_CTR], 'seq') or '0')
local seq = 0
if message then
  -- The highest seq the worker has seen (any epoch): seq never goes back, even when a
  -- restore after a memory loss came from a worker that had missed the last messages.
  seq = redis.call('HINCRBY', KEYS[K_CTR], 'seq', 1)
  local floor = tonumber(ARGV[14])
  if seq <= floor then
    seq = floor + 1
    redis.call('HSET', KEYS[K_CTR], 'seq', seq)
  end
end
local closing = false

-- 3. Apply.
for _, op in ipairs(ops) do
  local kind = op[1]
  if kind == 'rs' then
    for name, v in pairs(op[2]) do redis.call('HSET', KEYS[K_ROOM], 's:' .. name, v) end
  elseif kind == 'ma' then
    local pid = op[2]
    redis.call('HSET', KEYS[K_MEMBERS], pid, op[3])
    for name, v in pairs(op[4]) do redis.call('HSET', KEYS[K_FIELDS], pid .. '|' .. name, v) end
    redis.call('HSET', KEYS[K_FIELDS], pid .. '|joined_seq', cmsgpack.pack(seq_before))
    redis.call('HSET', KEYS[K_NAMES], op[5], pid)
    redis.call('HSET', KEYS[K_RESUME], op[6], pid)
    redis.call('ZADD', KEYS[K_ALIVE], now, pid)
  elseif kind == 'ms' then
    local pid = op[2]
    for name, v in pairs(op[3]) do
      redis.call('HSET', KEYS[K_FIELDS], pid .. '|' .. name, v)
      if name == 'online' then redis.call('ZADD', KEYS[K_ALIVE], now, pid) end
    end
  elseif kind == 'md' then
    local pid = op[2]
    if op[5] then redis.call('SADD', KEYS[K_BANS], value(pid, 'address_hash')) end
    local token, resume = value(pid, 'name_token'), value(pid, 'resume_hash')
    if token and redis.call('HGET', KEYS[K_NAMES], token) == pid then
      redis.call('HDEL', KEYS[K_NAMES], token)
    end
    if resume and redis.call('HGET', KEYS[K_RESUME], resume) == pid then
      redis.call('HDEL', KEYS[K_RESUME], resume)
    end
    for _, name in ipairs(op[7]) do redis.call('HDEL', KEYS[K_FIELDS], pid .. '|' .. name) end
    redis.call('HDEL', KEYS[K_MEMBERS], pid)
    redis.call('ZREM', KEYS[K_ALIVE], pid)
  elseif kind == 'ad' then
    local pid = op[2]
    redis.call('HSET', KEYS[K_FIELDS], pid .. '|waiting', FALSE)
    redis.call('HSET', KEYS[K_FIELDS], pid .. '|joined_seq', cmsgpack.pack(seq_before))
  elseif kind == 'ba' then
    redis.call('SADD', KEYS[K_BANS], op[2])
  elseif kind == 'ra' then
    redis.call('HSET', KEYS[K_REPORTS], op[2], op[4])
  elseif kind == 'la' then
    redis.call('RPUSH', KEYS[K_LOG], op[2])
    redis.call('LTRIM', KEYS[K_LOG], -op[3], -1)
  elseif kind == 'hd' then
    local entry = in_redis and find_message(op[2])
    if entry then redis.call('ZREM', KEYS[K_HISTORY], entry) end
  elseif kind == 'ha' then
    for _, mid in ipairs(op[4]) do redis.call('HDEL', KEYS[K_HELD], mid) end
    -- Held text lives like history: in Redis only where history may be (§7, §14).
    if in_redis then redis.call('HSET', KEYS[K_HELD], op[2], op[3]) end
  elseif kind == 'hr' then
    redis.call('HDEL', KEYS[K_HELD], op[2])
  elseif kind == 'rd' then
    for _, key in ipairs(reported(op[2])) do redis.call('HDEL', KEYS[K_REPORTS], key) end
  elseif kind == 'ka' then
    redis.call('HSET', KEYS[K_KEYS], op[2], op[3])
  elseif kind == 'kd' then
    redis.call('HDEL', KEYS[K_KEYS], op[2])
  elseif kind == 'he' then
    if in_redis then
      local score = redis.call('ZSCORE', KEYS[K_HISTORY], op[3])
      redis.call('ZREM', KEYS[K_HISTORY], op[3])
      redis.call('ZADD', KEYS[K_HISTORY], score, op[4])
    end
  elseif kind == 'rc' then
    closing = true
  end
end

-- 4. Publish, keep on the stream (and in history), and keep the room alive.
local frame = epoch .. ':' .. off .. ':' .. seq .. ':' .. ARGV[2]
redis.call('PUBLISH', ARGV[3], frame)
if closing then
  for i = 1, K_ALIVE do redis.call('DEL', KEYS[i]) end
  redis.call('SET', KEYS[K_CLOSED], '1', 'PX', ttl)
  return {1, epoch, off, seq}
end
local cap = end_cap()  -- read after the ops: an ``extend`` moves it
-- Stream and history live by their own age bounds, not the room's idle timeout (§11): each
-- new entry is the newest, so once it is past the bound the whole key is, and it goes even
-- while nobody is there to trim it. Nothing else renews them. Neither outlives the room.
local history_ms = math.min(now - tonumber(ARGV[12]), ttl)
local stream_ms = math.min(tonumber(ARGV[10]), ttl)
if in_redis then
  redis.call('ZADD', KEYS[K_STREAM], off, now .. ':' .. frame)
  trim(KEYS[K_STREAM], tonumber(ARGV[9]), now - tonumber(ARGV[10]))
  renew(K_STREAM, now, stream_ms, cap)
  if message then
    redis.call('ZADD', KEYS[K_HISTORY], seq, message[2] .. ':' .. message[1] .. ':' .. ARGV[2])
    trim(KEYS[K_HISTORY], tonumber(ARGV[11]), tonumber(ARGV[12]))
    renew(K_HISTORY, now, history_ms, cap)
  end
end
-- An edit that emptied and refilled the history left it with no expiry: give it the bound.
if not message and redis.call('PTTL', KEYS[K_HISTORY]) == -1 then
  renew(K_HISTORY, now, history_ms, cap)
end
-- A room message touches only these; the presence heartbeat renews the rest.
local touched = {K_FIELDS, K_CTR}
if not message then touched = {K_ROOM, K_MEMBERS, K_FIELDS, K_NAMES, K_RESUME, K_BANS,
  K_REPORTS, K_LOG, K_CTR, K_HELD, K_KEYS, K_ALIVE} end
for _, i in ipairs(touched) do renew(i, now, ttl, cap) end
return {1, epoch, off, seq}
"""
)

# KEYS: the room's keys. ARGV: 1 the room's sealed record, 2 its settings (msgpack map of
# packed values), 3 epoch, 4 ttl (ms), 5 now (ms). Creates the room's record and its stream
# counters.
CREATE = (
    _KEYS
    + """
redis.call('HSET', KEYS[K_ROOM], 'rec', ARGV[1])
for name, v in pairs(cmsgpack.unpack(ARGV[2])) do
  redis.call('HSET', KEYS[K_ROOM], 's:' .. name, v)
end
redis.call('HSET', KEYS[K_CTR], 'ep', ARGV[3], 'off', 0, 'seq', 0)
local now, ttl, cap = tonumber(ARGV[5]), tonumber(ARGV[4]), end_cap()
renew(K_ROOM, now, ttl, cap)
renew(K_CTR, now, ttl, cap)
return 1
"""
)

# KEYS: the room's keys. ARGV: 1 now, 2 ttl, 3 oldest history ts, 4 stream ms kept, 5 history
# and stream in Redis ('1'), 6 the presence cutoff, then the pids this worker vouches for. The
# presence heartbeat: vouch (XX: a member removed meanwhile is not brought back), keep every
# key but history and stream alive (up to the room's end), trim history and stream by age now,
# not only when someone reads them (§11). Returns {when the keys now expire (ms), the members
# nobody has vouched for since the cutoff}.
VOUCH = (
    _KEYS
    + """
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 7, #ARGV do redis.call('ZADD', KEYS[K_ALIVE], 'XX', now, ARGV[i]) end
if ARGV[5] == '1' then
  trim(KEYS[K_HISTORY], 1000000, tonumber(ARGV[3]))
  trim(KEYS[K_STREAM], 1000000, now - tonumber(ARGV[4]))
end
local cap = end_cap()
for i = 1, K_ALIVE do
  -- Stream and history keep the expiry of their age bound (COMMIT): never the idle timeout.
  if i ~= K_STREAM and i ~= K_HISTORY then renew(i, now, ttl, cap) end
end
local until_ms = now + ttl
if cap and cap < until_ms then until_ms = cap end
return {until_ms, redis.call('ZRANGEBYSCORE', KEYS[K_ALIVE], '-inf', ARGV[6])}
"""
)

# KEYS[1]: the deployment's room index (a zset: room -> ms when its keys expire). ARGV: room,
# now, when it expires, the most live rooms. Returns 1 when the room may be created (§11).
ROOM_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

# KEYS: the room's keys. No ARGV. Returns nil for no room, else
# {epoch, off, seq, room hash, members hash, fields hash, bans, reports hash, log, held hash,
#  keys hash}.
SNAPSHOT = (
    _KEYS
    + """
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
"""
)

# KEYS: the room's keys. ARGV: 1 the worker's epoch, 2 its offset, 3 its seq, 4 new epoch,
# 5 state (msgpack: {rec, settings map, members [[pid, sealed name, fields map]...], bans,
# reports map, log list, held map, keys map}), 6 sealed envelope of a Reset, 7 channel,
# 8 now, 9 ttl.
# Writes the room back, as a new epoch starting with a Reset entry, when Redis lost it (and it
# was not closed); or holds it at an older offset of the worker's epoch (a failover that lost
# writes); or was restored from the worker's epoch at an older offset by another worker and
# nothing was committed since (the worker that heard more wins). History is kept: its entries
# are valid by seq. Returns {epoch, off}, or nil when the store is as good as the worker.
RESTORE = (
    _KEYS
    + """
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
  if i ~= K_HISTORY and redis.call('EXISTS', KEYS[i]) == 1 then renew(i, now, ttl, cap) end
end
return {ARGV[4], off}
"""
)

# KEYS: the room's keys. ARGV: 1 epoch, 2 offset. Returns nil when the stream no longer holds
# every entry after the offset in that epoch, else {entries...} (the stored "<ts>:" frames).
READ_AFTER = (
    _KEYS
    + """
local counters = redis.call('HMGET', KEYS[K_CTR], 'ep', 'off')
if not counters[1] or counters[1] ~= ARGV[1] then return nil end
local last, after = tonumber(counters[2]), tonumber(ARGV[2])
if last < after then return nil end  -- the store is behind the reader: it must reload
if last == after then return {} end
local entries = redis.call('ZRANGEBYSCORE', KEYS[K_STREAM], '(' .. after, '+inf', 'WITHSCORES')
if #entries == 0 or tonumber(entries[2]) ~= after + 1 or #entries / 2 ~= last - after then
  return nil
end
local out = {}
for i = 1, #entries, 2 do out[#out + 1] = entries[i] end
return out
"""
)


def sharded(script: str) -> str:
    """The script for a Redis Cluster: it publishes with ``SPUBLISH`` (sharded pub/sub) on the
    room's channel, which lives on the room's slot like every key the script touches."""
    publish = "redis.call('PUBLISH', "
    assert publish in script
    return script.replace(publish, "redis.call('SPUBLISH', ")
