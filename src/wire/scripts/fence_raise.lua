-- quorumlock fence write-back: raise counters to at least a fence.
-- KEYS[1..n]  fence counter keys
-- ARGV[1]     the fence (a positive integer, as text)
-- ARGV[2]     the counters' horizon, in milliseconds: a counter raised here lives this long
--             after the write (see acquire_fenced.lua)
-- Returns 1. Never lowers a counter; a counter already at or above the fence is left as it is,
-- TTL included (its last write bounds the fences it can stand for: docs/fencing.md). Every
-- counter is checked to be a number before any is written, so an error reply writes nothing.
local f = tonumber(ARGV[1])
local raise = {}
for _, key in ipairs(KEYS) do
  local c = tonumber(redis.call('GET', key) or '0')
  if not c then
    return redis.error_reply('ERR quorumlock: fence counter ' .. key .. ' holds no number')
  end
  if c < f then
    raise[#raise + 1] = key
  end
end
for _, key in ipairs(raise) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 1
