-- Apply a batch of labels, each to its frame exactly once, in order; then return the state
-- of every frame a label was applied to (so the caller decides without reading again).
-- KEYS[1] = labelers hash  (<prefix>:labelers)
-- KEYS[2] = leases zset    (<prefix>:leases)
-- KEYS[3] = load hash      (<prefix>:load)
-- KEYS[4] = stats hash     (<prefix>:stats)
-- then for label i (i = 1..n), three keys of its frame:
-- KEYS[4 + 3i - 2] = frame hash          (<prefix>:{f:<id>}:frame)
-- KEYS[4 + 3i - 1] = frame labels list   (<prefix>:{f:<id>}:labels)
-- KEYS[4 + 3i]     = frame requests hash (<prefix>:{f:<id>}:requests)
-- ARGV, four per label i:
-- ARGV[4i - 3] = labeler id
-- ARGV[4i - 2] = label, "0" or "1" (validated by the caller)
-- ARGV[4i - 1] = labels-stream entry id of this label
-- ARGV[4i]     = lease member "<frame_id>|<labeler id>"
-- Returns {statuses, views}: statuses[i] is one of
--   applied, redelivered (this very entry was applied before), duplicate (another label of
--   this labeler on this frame was applied before), unknown_frame, unknown_labeler,
--   finalised, unsolicited (this labeler was never asked about this frame);
-- views is a flat list of {label index, frame hash as flat list, labels list, requests as flat
-- list} for the last label of each frame that was applied or redelivered.
local statuses = {}
local last_for_frame = {}
local n = #ARGV / 4
for i = 1, n do
  local fkey, lkey, rkey = KEYS[4 + 3 * i - 2], KEYS[4 + 3 * i - 1], KEYS[4 + 3 * i]
  local labeler, label = ARGV[4 * i - 3], ARGV[4 * i - 2]
  local entry, member = ARGV[4 * i - 1], ARGV[4 * i]
  local status
  local req = redis.call('HGET', rkey, labeler)
  local state = redis.call('HGET', fkey, 'state')
  if req and string.sub(req, 1, 5) == 'done:' then
    if string.sub(req, 6) == entry then status = 'redelivered' else status = 'duplicate' end
  elseif not state then
    status = 'unknown_frame'
  elseif redis.call('HEXISTS', KEYS[1], labeler) == 0 then
    status = 'unknown_labeler'
  elseif state ~= 'open' then
    status = 'finalised'
  elseif not req then
    status = 'unsolicited'
  else
    if req == 'out' then
      local load = tonumber(redis.call('HGET', KEYS[3], labeler) or '0')
      if load > 0 then redis.call('HINCRBY', KEYS[3], labeler, -1) end
    end
    redis.call('ZREM', KEYS[2], member)
    -- the requests hash got the frame's TTL when the request was made (ask.lua); the
    -- labels list gets it with its first label
    redis.call('HSET', rkey, labeler, 'done:' .. entry)
    if redis.call('RPUSH', lkey, cjson.encode({labeler, tonumber(label)})) == 1 then
      local ttl = redis.call('TTL', fkey)
      if ttl > 0 then redis.call('EXPIRE', lkey, ttl) end
    end
    redis.call('HINCRBY', fkey, 'n_labels', 1)
    redis.call('HINCRBY', KEYS[4], 'labels_applied', 1)
    redis.call('HINCRBY', KEYS[4], 'labels:' .. labeler, 1)
    status = 'applied'
  end
  statuses[i] = status
  if status == 'applied' or status == 'redelivered' then last_for_frame[fkey] = i end
end
local views = {}
for fkey, i in pairs(last_for_frame) do
  table.insert(views, i)
  table.insert(views, redis.call('HGETALL', fkey))
  table.insert(views, redis.call('LRANGE', KEYS[4 + 3 * i - 1], 0, -1))
  table.insert(views, redis.call('HGETALL', KEYS[4 + 3 * i]))
end
return {statuses, views}
