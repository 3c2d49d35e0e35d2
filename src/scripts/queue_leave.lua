-- quorumlock: a waiter leaves the waiting line of one resource (see acquire_queued.lua): it got
-- the lock elsewhere, or gave up.
-- KEYS[1]  the resource's waiting line
-- KEYS[2]  the waiters' leases
-- ARGV[1]  the waiter's id
-- Returns 1 (the waiter is not in the line now).
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
