-- quorumlock acquire of one resource: SET NX PX, unless this token was already released here.
-- KEYS[1]  the lock key
-- KEYS[2]  the token's tombstone key (written by release.lua when it found nothing to delete)
-- ARGV[1]  the lock's token
-- ARGV[2]  time to live, in milliseconds (a positive integer)
-- Returns ARGV[1] (the token: a reply that names its request, so a stray or duplicated reply can
-- never read as a grant) if the key is now set to ARGV[1] with TTL ARGV[2]; 0 (and changes
-- nothing) if the key existed or the token has a tombstone. The tombstone is what makes a SET that reaches this
-- node after its own release (bytes held up on a connection the client already replaced)
-- harmless: the release came first, so this request must not create a key (DESIGN rule (d)).
-- A key that already holds ARGV[1] is this very request, applied once and sent again (redis-rs
-- re-sends a request to a Redis Cluster member after a broken connection): it is granted
-- again, unchanged, so the re-send never reads as a refusal of our own key.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return ARGV[1]
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return ARGV[1]
end
return 0
