-- KEYS: the room's keys. ARGV: 1 epoch, 2 offset. Returns nil when the stream no longer holds
-- every entry after the offset in that epoch, else {entries...} (the stored "<ts>:" frames).
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
