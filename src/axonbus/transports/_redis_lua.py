"""Server-side scripts of the ``redis://`` transport.

Publishing runs as one script so the broker, not each publisher's cache, decides which group
and durable streams an event goes to: a subscription registered a moment ago is never missed by
a publisher that has not heard of it yet. Both scripts match axonbus patterns (``*`` one token,
``>`` the rest; a wildcard in the first token never matches a ``$`` system topic) in Lua.

Keys are built from the bus name inside the scripts, so the transport needs a standalone Redis
(or a cluster where every key of a bus hashes to one slot).
"""

from __future__ import annotations

__all__ = ["PUBLISH", "REQUEST"]

_MATCH = """
local function split(s)
  local t = {}
  for tok in string.gmatch(s, '[^.]+') do t[#t + 1] = tok end
  return t
end

local function matches(pattern, tt)
  local i = 0
  for p in string.gmatch(pattern, '[^.]+') do
    i = i + 1
    local t = tt[i]
    if p == '>' then
      if i == 1 and string.sub(tt[1], 1, 1) == '$' then return false end
      return t ~= nil
    end
    if t == nil then return false end
    if p == '*' then
      if i == 1 and string.sub(t, 1, 1) == '$' then return false end
    elseif p ~= t then
      return false
    end
  end
  return i == #tt
end
"""

# ARGV: bus, topic, envelope, origin, maxlen, max_age_ms
# Appends the envelope to every bound stream whose pattern matches, then publishes
# origin .. envelope on the pub/sub channel "{bus}/{topic}". Returns the streams written.
PUBLISH = (
    _MATCH
    + """
local bus, topic, data = ARGV[1], ARGV[2], ARGV[3]
local bindings = redis.call('HGETALL', bus .. ':bindings')
local written = 0
if #bindings > 0 then
  local tt = split(topic)
  local maxlen, max_age = tonumber(ARGV[5]), tonumber(ARGV[6])
  local minid = nil
  if max_age > 0 then
    local now = redis.call('TIME')
    minid = tostring(tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age)
  end
  for i = 1, #bindings, 2 do
    if matches(bindings[i + 1], tt) then
      if minid then
        redis.call('XADD', bindings[i], 'MINID', '~', minid, '*', 'd', data)
      else
        redis.call('XADD', bindings[i], 'MAXLEN', '~', maxlen, '*', 'd', data)
      end
      written = written + 1
    end
  end
end
redis.call('PUBLISH', bus .. '/' .. topic, ARGV[4] .. data)
return written
"""
)

# ARGV: bus, topic, request frame
# Responders register "{instance}\\n{pattern}" -> expiry (ms) in "{bus}:responders". Pushes the
# frame onto the queue of one live matching pattern; returns that pattern, or false if none.
REQUEST = (
    _MATCH
    + """
local bus, topic = ARGV[1], ARGV[2]
local entries = redis.call('HGETALL', bus .. ':responders')
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local tt = split(topic)
local live = {}
for i = 1, #entries, 2 do
  if tonumber(entries[i + 1]) >= now_ms then
    local pattern = string.match(entries[i], '\\n(.*)$')
    if pattern and matches(pattern, tt) then live[#live + 1] = pattern end
  end
end
if #live == 0 then return false end
local pick = live[(tonumber(now[2]) % #live) + 1]
redis.call('LPUSH', bus .. ':rpc:' .. pick, ARGV[3])
redis.call('PEXPIRE', bus .. ':rpc:' .. pick, 3600000)
return pick
"""
)
