-- quorumlock fenced acquire: lock keys and fence counters, atomically on this node.
-- KEYS[1..n]     the lock keys (one per resource, sorted)
-- KEYS[n+1..2n]  the resources' fence counter keys, in the same order
-- KEYS[2n+1]     the token's tombstone key (see acquire.lua)
-- ARGV[1]        the lock's token
-- ARGV[2]        time to live, in milliseconds (a positive integer)
-- ARGV[3]        the counters' horizon, in milliseconds: every counter written here lives this
--                long after the write (a counter that expired is taken up again from the clock:
--                docs/fencing.md, "Counters expire")
-- Returns 0 (and changes nothing) if any lock key exists or the token has a tombstone.
-- Otherwise sets every lock key to ARGV[1] with TTL ARGV[2], computes fence = max(counter + 1
-- for every counter, server time in microseconds), stores it in every counter, and returns
-- {ARGV[1], fence}: the token (see acquire.lua) and the fence, a positive integer.
-- Microseconds since 1970 stay far below 2^53, so Lua's doubles hold them exactly.
-- Keys that all hold ARGV[1] already are this request sent again (see acquire.lua): granted
-- again, unchanged, with the highest of the counters (at least the fence first given, which
-- the first run stored in every counter).
-- Every key is read, and every counter checked to be a number, before anything is written: an
-- error reply (a foreign key of another type under the prefix) leaves the node as it was.
local n = (#KEYS - 1) / 2
local counters = {}
for i = n + 1, 2 * n do
  local v = redis.call('GET', KEYS[i])
  local c = tonumber(v or '0')
  if not c then
    return redis.error_reply('ERR quorumlock: fence counter ' .. KEYS[i] .. ' holds no number')
  end
  counters[#counters + 1] = c
end
if redis.call('EXISTS', KEYS[2 * n + 1]) == 1 then
  return 0
end
local ours = 0
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v == ARGV[1] then
    ours = ours + 1
  elseif v then
    return 0
  end
end
if ours == n then
  local high = 0
  for _, c in ipairs(counters) do
    if c > high then
      high = c
    end
  end
  return {ARGV[1], high}
end
if ours > 0 then
  return 0
end
local t = redis.call('TIME')
local fence = tonumber(t[1]) * 1000000 + tonumber(t[2])
for _, c in ipairs(counters) do
  if c + 1 > fence then
    fence = c + 1
  end
end
local text = string.format('%d', fence)
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
for i = n + 1, 2 * n do
  redis.call('SET', KEYS[i], text, 'PX', ARGV[3])
end
return {ARGV[1], fence}
