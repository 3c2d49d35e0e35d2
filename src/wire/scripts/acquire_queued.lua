-- quorumlock acquire of one resource, served in the order the waiters began to wait: the
-- cross-process waiting line of wake-on-release (docs/design.md, "The waiting line").
-- KEYS[1]  the lock key
-- KEYS[2]  the token's tombstone key (see acquire.lua)
-- KEYS[3]  the resource's waiting line: a sorted set, waiter id -> place
-- KEYS[4]  the waiters' leases: a sorted set, waiter id -> server time (ms) until which the
--          entry counts
-- ARGV[1]  the lock's token
-- ARGV[2]  time to live, in milliseconds (a positive integer)
-- ARGV[3]  the waiter's id (the same for every attempt of one acquisition)
-- ARGV[4]  the waiter's place: when it began to wait, in microseconds since 1970 by its own
--          clock; every node gets the same place, so the head of the line is the same waiter
--          on every node that has heard of it
-- ARGV[5]  the lease, in milliseconds: how long a refused waiter keeps its place without trying
--          again; 0 when this is its last attempt (it does not join)
-- ARGV[6]  (fenced locks only) the fence counter's horizon, in milliseconds (see
--          acquire_fenced.lua)
-- KEYS[5]  (fenced locks only) the resource's fence counter: a grant then also takes a fence
--          as acquire_fenced.lua does, and replies {ARGV[1], fence} instead of ARGV[1]
-- Returns ARGV[1] if the key is now set to ARGV[1] with TTL ARGV[2]; 0 otherwise. The key is set
-- only if it is free, the token has no tombstone, and no waiter whose lease still runs is ahead
-- of this one (a waiter that stopped trying leaves the line when its lease ends). A waiter
-- that is refused joins the line (keeping its first place) and renews its lease. Which waiter
-- is served changes only liveness: a key that exists is never set, as in acquire.lua.
-- Every key is read (and checked to be of its type) before anything is written: a foreign key
-- of another type under the prefix gives an error reply and leaves the node as it was.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local fenced = #KEYS == 5
local held = redis.call('GET', KEYS[1])
-- A key of another type makes ZSCORE fail here, before anything is written (and needs no
-- permission beyond the line's own commands, unlike TYPE).
for i = 3, 4 do
  redis.call('ZSCORE', KEYS[i], ARGV[3])
end
local lease = tonumber(ARGV[5])
-- The commands a join uses after its ZADD are tried first, on the tombstone key, which does
-- not exist here (checked above), so they change nothing: a user without one of them (a
-- missing ACL permission) gets its error reply now, not after a ZADD left a line without a TTL.
if lease > 0 then
  redis.call('PTTL', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], lease)
end
local counter
if fenced then
  counter = tonumber(redis.call('GET', KEYS[5]) or '0')
  if not counter then
    return redis.error_reply('ERR quorumlock: fence counter ' .. KEYS[5] .. ' holds no number')
  end
end
if held == ARGV[1] then
  -- This very request, sent again (see acquire.lua); a fenced one gets the counter, which holds
  -- at least the fence first given (see acquire_fenced.lua).
  if fenced then
    return {ARGV[1], counter}
  end
  return ARGV[1]
end
local now
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
local function join()
  redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[3])
  redis.call('ZADD', KEYS[4], clock() + lease, ARGV[3])
  -- The line lives as long as its longest lease, so it never outlives its waiters.
  for i = 3, 4 do
    if redis.call('PTTL', KEYS[i]) < lease then
      redis.call('PEXPIRE', KEYS[i], lease)
    end
  end
end
if held then
  if lease > 0 then
    join()
  end
  return 0
end
-- The key is free. A waiter joins before the head is read: one that began to wait earlier than
-- everyone in the line (its first attempt, or its entry lapsed) is the head at once, rather than
-- joining as the head and sleeping while the key stays free.
-- (An empty line is the uncontended case: nothing to join.)
if lease > 0 and redis.call('EXISTS', KEYS[3]) == 1 and not redis.call('ZSCORE', KEYS[3], ARGV[3]) then
  join()
end
while true do
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if not head or head == ARGV[3] then
    local fence
    if fenced then
      -- As acquire_fenced.lua: above the counter, and at least the server time in microseconds.
      local t = redis.call('TIME')
      fence = tonumber(t[1]) * 1000000 + tonumber(t[2])
      if counter + 1 > fence then
        fence = counter + 1
      end
    end
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    if head then
      redis.call('ZREM', KEYS[3], head)
      redis.call('ZREM', KEYS[4], head)
    end
    if fenced then
      redis.call('SET', KEYS[5], string.format('%d', fence), 'PX', ARGV[6])
      return {ARGV[1], fence}
    end
    return ARGV[1]
  end
  if tonumber(redis.call('ZSCORE', KEYS[4], head) or '0') > clock() then
    break
  end
  redis.call('ZREM', KEYS[3], head)
  redis.call('ZREM', KEYS[4], head)
end
if lease > 0 then
  join() -- renews the lease
end
return 0
