-- quorumlock fence write-back: raise counters to at least a fence.
-- KEYS[1..n]  fence counter keys
-- ARGV[1]     the fence (a positive integer, as text)
-- Returns 1. Never lowers a counter.
local f = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local c = tonumber(redis.call('GET', key) or '0')
  if c < f then
    redis.call('SET', key, ARGV[1])
  end
end
return 1
