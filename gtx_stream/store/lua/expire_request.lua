-- A request's lease ran out: the frame may be asked of another labeler. A late label from
-- this labeler (with this request's id) is still applied (once) while the frame is open.
-- KEYS[1] = frame requests hash (<prefix>:{f:<id>}:requests)
-- KEYS[2] = leases zset         (<prefix>:leases)
-- KEYS[3] = load hash           (<prefix>:load)
-- KEYS[4] = stats hash          (<prefix>:stats)
-- KEYS[5] = frame hash          (<prefix>:{f:<id>}:frame)
-- KEYS[6] = waiting zset        (<prefix>:waiting)
-- ARGV[1] = labeler id
-- ARGV[2] = lease member "<frame_id>|<labeler id>"
-- ARGV[3] = frame id
-- ARGV[4] = now (unix seconds): when an open frame left with no outstanding request is due
--           in KEYS[6] (unless it is there already)
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
if redis.call('HGET', KEYS[5], 'state') == 'open' then
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
    if string.sub(v, 1, 4) == 'out:' then return 'expired' end
  end
  redis.call('ZADD', KEYS[6], 'NX', ARGV[4], ARGV[3])
end
return 'expired'
