-- Finalise a frame exactly once: mark it final and publish its record, atomically.
-- KEYS[1] = frame hash     (<prefix>:{f:<id>}:frame)
-- KEYS[2] = frame image    (<prefix>:{f:<id>}:jpeg)
-- KEYS[3] = open zset      (<prefix>:open)
-- KEYS[4] = final stream   (<prefix>:final)
-- KEYS[5] = stats hash     (<prefix>:stats)
-- ARGV[1] = frame id
-- ARGV[2] = n_labels the decision was made on
-- ARGV[3..] = field, value pairs of the record (label, confidence, p1, reason, ...)
-- Returns the final-stream entry id, or not_open / stale.
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 'not_open' end
if tonumber(redis.call('HGET', KEYS[1], 'n_labels') or '0') ~= tonumber(ARGV[2]) then
  return 'stale'
end
local meta = redis.call('HMGET', KEYS[1], 'source', 'frame_index', 'opened_at')
local record = {'frame_id', ARGV[1], 'source', meta[1] or '', 'frame_index', meta[2] or '',
                'opened_at', meta[3] or '', 'n_labels', ARGV[2]}
local fields = {'state', 'final'}
for i = 3, #ARGV, 2 do
  table.insert(record, ARGV[i]); table.insert(record, ARGV[i + 1])
  table.insert(fields, ARGV[i]); table.insert(fields, ARGV[i + 1])
end
redis.call('HSET', KEYS[1], unpack(fields))
local id = redis.call('XADD', KEYS[4], '*', unpack(record))
redis.call('HSET', KEYS[1], 'final_id', id)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('HINCRBY', KEYS[5], 'frames_finalised', 1)
return id
