"""Lua scripts of the Redis state store's ``Meters`` (budgets), each atomic on the server.

A meter is two keys: a hash (``spent``, ``held``: the sum of live holds, and ``h:{holder}``:
each holder's hold) and a sorted set of its holders by expiry (ms, on the server's clock).
Expired holds are dropped, and their room given back, by every script that reads the meter.
KEYS come in pairs (hash, holders) per meter; amounts are integers.
"""

from __future__ import annotations

_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function drop(meter, holders, holder)
  local amount = tonumber(redis.call('HGET', meter, 'h:' .. holder) or '0')
  if amount > 0 then redis.call('HINCRBY', meter, 'held', -amount) end
  redis.call('HDEL', meter, 'h:' .. holder)
  redis.call('ZREM', holders, holder)
end

local function purge(meter, holders, now)
  for _, holder in ipairs(redis.call('ZRANGEBYSCORE', holders, '-inf', now)) do
    drop(meter, holders, holder)
  end
end

local function field(meter, name)
  return tonumber(redis.call('HGET', meter, name) or '0')
end

local function keep(key, keep_ms)
  if redis.call('PTTL', key) < keep_ms then redis.call('PEXPIRE', key, keep_ms) end
end
"""

HOLD = (
    _COMMON
    + """
-- KEYS: (hash, holders) per meter; ARGV: holder, ttl_ms, then (limit, amount, keep_ms) per
-- meter. Returns 0 when held, else the 1-based index of the first meter without room.
local now, holder, ttl = now_ms(), ARGV[1], tonumber(ARGV[2])
local n = #KEYS / 2
for i = 1, n do
  local meter, holders = KEYS[2 * i - 1], KEYS[2 * i]
  purge(meter, holders, now)
  local limit, amount = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  if field(meter, 'spent') + field(meter, 'held') + amount > limit then return i end
end
for i = 1, n do
  local meter, holders = KEYS[2 * i - 1], KEYS[2 * i]
  local amount, keep_ms = ARGV[3 * i + 1], tonumber(ARGV[3 * i + 2])
  redis.call('HINCRBY', meter, 'h:' .. holder, amount)
  redis.call('HINCRBY', meter, 'held', amount)
  redis.call('ZADD', holders, now + ttl, holder)
  keep(meter, math.max(keep_ms, ttl))
  keep(holders, math.max(keep_ms, ttl))
end
return 0
"""
)

CHARGE = (
    _COMMON
    + """
-- KEYS: (hash, holders) per meter; ARGV: holder, then (amount, keep_ms) per meter.
local now, holder = now_ms(), ARGV[1]
for i = 1, #KEYS / 2 do
  local meter, holders = KEYS[2 * i - 1], KEYS[2 * i]
  purge(meter, holders, now)
  local amount, keep_ms = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('HINCRBY', meter, 'spent', ARGV[2 * i])
  local used = math.min(field(meter, 'h:' .. holder), amount)
  if used > 0 then
    redis.call('HINCRBY', meter, 'h:' .. holder, string.format('%d', -used))
    redis.call('HINCRBY', meter, 'held', string.format('%d', -used))
  end
  keep(meter, keep_ms)
end
return 0
"""
)

RELEASE = (
    _COMMON
    + """
-- KEYS: (hash, holders) per meter; ARGV: holder.
for i = 1, #KEYS / 2 do drop(KEYS[2 * i - 1], KEYS[2 * i], ARGV[1]) end
return 0
"""
)

LEVELS = (
    _COMMON
    + """
-- KEYS: (hash, holders) per meter. Returns spent, held per meter.
local now, out = now_ms(), {}
for i = 1, #KEYS / 2 do
  local meter, holders = KEYS[2 * i - 1], KEYS[2 * i]
  purge(meter, holders, now)
  out[#out + 1] = field(meter, 'spent')
  out[#out + 1] = field(meter, 'held')
end
return out
"""
)
