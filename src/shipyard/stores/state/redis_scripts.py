"""Lua scripts of the Redis state store: each runs atomically on the server.

Conventions: TTLs are milliseconds; an expected value is the pair ``has_expected`` ("1"/"0"),
``expected``; a lease's stored value is ``"{token}:{owner}"``. A script checks everything before
its first write, so a failing check (or a ``WRONGTYPE`` error) leaves nothing half done.
"""

from __future__ import annotations

_MATCHES = """
local function matches(key, has_expected, expected)
  local current = redis.call('GET', key)
  if has_expected == '1' then return current == expected end
  return current == false
end
"""

APPEND = """
-- KEYS: list; ARGV: ttl_ms, items...
local length = redis.call('LLEN', KEYS[1])
for i = 2, #ARGV, 1000 do
  length = redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return length
"""

COMPARE_AND_SET = (
    _MATCHES
    + """
-- KEYS: key; ARGV: has_expected, expected, new, ttl_ms
if not matches(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
"""
)

APPEND_IF = (
    _MATCHES
    + """
-- KEYS: list, guard; ARGV: has_expected, expected, new, ttl_ms, items...
if not matches(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'list' then
  return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
for i = 5, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1
"""
)

ACQUIRE_LEASE = """
-- KEYS: lease, token counter; ARGV: owner, ttl_ms, counter_ttl_ms
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""

RENEW_LEASE = """
-- KEYS: lease, token counter; ARGV: holder, ttl_ms, counter_ttl_ms
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

RELEASE_LEASE = """
-- KEYS: lease; ARGV: holder
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
