-- A request's lease ran out: the frame may be asked of another labeler. A late label from
-- this labeler (with this request's id) is still applied (once) while the frame is open.
-- KEYS[1] = frame requests hash (<prefix>:{f:<id>}:requests)
-- KEYS[2] = leases zset         (<prefix>:leases)
-- KEYS[3] = load hash           (<prefix>:load)
-- KEYS[4] = stats hash          (<prefix>:stats)
-- ARGV[1] = labeler id
-- ARGV[2] = lease member "<frame_id>|<labeler id>"
-- "out:<request id>" becomes "late:<request id>"; the label of budget stays reserved (the
-- label may still come, and a failure report gives it back).
-- Returns expired, or gone when the label came in meanwhile (or another aggregator expired it).
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 'gone' end
local req = redis.call('HGET', KEYS[1], ARGV[1])
if not req or string.sub(req, 1, 4) ~= 'out:' then return 'gone' end
redis.call('HSET', KEYS[1], ARGV[1], 'late:' .. string.sub(req, 5))
local load = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if load > 0 then redis.call('HINCRBY', KEYS[3], ARGV[1], -1) end
redis.call('HINCRBY', KEYS[4], 'leases_expired', 1)
return 'expired'
