-- quorumlock acquire of several resources: all keys or none, atomically on this node.
-- KEYS[1..n]  the keys of the resources, sorted and without duplicates
-- KEYS[n+1]   the token's tombstone key (see acquire.lua)
-- ARGV[1]     the lock's token
-- ARGV[2]     time to live, in milliseconds (a positive integer)
-- Returns ARGV[1] (the token, see acquire.lua) if no key existed and all are now set to ARGV[1]
-- with TTL ARGV[2]; 0 (and changes nothing) if any key existed or the token has a tombstone (it
-- was released here already). Keys that all hold ARGV[1] already are this request sent again
-- (see acquire.lua): granted again, unchanged.
local n = #KEYS - 1
if redis.call('EXISTS', KEYS[n + 1]) == 1 then
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
  return ARGV[1]
end
if ours > 0 then
  return 0
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return ARGV[1]
