"""Lua scripts of the Redis state store: each runs atomically on the server.

Conventions: TTLs are milliseconds; an expected value is the pair ``has_expected`` ("1"/"0"),
``expected``; a lease's stored value is ``"{token}:{owner}"``. A script checks everything before
its first write, so a failing check (or a ``WRONGTYPE`` error) leaves nothing half done (dropping
expired tickets from a queue's head aside: that changes nothing anyone can see).

A lease's queue is a sorted set: score the ticket, member ``"{ticket}:{expires_ms}"``, expiry
measured on the server's clock (``TIME``), so replicas with skewed clocks agree. Expired tickets
are dropped when they reach the head; the key's own TTL outlives its newest ticket.
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

_QUEUE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function expiry(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

-- the lowest live ticket of the queue (expired ones at its head are dropped), or nil
local function head(queue, now)
  while true do
    local first = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
    if #first == 0 then return nil end
    if expiry(first[1]) > now then return tonumber(first[2]) end
    redis.call('ZREM', queue, first[1])
  end
end

local function put_ticket(queue, ticket, now, ttl_ms)
  redis.call('ZADD', queue, ticket, string.format('%d:%d', ticket, now + ttl_ms))
  if redis.call('PTTL', queue) < ttl_ms then redis.call('PEXPIRE', queue, ttl_ms) end
end

-- drop a ticket from the queue; whether it was live
local function drop_ticket(queue, ticket, now)
  local live = false
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', queue, ticket, ticket)) do
    live = live or expiry(member) > now
    redis.call('ZREM', queue, member)
  end
  return live
end

local function take_lease(lease, counter, owner, ttl_ms, counter_ttl_ms)
  local token = redis.call('INCR', counter)
  redis.call('PEXPIRE', counter, counter_ttl_ms)
  redis.call('SET', lease, token .. ':' .. owner, 'PX', ttl_ms)
  return token
end
"""

ACQUIRE_LEASE = (
    _QUEUE
    + """
-- KEYS: lease, token counter, queue; ARGV: owner, ttl_ms, counter_ttl_ms
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
if redis.call('EXISTS', KEYS[3]) == 1 and head(KEYS[3], now_ms()) then return false end
return take_lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
"""
)

JOIN_QUEUE = (
    _QUEUE
    + """
-- KEYS: queue, ticket counter; ARGV: ticket_ttl_ms, counter_ttl_ms
local ticket = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
put_ticket(KEYS[1], ticket, now_ms(), tonumber(ARGV[1]))
return ticket
"""
)

ACQUIRE_LEASE_IN_TURN = (
    _QUEUE
    + """
-- KEYS: lease, token counter, queue; ARGV: owner, ttl_ms, counter_ttl_ms, ticket, ticket_ttl_ms
local now, ticket = now_ms(), tonumber(ARGV[4])
drop_ticket(KEYS[3], ticket, now)
local first = head(KEYS[3], now)
if (first == nil or first > ticket) and redis.call('EXISTS', KEYS[1]) == 0 then
  return take_lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
end
put_ticket(KEYS[3], ticket, now, tonumber(ARGV[5]))
return false
"""
)

LEAVE_QUEUE = (
    _QUEUE
    + """
-- KEYS: queue; ARGV: ticket
if drop_ticket(KEYS[1], tonumber(ARGV[1]), now_ms()) then return 1 end
return 0
"""
)

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

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
"""

TAKE = (
    _NOW
    + """
-- KEYS: the rates' keys; ARGV: cost, force ('1'/'0'), then limit and period_ms of each rate.
-- The sums of base.gcra, in ms. Returns, per rate: fits (1/0), remaining, reset_ms, retry_ms.
local now, cost, force = now_ms(), tonumber(ARGV[1]), ARGV[2] == '1'
local need, out, after, allowed = math.max(cost, 1), {}, {}, true
for i, key in ipairs(KEYS) do
  local limit, period = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  local step = period / limit
  local base = math.max(tonumber(redis.call('GET', key) or '0') or 0, now)
  local ahead = base + need * step - now
  local fits = ahead <= period + 0.01  -- 10 µs: the stored tat is rounded to 1 µs
  allowed = allowed and fits
  after[i] = base + cost * step
  local spent = base - now
  if fits or force then spent = after[i] - now end
  local left = math.floor((period - spent) / step + 0.000001 + 0.01 / step)
  local retry = 0
  if not fits then retry = math.ceil(ahead - period) end
  out[#out + 1] = fits and 1 or 0
  out[#out + 1] = math.max(0, left)
  out[#out + 1] = math.ceil(math.max(0, spent))
  out[#out + 1] = retry
end
if force or (allowed and cost > 0) then
  for i, key in ipairs(KEYS) do
    local ttl = math.max(1, math.ceil(after[i] - now))
    redis.call('SET', key, string.format('%.3f', after[i]), 'PX', ttl)
  end
end
return out
"""
)

ACQUIRE_SLOT = (
    _NOW
    + """
-- KEYS: slots (a sorted set: member the holder, score its expiry in ms); ARGV: holder, limit,
-- ttl_ms. Returns the slots in use, or 0 if all were taken.
local now, ttl = now_ms(), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
local used = redis.call('ZCARD', KEYS[1])
if not held then used = used + 1 end
if not held and used > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return used
"""
)

RELEASE_SLOT = (
    _NOW
    + """
-- KEYS: slots; ARGV: holder. 1 if the holder had a live slot.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(score) > now_ms() then return 1 end
return 0
"""
)
