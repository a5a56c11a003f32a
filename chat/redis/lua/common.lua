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
