-- quorumlock release: compare-and-delete, for one or more keys.
-- KEYS[1..n]  the lock's keys (one per resource)
-- ARGV[1]     the lock's token
-- ARGV[2]     optional: a channel on which each deleted key is published (wake-on-release)
-- ARGV[3]     with ARGV[2]: an 8-byte release id, sent before the key so that subscribers
--             wake once per release, not once per node
-- Returns 1 if at least one key held ARGV[1] (every such key is deleted); 0 if none did.
-- Never touches a key that holds another token (G2).
local deleted = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    deleted = deleted + 1
    if ARGV[2] then
      redis.call('PUBLISH', ARGV[2], ARGV[3] .. key)
    end
  end
end
if deleted > 0 then
  return 1
end
return 0
