-- quorumlock extend: compare-and-PEXPIRE.
-- KEYS[1]  the lock key
-- ARGV[1]  the lock's token
-- ARGV[2]  the new time to live, in milliseconds (a positive integer)
-- Returns 1 if the key held ARGV[1] and its TTL is now ARGV[2]; 0 if it was absent or another
-- owner's. PEXPIRE never creates a key, so an expired lock is never resurrected (P5).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
