"""The Lua scripts of the Redis room store: each one a read-check-write that must be atomic.

Keys and arguments are listed above each script, in order. The history write that goes with a
``say`` runs inside the publish script instead (``chat.broker.redis_client``);
:data:`REMEMBER` is the same write on its own, for a store not wired to a broker.
"""

from __future__ import annotations

from chat.broker.redis_client import TRIM_HISTORY

# KEYS: room, names, members, resume, alive. ARGV: name hash, pid, blob, resume hash, now, ttl.
ADD_MEMBER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if owner and owner ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[2])
for i = 2, 5 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
return 1
"""

# KEYS: members, alive. ARGV: pid, blob, presence score.
SAVE_MEMBER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: members, names, resume, alive. ARGV: pid, name hash, resume hash, cutoff. With a
# cutoff (the presence sweep), only a member nobody has vouched for since then goes, and the
# check and the removal are one step: of several sweeping workers exactly one removes it
# (and announces it), and a worker that dies mid-sweep leaves no half-removed member.
REMOVE_MEMBER = """
if ARGV[4] ~= '' then
  local score = redis.call('ZSCORE', KEYS[4], ARGV[1])
  if not score or tonumber(score) > tonumber(ARGV[4]) then return 0 end
  redis.call('ZREM', KEYS[4], ARGV[1])
end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
if redis.call('HGET', KEYS[3], ARGV[3]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[3]) end
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""

# KEYS: room. ARGV: locked, slow.
SAVE_ROOM = """
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'locked', ARGV[1], 'slow', ARGV[2])
return 1
"""

# KEYS: history. ARGV: seq, entry, most messages, oldest ts, ttl.
REMEMBER = (
    TRIM_HISTORY
    + """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
trim_history(KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""
)
