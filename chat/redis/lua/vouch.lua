-- KEYS: the room's keys. ARGV: 1 now, 2 ttl, 3 oldest history ts, 4 stream ms kept, 5 history
-- and stream in Redis ('1'), 6 the presence cutoff, then the pids this worker vouches for. The
-- presence heartbeat: vouch (XX: a member removed meanwhile is not brought back), keep every
-- key but history, stream and held messages alive (up to the room's end), trim history, stream
-- and held messages by age now, not only when someone reads them (§11, §14). Returns {when the keys now expire (ms), the members
-- nobody has vouched for since the cutoff}.
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 7, #ARGV do redis.call('ZADD', KEYS[K_ALIVE], 'XX', now, ARGV[i]) end
if ARGV[5] == '1' then
  trim(KEYS[K_HISTORY], 1000000, tonumber(ARGV[3]))
  trim(KEYS[K_STREAM], 1000000, now - tonumber(ARGV[4]))
end
local cap = end_cap()
for i = 1, K_ALIVE do
  -- Stream and history keep the expiry of their age bound (COMMIT): never the idle timeout.
  if i ~= K_STREAM and i ~= K_HISTORY and i ~= K_HELD then renew(i, now, ttl, cap) end
end
-- Held messages go by the history's age in either mode (their mids stay when text may not).
trim_held(now, tonumber(ARGV[3]), ttl, cap)
local until_ms = now + ttl
if cap and cap < until_ms then until_ms = cap end
return {until_ms, redis.call('ZRANGEBYSCORE', KEYS[K_ALIVE], '-inf', ARGV[6])}
