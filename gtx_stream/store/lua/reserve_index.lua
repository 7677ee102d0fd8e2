-- Reserve the next frame index of a source for one frame submitted by client.submit.
-- Two processes submitting to one source never get the same index, and an index is never
-- handed out twice (the counter lives in Redis, not in the process).
-- KEYS[1] = source hash  <prefix>:source:<source_id> (fields next_index, and last_index: the
--                        high-water mark open_frame.lua keeps)
-- Returns the index: at or above next_index and above last_index, so it also stays clear of
-- frames an ingester opened under the same source id.
local next_index = tonumber(redis.call('HGET', KEYS[1], 'next_index') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_index') or '-1')
if next_index <= last then next_index = last + 1 end
redis.call('HSET', KEYS[1], 'next_index', next_index + 1)
return next_index
