-- quorumlock acquire of several resources: all keys or none, atomically on this node.
-- KEYS[1..n]  the keys of the resources, sorted and without duplicates
-- ARGV[1]     the lock's token
-- ARGV[2]     time to live, in milliseconds (a positive integer)
-- Returns 1 if no key existed and all are now set to ARGV[1] with TTL ARGV[2]; 0 (and changes
-- nothing) if any key existed.
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 1
