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

# ARGV: bus, origin, maxlen, max_age_ms, then topic and envelope of each event, in order.
# One call carries the events of one writer batch (one reply instead of one per event). For each
# event: append the envelope to every bound stream whose pattern matches (the bindings are read
# once per call, an event's matching streams once per topic). Then it goes out on the pub/sub
# channel "{bus}/{topic}": consecutive events on one topic as one message, origin followed by
# each envelope with its length in front (4 bytes, big-endian), in order. An event whose XADD
# fails is not published and the next events go on, as if each had its own call.
# With an empty origin (wire=cloudevents) each event is a pub/sub message of its own, as it is.
# Returns {appends, {index, error, ...}} with the 0-based index of every failed event.
PUBLISH = (
    _MATCH
    + """
local bus, origin = ARGV[1], ARGV[2]
local bindings = redis.call('HGETALL', bus .. ':bindings')
local maxlen, max_age = tonumber(ARGV[3]), tonumber(ARGV[4])
local trim, limit = 'MAXLEN', maxlen
if #bindings > 0 and max_age > 0 then
  local now = redis.call('TIME')
  trim = 'MINID'
  limit = tostring(tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age)
end
local written, failed, targets = 0, {}, {}
local run_topic, run = nil, {}
local function flush()
  if run_topic then
    redis.call('PUBLISH', bus .. '/' .. run_topic, origin .. table.concat(run))
    run = {}
  end
end
for i = 5, #ARGV, 2 do
  local topic, data = ARGV[i], ARGV[i + 1]
  local ok = true
  if #bindings > 0 then
    local streams = targets[topic]
    if streams == nil then
      streams = {}
      local tt = split(topic)
      for j = 1, #bindings, 2 do
        if matches(bindings[j + 1], tt) then streams[#streams + 1] = bindings[j] end
      end
      targets[topic] = streams
    end
    for _, stream in ipairs(streams) do
      local res = redis.pcall('XADD', stream, trim, '~', limit, '*', 'd', data)
      if type(res) == 'table' and res.err then
        failed[#failed + 1] = (i - 5) / 2
        failed[#failed + 1] = res.err
        ok = false
        break
      end
      written = written + 1
    end
  end
  if ok and origin == '' then
    redis.call('PUBLISH', bus .. '/' .. topic, data)
  elseif ok then
    if topic ~= run_topic then
      flush()
      run_topic = topic
    end
    run[#run + 1] = struct.pack('>I4', #data) .. data
  end
end
flush()
return {written, failed}
"""
)

# ARGV: bus, topic, request frame
# Responders register "{instance}\\n{pattern}" -> expiry (ms) in "{bus}:responders". Pushes the
# frame onto the queue of one live matching pattern; returns that pattern, or false if none.
# Entries expired for a minute are deleted (a process killed without unregistering; a live one
# re-registers at its next heartbeat anyway), so the hash does not grow with every crash.
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
  local expiry = tonumber(entries[i + 1])
  if expiry >= now_ms then
    local pattern = string.match(entries[i], '\\n(.*)$')
    if pattern and matches(pattern, tt) then live[#live + 1] = pattern end
  elseif expiry < now_ms - 60000 then
    redis.call('HDEL', bus .. ':responders', entries[i])
  end
end
if #live == 0 then return false end
local pick = live[(tonumber(now[2]) % #live) + 1]
redis.call('LPUSH', bus .. ':rpc:' .. pick, ARGV[3])
redis.call('PEXPIRE', bus .. ':rpc:' .. pick, 3600000)
return pick
"""
)
