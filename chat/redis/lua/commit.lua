-- KEYS: the room's keys. ARGV: 1 ops (msgpack), 2 sealed envelope, 3 channel, 4 now (ms),
-- 5 ttl (ms), 6 and 7 the epoch and offset this worker has seen (the store must not be behind
-- them: a failover that lost writes), 8 message (msgpack [mid, ts, guard or nil]) or '',
-- 9 stream entries kept, 10 stream ms kept, 11 history entries kept, 12 oldest history ts,
-- 13 history kept here ('1') or in worker memory ('0': nothing with text goes in Redis),
-- 14 the highest seq this worker has seen in the room.
-- Held messages past the history's age (ARGV 12) go first, so that none can be released.
-- Returns {1, epoch, off, seq} or {0, reason, op index}.
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
local held_oldest = tonumber(ARGV[12])
trim_held(now, held_oldest, ttl, end_cap())

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
    -- Held mids are here in either mode (text only where history may be): a second release
    -- of one message, from another worker at the same moment, finds it gone (§12, §14).
    if redis.call('HEXISTS', KEYS[K_HELD], op[2]) == 0 then return {0, 'nomsg', index} end
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
local held_changed = false

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
    -- Held text lives like history: in Redis only where history may be (§7, §14); elsewhere
    -- only its mid and ts, so that a release is checked here all the same.
    local sealed = ''
    if in_redis then sealed = op[3] end
    redis.call('HSET', KEYS[K_HELD], op[2], op[5] .. ':' .. sealed)
    held_changed = true
  elseif kind == 'hr' then
    redis.call('HDEL', KEYS[K_HELD], op[2])
    held_changed = true
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
  K_REPORTS, K_LOG, K_CTR, K_KEYS, K_ALIVE} end
for _, i in ipairs(touched) do renew(i, now, ttl, cap) end
-- Held messages keep the expiry of their newest's age bound, not the idle timeout.
if held_changed or not message then trim_held(now, held_oldest, ttl, cap) end
return {1, epoch, off, seq}
