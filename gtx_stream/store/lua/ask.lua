-- Record one label request for a frame, reserving one label of budget.
-- KEYS[1] = frame hash          (<prefix>:{f:<id>}:frame)
-- KEYS[2] = frame requests hash (<prefix>:{f:<id>}:requests)
-- KEYS[3] = budget hash         (<prefix>:budget; fields limit (absent: unlimited), spent)
-- KEYS[4] = leases zset         (<prefix>:leases)
-- KEYS[5] = load hash           (<prefix>:load)
-- KEYS[6] = stats hash          (<prefix>:stats)
-- KEYS[7] = waiting zset        (<prefix>:waiting; a granted request takes the frame out: its
--                               lease in KEYS[4] is how a sweep finds it now)
-- ARGV[1] = labeler id
-- ARGV[2] = n_labels the decision to ask was made on
-- ARGV[3] = max outstanding requests per frame
-- ARGV[4] = lease deadline (unix seconds)
-- ARGV[5] = lease member "<frame_id>|<labeler id>"
-- ARGV[6] = request id (unguessable; the label must bring it back to be applied)
-- ARGV[7] = frame id
-- The request is stored as "out:<request id>" (core.records.RequestState).
-- Returns ok, or why not: not_open, stale, asked, inflight, budget.
local labeler = ARGV[1]
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 'not_open' end
if tonumber(redis.call('HGET', KEYS[1], 'n_labels') or '0') ~= tonumber(ARGV[2]) then
  return 'stale'
end
if redis.call('HEXISTS', KEYS[2], labeler) == 1 then return 'asked' end
local out = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  if string.sub(v, 1, 4) == 'out:' then out = out + 1 end
end
if out >= tonumber(ARGV[3]) then return 'inflight' end
local limit = redis.call('HGET', KEYS[3], 'limit')
local spent = tonumber(redis.call('HGET', KEYS[3], 'spent') or '0')
if limit and spent >= tonumber(limit) then return 'budget' end
redis.call('HINCRBY', KEYS[3], 'spent', 1)
redis.call('HSET', KEYS[2], labeler, 'out:' .. ARGV[6])
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
redis.call('HINCRBY', KEYS[5], labeler, 1)
redis.call('HINCRBY', KEYS[6], 'requests', 1)
redis.call('ZREM', KEYS[7], ARGV[7])
return 'ok'
