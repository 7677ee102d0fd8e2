-- Open one frame for labeling, atomically (ingester, client.submit).
-- KEYS[1] = frame hash          <prefix>:{f:<frame_id>}:frame
-- KEYS[2] = frame JPEG          <prefix>:{f:<frame_id>}:jpeg
-- KEYS[3] = open frames ZSET    <prefix>:open
-- KEYS[4] = source hash         <prefix>:source:<source_id>
-- KEYS[5] = budget hash         <prefix>:budget (fields limit, spent; missing: unlimited)
-- KEYS[6] = stats hash          <prefix>:stats
-- KEYS[7] = opened stream       <prefix>:opened
-- KEYS[8] = waiting ZSET        <prefix>:waiting (the frame goes in, due from opened_at: it
--                               has no request yet; ask.lua takes it out)
-- KEYS[9] = source's open ZSET  <prefix>:source:<source_id>:open (its frames opened here and
--                               not yet seen final: those no longer in KEYS[3] are pruned
--                               when it reaches ARGV[11])
-- ARGV[1] = frame_id
-- ARGV[2] = frame_index (integer, position in the source)
-- ARGV[3] = source (path, URL or camera:N)
-- ARGV[4] = source_id
-- ARGV[5] = opened_at (unix seconds)
-- ARGV[6] = frame TTL (seconds)
-- ARGV[7] = max open frames
-- ARGV[8] = JPEG bytes
-- ARGV[9] = labels of budget kept for each open frame (kappa: what one frame may still need)
-- ARGV[10] = "ordered" (ingester: the index must be above the source's high-water mark) or
--            "reserved" (client.submit: the index came from reserve_index.lua, so frames of
--            one source may open out of order; the high-water mark only ever rises)
-- ARGV[11] = max open frames of this source (0: no bound of its own)
-- ARGV[12] = labels this source may spend at most (aggregator.budget_per_source; 0: no share
--            of its own; -1, a Redis Cluster's shard: KEYS[5]'s limit:<source_id>, what the
--            shard leased of the share): once its spent:<source_id> in KEYS[5] reaches it, "budget"
-- ARGV[13..] = extra frame fields as name, value pairs (truth, task, eligible, file_name,
--              a client's metadata)
-- Returns "opened"; or, with nothing written:
--   "duplicate": the frame exists already, or ("ordered") frame_index <= the source's
--                high-water mark
--   "budget":    the label budget, or this source's share of it, is spent (the ingester
--                stops reading this source)
--   "full":      max open frames are open (in all, or of this source), or the budget left
--                could not give every open
--                frame, this one included, ARGV[9] more labels: the end of the budget goes
--                to finishing the open frames (the ingester waits and tries again)

local index = tonumber(ARGV[2])
local ordered = ARGV[10] == 'ordered'
local last = redis.call('HGET', KEYS[4], 'last_index')
last = last and tonumber(last)
-- every open raises the high-water mark to its index, so a frame above it cannot exist: the
-- EXISTS is needed only at or below it (or without one)
if ordered and last and last >= index then
    return 'duplicate'
end
if not (ordered and last) and redis.call('EXISTS', KEYS[1]) == 1 then
    return 'duplicate'
end

local share = tonumber(ARGV[12])
local capped = share ~= 0
if share < 0 then  -- a Redis Cluster's shard: what it leased of the source's share
    share = tonumber(redis.call('HGET', KEYS[5], 'limit:' .. ARGV[4]) or '0')
end
if capped and tonumber(redis.call('HGET', KEYS[5], 'spent:' .. ARGV[4]) or '0') >= share then
    return 'budget'
end
local n_open = redis.call('ZCARD', KEYS[3])
local budget = redis.call('HMGET', KEYS[5], 'limit', 'spent')
if budget[1] then
    local left = tonumber(budget[1]) - tonumber(budget[2] or '0')
    if left <= 0 then
        return 'budget'
    end
    -- with nothing open, a frame is opened on whatever is left
    if n_open > 0 and left < (n_open + 1) * tonumber(ARGV[9]) then
        return 'full'
    end
end

if n_open >= tonumber(ARGV[7]) then
    return 'full'
end

-- this source's own bound: its frames still open (finalise and drop leave KEYS[3] only, so
-- the ones gone from it are pruned here, when the bound is reached)
local per_source = tonumber(ARGV[11])
if per_source > 0 and redis.call('ZCARD', KEYS[9]) >= per_source then
    for _, fid in ipairs(redis.call('ZRANGE', KEYS[9], 0, -1)) do
        if not redis.call('ZSCORE', KEYS[3], fid) then redis.call('ZREM', KEYS[9], fid) end
    end
    if redis.call('ZCARD', KEYS[9]) >= per_source then
        return 'full'
    end
end

local ttl = tonumber(ARGV[6])
local fields = {
    'state', 'open',
    'source', ARGV[3],
    'source_id', ARGV[4],
    'frame_index', ARGV[2],
    'opened_at', ARGV[5],
    'n_labels', '0',
}
for i = 13, #ARGV, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], ARGV[8], 'EX', ttl)
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[8], ARGV[5], ARGV[1])
if per_source > 0 then redis.call('ZADD', KEYS[9], ARGV[5], ARGV[1]) end
if not last or index > last then
    redis.call('HSET', KEYS[4], 'last_index', ARGV[2], 'uri', ARGV[3])
end
redis.call('HINCRBY', KEYS[6], 'frames_opened', 1)
redis.call('HINCRBY', KEYS[6], 'frames_opened:' .. ARGV[4], 1)
redis.call('XADD', KEYS[7], '*', 'frame_id', ARGV[1])
return 'opened'
