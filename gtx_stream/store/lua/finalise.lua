-- Finalise a frame exactly once: mark it final and publish its record, atomically.
-- KEYS[1] = frame hash     (<prefix>:{f:<id>}:frame)
-- KEYS[2] = frame image    (<prefix>:{f:<id>}:jpeg)
-- KEYS[3] = open zset      (<prefix>:open)
-- KEYS[4] = final stream   (<prefix>:final)
-- KEYS[5] = stats hash     (<prefix>:stats)
-- KEYS[6] = frame labels   (<prefix>:{f:<id>}:labels)
-- KEYS[7] = frame requests (<prefix>:{f:<id>}:requests)
-- ARGV[1] = frame id
-- ARGV[2] = n_labels the decision was made on
-- ARGV[3] = grace seconds: the frame's own keys (hash, labels, requests) expire this long
--           after finalisation, or sooner if their TTL says so; 0: they keep their TTL
-- ARGV[4] = now (unix seconds, the aggregator's clock)
-- ARGV[5..] = field, value pairs of the final record (core.records.FinalRecord.to_fields),
--             written to the final stream and copied into the frame hash; the value of
--             image_expires_at is filled in here from the image's TTL (empty: image gone)
-- The image is kept with its TTL: the exporter deletes it once it is on disk.
-- Returns the final-stream entry id, or not_open / stale.
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 'not_open' end
if tonumber(redis.call('HGET', KEYS[1], 'n_labels') or '0') ~= tonumber(ARGV[2]) then
  return 'stale'
end
local expires = ''
local pttl = redis.call('PTTL', KEYS[2])
if pttl > 0 then
  expires = string.format('%.3f', tonumber(ARGV[4]) + pttl / 1000)
end
local record = {}
for i = 5, #ARGV, 2 do
  record[#record + 1] = ARGV[i]
  if ARGV[i] == 'image_expires_at' then
    record[#record + 1] = expires
  else
    record[#record + 1] = ARGV[i + 1]
  end
end
local id = redis.call('XADD', KEYS[4], '*', unpack(record))
redis.call('HSET', KEYS[1], unpack(record))
redis.call('HSET', KEYS[1], 'state', 'final', 'final_id', id)
redis.call('ZREM', KEYS[3], ARGV[1])
local grace = tonumber(ARGV[3])
if grace > 0 then
  for _, k in ipairs({1, 6, 7}) do
    local ttl = redis.call('TTL', KEYS[k])
    if ttl == -1 or ttl > grace then redis.call('EXPIRE', KEYS[k], grace) end
  end
end
redis.call('HINCRBY', KEYS[5], 'frames_finalised', 1)
return id
