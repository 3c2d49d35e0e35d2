-- quorumlock: a waiter leaves the waiting line of one resource (see acquire_queued.lua): it got
-- the lock elsewhere, or gave up.
-- KEYS[1]  the resource's waiting line
-- KEYS[2]  the waiters' leases
-- ARGV[1]  the waiter's id
-- Returns 1 (the waiter is not in the line now). Both keys are checked to be sorted sets (or
-- absent) first, so an error reply changes nothing.
-- A key of another type makes ZSCORE fail here, before anything is written (and needs no
-- permission beyond the line's own commands, unlike TYPE).
for i = 1, 2 do
  redis.call('ZSCORE', KEYS[i], ARGV[1])
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
