-- quorumlock release: compare-and-delete, for one or more keys, leaving a tombstone when there
-- was nothing to delete.
-- KEYS[1..n]  the lock's keys (one per resource)
-- KEYS[n+1]   the token's tombstone key
-- ARGV[1]     the lock's token
-- ARGV[2]     the tombstone's time to live, in milliseconds: the lock's TTL
-- ARGV[3]     '1': leave the tombstone even when a key was deleted (a Redis Cluster member,
--             where redis-rs may send the acquire again after this release: see acquire.lua);
--             '0': only when nothing was ours
-- ARGV[4]     optional: a channel on which each deleted key is published (wake-on-release)
-- ARGV[5]     with ARGV[4]: an 8-byte release id, sent before the key so that subscribers
--             count one release once per node, not once per key
-- Returns 1 if at least one key held ARGV[1] (every such key is deleted); 0 if none did. Never
-- touches a key that holds another token (G2).
-- When no key held the token, the acquire request of this token may still be on its way (held
-- up on a connection the client has since replaced): the tombstone makes every acquire script
-- refuse this token for one TTL, so that request can no longer leave a key (DESIGN rule (d)).
-- Every key is read before any is deleted: a foreign key of another type makes GET fail before
-- anything changed.
local n = #KEYS - 1
local ours = {}
for i = 1, n do
  ours[i] = redis.call('GET', KEYS[i]) == ARGV[1]
end
local deleted = 0
for i = 1, n do
  if ours[i] then
    redis.call('DEL', KEYS[i])
    deleted = deleted + 1
    if ARGV[4] then
      redis.call('PUBLISH', ARGV[4], ARGV[5] .. KEYS[i])
    end
  end
end
if deleted > 0 and ARGV[3] ~= '1' then
  return 1
end
redis.call('SET', KEYS[n + 1], '1', 'PX', ARGV[2])
if deleted > 0 then
  return 1
end
return 0
