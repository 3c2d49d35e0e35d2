-- quorumlock release: compare-and-delete.
-- KEYS[1]  the lock key
-- ARGV[1]  the lock's token
-- Returns 1 if the key held ARGV[1] and was deleted; 0 if it was absent or another owner's.
-- Never touches a key that holds another token (G2).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
