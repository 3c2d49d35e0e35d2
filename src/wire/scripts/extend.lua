-- quorumlock extend: compare-and-PEXPIRE, all keys or none.
-- KEYS[1..n]  the lock's keys (one per resource)
-- ARGV[1]     the lock's token
-- ARGV[2]     the new time to live, in milliseconds (a positive integer)
-- Returns 1 if every key held ARGV[1] and now has TTL ARGV[2]; 0 (and changes nothing) if any
-- key was absent or another owner's. PEXPIRE never creates a key, so an expired lock is never
-- resurrected (P5).
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= ARGV[1] then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[2])
end
return 1
