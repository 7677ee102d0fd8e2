-- Apply one label to its frame, exactly once.
-- KEYS[1] = frame hash          (<prefix>:{f:<id>}:frame)
-- KEYS[2] = frame labels list   (<prefix>:{f:<id>}:labels)
-- KEYS[3] = frame requests hash (<prefix>:{f:<id>}:requests)
-- KEYS[4] = labelers hash       (<prefix>:labelers)
-- KEYS[5] = leases zset         (<prefix>:leases)
-- KEYS[6] = load hash           (<prefix>:load)
-- KEYS[7] = stats hash          (<prefix>:stats)
-- ARGV[1] = labeler id
-- ARGV[2] = label, "0" or "1" (validated by the caller)
-- ARGV[3] = labels-stream entry id of this label
-- ARGV[4] = lease member "<frame_id>|<labeler id>"
-- Returns {status, n_labels}; status is one of
--   applied, redelivered (this very entry was applied before), duplicate (another label of
--   this labeler on this frame was applied before), unknown_frame, unknown_labeler,
--   finalised, unsolicited (this labeler was never asked about this frame).
local labeler, label, entry, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local req = redis.call('HGET', KEYS[3], labeler)
if req and string.sub(req, 1, 5) == 'done:' then
  if string.sub(req, 6) == entry then
    return {'redelivered', tonumber(redis.call('HGET', KEYS[1], 'n_labels') or '0')}
  end
  return {'duplicate', tonumber(redis.call('HGET', KEYS[1], 'n_labels') or '0')}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown_frame', 0}
end
if redis.call('HEXISTS', KEYS[4], labeler) == 0 then
  return {'unknown_labeler', 0}
end
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then
  return {'finalised', tonumber(redis.call('HGET', KEYS[1], 'n_labels') or '0')}
end
if not req then
  return {'unsolicited', 0}
end
if req == 'out' then
  local load = tonumber(redis.call('HGET', KEYS[6], labeler) or '0')
  if load > 0 then redis.call('HINCRBY', KEYS[6], labeler, -1) end
end
redis.call('ZREM', KEYS[5], member)
redis.call('HSET', KEYS[3], labeler, 'done:' .. entry)
redis.call('RPUSH', KEYS[2], cjson.encode({labeler, tonumber(label)}))
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
local n = redis.call('HINCRBY', KEYS[1], 'n_labels', 1)
redis.call('HINCRBY', KEYS[7], 'labels_applied', 1)
redis.call('HINCRBY', KEYS[7], 'labels:' .. labeler, 1)
return {'applied', n}
