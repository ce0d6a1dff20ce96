"""The Lua scripts that make each multi-key step of the Redis store one atomic step.

Redis runs a script alone: no other client's command lands in the middle, so a
write batch, its bounds, and a limit check-and-take need no lock across instances.
A script is not rolled back when it fails halfway, so each checks what could fail
(a duplicate call id) before it writes anything.

Keys are built inside the scripts from a prefix (``ARGV[1]``), which a single
Redis server allows; a Redis Cluster would need hash tags (see the README).
"""

from __future__ import annotations

APPLY = r"""
local p = ARGV[1]
local jlimit, jmax = tonumber(ARGV[2]), tonumber(ARGV[3])
local climit, cmax = tonumber(ARGV[4]), tonumber(ARGV[5])
local nc, ne, nj = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local first = 9
for k = 0, nc - 1 do
  if redis.call('EXISTS', p .. ':c:' .. ARGV[first + 4 * k]) == 1 then
    return redis.error_reply('duplicate call id ' .. ARGV[first + 4 * k])
  end
end
local counters = p .. ':counters'
local i = first
local cbytes = 0
for _ = 1, nc do
  local id, status, data, plan = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local seq = redis.call('INCR', p .. ':cseq')
  local size = #data + #plan
  redis.call('HSET', p .. ':c:' .. id, 'data', data, 'status', status, 'plan', plan, 'size', size)
  redis.call('ZADD', p .. ':calls', seq, id)
  cbytes = cbytes + size
end
for _ = 1, ne do
  local cid, status, ended, event = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local call = p .. ':c:' .. cid
  if redis.call('EXISTS', call) == 1 then
    redis.call('RPUSH', p .. ':e:' .. cid, event)
    if status ~= '' then redis.call('HSET', call, 'status', status) end
  end
  if ended == '1' then
    local held = p .. ':ck:' .. cid
    for _, key in ipairs(redis.call('SMEMBERS', held)) do
      redis.call('ZREM', p .. ':live:' .. key, cid)
    end
    redis.call('DEL', held)
  end
end
local jbytes = 0
for _ = 1, nj do
  local cid, entry = ARGV[i], ARGV[i + 1]
  i = i + 2
  local seq = redis.call('INCR', p .. ':jseq')
  redis.call('HSET', p .. ':j', seq, entry)
  if cid ~= '' then
    redis.call('HSET', p .. ':jcall', seq, cid)
    redis.call('RPUSH', p .. ':jc:' .. cid, seq)
  end
  jbytes = jbytes + #entry
end
-- The journal's bound: its rows are the seqs low..high, evicted oldest first.
if nj > 0 then
  local total = redis.call('HINCRBY', counters, 'journal_bytes', jbytes)
  local low = tonumber(redis.call('GET', p .. ':jlow') or '1')
  local high = tonumber(redis.call('GET', p .. ':jseq') or '0')
  local gone, freed = 0, 0
  while low <= high and (high - low + 1 > jlimit or total - freed > jmax) do
    local entry = redis.call('HGET', p .. ':j', low)
    if entry then
      freed = freed + #entry
      gone = gone + 1
      redis.call('HDEL', p .. ':j', low)
      local cid = redis.call('HGET', p .. ':jcall', low)
      if cid then
        redis.call('HDEL', p .. ':jcall', low)
        redis.call('LPOP', p .. ':jc:' .. cid)
      end
    end
    low = low + 1
  end
  if gone > 0 or freed > 0 then
    redis.call('SET', p .. ':jlow', low)
    redis.call('HINCRBY', counters, 'journal_evicted', gone)
    redis.call('HINCRBY', counters, 'journal_bytes', -freed)
  end
end
-- The calls' bound: oldest prepared first, with their events and held slots.
if nc > 0 then
  local total = redis.call('HINCRBY', counters, 'calls_bytes', cbytes)
  local count = redis.call('ZCARD', p .. ':calls')
  local gone, freed = 0, 0
  while count > climit or total - freed > cmax do
    local oldest = redis.call('ZPOPMIN', p .. ':calls')
    if #oldest == 0 then break end
    local cid = oldest[1]
    freed = freed + tonumber(redis.call('HGET', p .. ':c:' .. cid, 'size') or '0')
    redis.call('DEL', p .. ':c:' .. cid, p .. ':e:' .. cid)
    gone = gone + 1
    count = count - 1
  end
  if gone > 0 then
    redis.call('HINCRBY', counters, 'calls_evicted', gone)
    redis.call('HINCRBY', counters, 'calls_bytes', -freed)
  end
end
return 0
"""
"""``ARGV``: prefix, journal rows and bytes, calls rows and bytes, counts of calls, events and journal
entries, then 4 values per call (id, status, data, plan), 4 per event (call id, new status or '',
'1' when it ends the call, the event's JSON), 2 per journal entry (call id or '', the entry's JSON)."""

TAKE_SCENARIO = r"""
local key = ARGV[1] .. ':scen:' .. ARGV[2]
local left = tonumber(redis.call('HGET', key, 'remaining') or '0')
if left <= 0 then return -1 end
left = redis.call('HINCRBY', key, 'remaining', -1)
if left == 0 then redis.call('INCR', ARGV[1] .. ':ver') end
return left
"""
"""Take one use of scenario ``ARGV[2]``: its uses left after, or -1 when another client took the last.
The settings version moves when the scenario runs out (the count of live scenarios changed)."""

RESERVE = r"""
local p, cid = ARGV[1], ARGV[2]
local now, hold, count_attempt, n = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local taken = {}
local i = 7
for _ = 1, n do
  local key, concurrency, caps, window = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  if concurrency ~= '' then
    local live = p .. ':live:' .. key
    redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
    if not redis.call('ZSCORE', live, cid) then
      local count = redis.call('ZCARD', live)
      if count >= tonumber(concurrency) then return {key, 'concurrency', concurrency, count, 5} end
    end
    table.insert(taken, key)
  end
  if count_attempt and caps ~= '' then
    local attempts = p .. ':att:' .. key
    local w = tonumber(window)
    redis.call('ZREMRANGEBYSCORE', attempts, '-inf', now - w)
    local recent = redis.call('ZCARD', attempts)
    if recent + 1 > tonumber(caps) * w then
      return {key, 'caps', caps, recent, math.max(1, math.floor(w + 0.5))}
    end
  end
end
local expires = '+inf'
if hold >= 0 then expires = now + hold end
for _, key in ipairs(taken) do
  redis.call('ZADD', p .. ':live:' .. key, expires, cid)
  redis.call('SADD', p .. ':ck:' .. cid, key)
  redis.call('SADD', p .. ':livekeys', key)
end
if count_attempt then
  i = 7
  for _ = 1, n do
    if ARGV[i + 2] ~= '' then
      local attempts = p .. ':att:' .. ARGV[i]
      redis.call('ZADD', attempts, now, now .. ':' .. redis.call('INCR', p .. ':attseq'))
      redis.call('EXPIRE', attempts, math.ceil(tonumber(ARGV[i + 3])) + 1)
    end
    i = i + 4
  end
end
return {}
"""
"""``limits.reserve`` as one step: ``ARGV`` prefix, call id, now, hold seconds (-1: until the call ends),
'1' to count an attempt, the number of limits, then 4 values per limit (key, concurrency or '', caps or
'', the CAPS window). Returns an empty list, or the refusal (key, kind, limit, counted, retry-after)."""
