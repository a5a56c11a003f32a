-- Shared by every script of a room (chat/redis/scripts.py puts it first): the room's keys
-- in the order of chat.redis.layout, and helpers.
local K_ROOM, K_MEMBERS, K_FIELDS, K_NAMES, K_RESUME, K_BANS = 1, 2, 3, 4, 5, 6
local K_REPORTS, K_LOG, K_CTR, K_STREAM, K_HISTORY = 7, 8, 9, 10, 11
local K_HELD, K_KEYS, K_ALIVE, K_CLOSED = 12, 13, 14, 15
local TRUE, FALSE = cmsgpack.pack(true), cmsgpack.pack(false)
local END_LATE = __END_LATE_MS__
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

-- Held messages (§14) live like history: none older than `oldest` (the history's age bound),
-- and the key expires when its newest would, never past `ttl` or the room's end (`cap`).
-- Values are "<ts>:<sealed message>", or "<ts>:" alone: the text-free index of held mids kept
-- when history is not in Redis, so that two workers cannot both release one message. A value
-- without a ts (written before this format) stays, and keeps the key on the idle TTL.
-- Returns how many went.
local function trim_held(now, oldest, ttl, cap)
  if redis.call('EXISTS', KEYS[K_HELD]) == 0 then return 0 end
  local flat = redis.call('HGETALL', KEYS[K_HELD])
  local newest, unknown, gone = nil, false, 0
  for i = 1, #flat, 2 do
    local ts = tonumber(string.match(flat[i + 1], '^(%d+):'))
    if ts == nil then
      unknown = true
    elseif ts < oldest then
      redis.call('HDEL', KEYS[K_HELD], flat[i])
      gone = gone + 1
    elseif newest == nil or ts > newest then
      newest = ts
    end
  end
  local keep = ttl
  if newest and not unknown then keep = math.max(1, math.min(ttl, newest - oldest)) end
  if newest or unknown then renew(K_HELD, now, keep, cap) end
  return gone
end
