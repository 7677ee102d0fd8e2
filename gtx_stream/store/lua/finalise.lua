-- Finalise a frame exactly once: mark it final and publish its record, atomically.
-- KEYS[1] = frame hash     (<prefix>:{f:<id>}:frame)
-- KEYS[2] = frame image    (<prefix>:{f:<id>}:jpeg)
-- KEYS[3] = open zset      (<prefix>:open)
-- KEYS[4] = final stream   (<prefix>:final)
-- KEYS[5] = stats hash     (<prefix>:stats)
-- ARGV[1] = frame id
-- ARGV[2] = n_labels the decision was made on
-- ARGV[3..] = field, value pairs of the final record (core.records.FinalRecord.to_fields),
--             written to the final stream as given and copied into the frame hash
-- Returns the final-stream entry id, or not_open / stale.
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 'not_open' end
if tonumber(redis.call('HGET', KEYS[1], 'n_labels') or '0') ~= tonumber(ARGV[2]) then
  return 'stale'
end
local record = {}
for i = 3, #ARGV do record[#record + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[4], '*', unpack(record))
redis.call('HSET', KEYS[1], unpack(record))
redis.call('HSET', KEYS[1], 'state', 'final', 'final_id', id)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('HINCRBY', KEYS[5], 'frames_finalised', 1)
return id
