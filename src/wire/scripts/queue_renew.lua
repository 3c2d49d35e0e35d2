-- quorumlock: a waiter renews its lease in the waiting line of one resource while it pauses
-- between attempts (see acquire_queued.lua), so that a live waiter keeps its place under any
-- retry policy and a dead one loses it one short lease after its last word.
-- KEYS[1]  the resource's waiting line
-- KEYS[2]  the waiters' leases
-- ARGV[1]  the waiter's id
-- ARGV[2]  the lease, in milliseconds (a positive integer)
-- Returns 1 if the waiter's entry was there and its lease now ends ARGV[2] ms from now; 0 if it
-- had no entry (it was served, left, or its lease ended): a renewal never joins the line, so a
-- renewal that arrives after a leave changes nothing. An error reply (a key of another type)
-- changes nothing.
-- A key of another type makes ZSCORE fail here, before anything is written (and needs no
-- permission beyond the line's own commands, unlike TYPE).
for i = 1, 2 do
  redis.call('ZSCORE', KEYS[i], ARGV[1])
end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local lease = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < lease then
    redis.call('PEXPIRE', KEYS[i], lease)
  end
end
return 1
