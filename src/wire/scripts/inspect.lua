-- quorumlock inspect: read-only view of one resource on one node, in one atomic step.
-- KEYS[1]  the lock key
-- KEYS[2]  the fence counter key
-- Returns {lock value or false, PTTL of the lock key, fence counter or false}.
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2])}
