-- Apply a batch of labels-stream entries, each to its frame exactly once, in order; then
-- return the state of every frame an entry was applied to (so the caller decides without
-- reading again). An entry is a label or a failure report of one request, and is applied
-- only when its request id matches the labeler's outstanding or late request on the frame.
-- KEYS[1] = labelers hash  (<prefix>:labelers)
-- KEYS[2] = leases zset    (<prefix>:leases)
-- KEYS[3] = load hash      (<prefix>:load)
-- KEYS[4] = stats hash     (<prefix>:stats)
-- KEYS[5] = budget hash    (<prefix>:budget)
-- KEYS[6] = failures hash  (<prefix>:failures; labeler -> failed requests in a row)
-- KEYS[7] = backoff hash   (<prefix>:backoff; labeler -> unix seconds it is backed off until)
-- then for entry i (i = 1..n), three keys of its frame:
-- KEYS[7 + 3i - 2] = frame hash          (<prefix>:{f:<id>}:frame)
-- KEYS[7 + 3i - 1] = frame labels list   (<prefix>:{f:<id>}:labels)
-- KEYS[7 + 3i]     = frame requests hash (<prefix>:{f:<id>}:requests)
-- and last, after the frames' keys:
-- KEYS[7 + 3n + 1] = waiting zset (<prefix>:waiting): a frame still open with no outstanding
--                    request after the batch goes in, due from ARGV[1] (unless it is there
--                    already), so that a sweep finds it if nobody decides it again
-- ARGV[1] = now (unix seconds)
-- ARGV[2] = failures in a row after which a labeler is backed off
-- ARGV[3] = first backoff (seconds); each further failure doubles it
-- ARGV[4] = longest backoff (seconds)
-- then five per entry i (j = 4 + 5(i - 1)):
-- ARGV[j + 1] = labeler id
-- ARGV[j + 2] = label, "0" or "1", "failed" for a failure report, or "skipped" for a
--               person's "can't tell" (validated by the caller)
-- ARGV[j + 3] = labels-stream entry id
-- ARGV[j + 4] = lease member "<frame_id>|<labeler id>"
-- ARGV[j + 5] = request id the entry answers ("" when it names none)
-- Request states (core.records.RequestState): out:<rid> or late:<rid> become done:<entry id>
-- (a label) or failed:<rid> (a failure: lease and load released, its label of budget given
-- back, the labeler's failures in a row counted and, from ARGV[2] on, a backoff set; a good
-- label clears both). A skip is a failure that counts as requests_skipped and skipped:<id>
-- instead, and neither adds to nor clears the failures in a row: it backs nobody off.
-- Returns {statuses, views, budget}: statuses[i] is one of
--   applied, failed (a failure report applied), redelivered (this very entry, or this
--   request's failure, was applied before), duplicate (another label of this labeler on this
--   frame was applied before), unknown_frame, unknown_labeler, finalised, unsolicited (this
--   labeler was never asked about this frame), mismatch (the request id is not the
--   labeler's request), after_failure (a label for a request reported failed);
-- views is a flat list of {entry index, frame hash as flat list, labels list, requests as
-- flat list} for the last entry of each frame that was applied, failed or redelivered;
-- budget is {limit, spent} of KEYS[5] after the batch (each nil when missing), so that the
-- caller decides without reading it again.
-- Redis calls: each frame's hash and requests are read once per call (HGETALL, kept up to
-- date here as the batch changes them, and returned as its view), a label costs its HSET,
-- RPUSH and HINCRBY (and TTL + EXPIRE with a frame's first label), a view one LRANGE (none
-- for a list with no label, or with only the labels of this call); leases,
-- load, failures, backoff, waiting and the stats are written once per call (per labeler).
local statuses = {}
local last_for_frame = {}
local cleared = {}  -- labelers whose failures in a row and backoff are cleared in this call
local to_clear = {}  -- of those, labelers whose HDEL is still to be sent (once, at the end)
local registered = nil  -- labeler -> whether KEYS[1] has it (the hash cannot change meanwhile)
local applied = {}  -- labeler -> labels applied in this call: the stats, once per labeler
local released = {}  -- lease members to remove, all at the end
local unload = {}  -- labeler -> outstanding requests settled in this call (its load)
local pushed = {}  -- labels list -> its items, for a list that this call started
local n_applied = 0
local now, after, first, longest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local n = (#ARGV - 4) / 5

-- A hash read once per call: its HGETALL as it came (field order kept) and where each
-- field's value is in it; set() changes both, so it stays what Redis holds.
local cache = {}
local function read(key)
  local h = cache[key]
  if not h then
    local flat = redis.call('HGETALL', key)
    local at = {}
    for k = 1, #flat, 2 do at[flat[k]] = k + 1 end
    h = {flat = flat, at = at}
    cache[key] = h
  end
  return h
end
local function get(h, field)
  local k = h.at[field]
  return k and h.flat[k]
end
local function set(h, field, value)
  local k = h.at[field]
  if k then
    h.flat[k] = value
  else
    h.flat[#h.flat + 1] = field
    h.flat[#h.flat + 1] = value
    h.at[field] = #h.flat
  end
end

-- one command with many arguments, sent in slices (Lua's unpack has a limit)
local function call_many(command, key, items, head)
  for s = 1, #items, 1000 do
    local args = {}
    for _, x in ipairs(head or {}) do args[#args + 1] = x end
    for k = s, math.min(#items, s + 999) do args[#args + 1] = items[k] end
    redis.call(command, key, unpack(args))
  end
end

local function release(labeler, member, kind)
  if kind == 'out' then unload[labeler] = (unload[labeler] or 0) + 1 end
  released[#released + 1] = member
end

local function apply_failure(rh, rkey, labeler, member, kind, rid, skipped, source_id)
  release(labeler, member, kind)
  redis.call('HSET', rkey, labeler, 'failed:' .. rid)
  set(rh, labeler, 'failed:' .. rid)
  -- the budget counts labels obtained or outstanding, never failures; so does the frame's
  -- source's share of it (ask.lua's spent:<source id>, kept under aggregator.budget_per_source)
  if tonumber(redis.call('HGET', KEYS[5], 'spent') or '0') > 0 then
    redis.call('HINCRBY', KEYS[5], 'spent', -1)
  end
  if source_id and tonumber(redis.call('HGET', KEYS[5], 'spent:' .. source_id) or '0') > 0 then
    redis.call('HINCRBY', KEYS[5], 'spent:' .. source_id, -1)
  end
  if skipped then
    redis.call('HINCRBY', KEYS[4], 'requests_skipped', 1)
    redis.call('HINCRBY', KEYS[4], 'skipped:' .. labeler, 1)
    return
  end
  if to_clear[labeler] then  -- a label earlier in this call cleared it: clear it first
    redis.call('HDEL', KEYS[6], labeler)
    redis.call('HDEL', KEYS[7], labeler)
    to_clear[labeler] = nil
  end
  cleared[labeler] = nil
  redis.call('HINCRBY', KEYS[4], 'requests_failed', 1)
  redis.call('HINCRBY', KEYS[4], 'failed:' .. labeler, 1)
  local streak = redis.call('HINCRBY', KEYS[6], labeler, 1)
  if streak >= after then
    local wait = math.min(longest, first * 2 ^ (streak - after))
    redis.call('HSET', KEYS[7], labeler, string.format('%.3f', now + wait))
  end
end

local function apply_label(fh, rh, fkey, lkey, rkey, labeler, label, entry, member, kind)
  release(labeler, member, kind)
  -- the requests hash got the frame's TTL when the request was made (ask.lua); the labels
  -- list gets it with its first label
  redis.call('HSET', rkey, labeler, 'done:' .. entry)
  set(rh, labeler, 'done:' .. entry)
  local item = cjson.encode({labeler, tonumber(label)})
  local length = redis.call('RPUSH', lkey, item)
  if length == 1 then
    local ttl = redis.call('TTL', fkey)
    if ttl > 0 then redis.call('EXPIRE', lkey, ttl) end
    pushed[lkey] = {}  -- the list is what this call pushes: its view needs no LRANGE
  end
  if pushed[lkey] then table.insert(pushed[lkey], item) end
  set(fh, 'n_labels', tostring(redis.call('HINCRBY', fkey, 'n_labels', 1)))
  n_applied = n_applied + 1
  applied[labeler] = (applied[labeler] or 0) + 1
  if not cleared[labeler] then  -- once per labeler and batch: a failure later sets it again
    to_clear[labeler] = true
    cleared[labeler] = true
  end
end

local function is_registered(labeler)
  if not registered then  -- every labeler of the batch in one HMGET
    registered = {}
    local names = {}
    for i = 1, n do
      local lab = ARGV[4 + 5 * (i - 1) + 1]
      if registered[lab] == nil then
        registered[lab] = false
        names[#names + 1] = lab
      end
    end
    for s = 1, #names, 1000 do
      local slice = {}
      for k = s, math.min(#names, s + 999) do slice[#slice + 1] = names[k] end
      local found = redis.call('HMGET', KEYS[1], unpack(slice))
      for k, lab in ipairs(slice) do registered[lab] = found[k] ~= false end
    end
  end
  return registered[labeler]
end

for i = 1, n do
  local fkey, lkey, rkey = KEYS[7 + 3 * i - 2], KEYS[7 + 3 * i - 1], KEYS[7 + 3 * i]
  local j = 4 + 5 * (i - 1)
  local labeler, label, entry = ARGV[j + 1], ARGV[j + 2], ARGV[j + 3]
  local member, rid = ARGV[j + 4], ARGV[j + 5]
  local skipped = label == 'skipped'
  local failure = label == 'failed' or skipped
  local rh = read(rkey)
  local req = get(rh, labeler)
  local kind, ref = nil, nil
  if req then
    local colon = string.find(req, ':', 1, true)
    if colon then
      kind, ref = string.sub(req, 1, colon - 1), string.sub(req, colon + 1)
    else
      kind, ref = req, ''
    end
  end
  -- an empty request id never matches (nor does a request stored without one)
  local matches = rid ~= '' and ref == rid
  local status
  if kind == 'done' then
    if ref == entry then status = 'redelivered' else status = 'duplicate' end
  elseif kind == 'failed' and failure and matches then
    status = 'redelivered'
  else
    local fh = read(fkey)
    local state = get(fh, 'state')
    local pending = (kind == 'out' or kind == 'late') and matches
    if not state then
      status = 'unknown_frame'
    elseif not is_registered(labeler) then
      status = 'unknown_labeler'
    elseif failure and pending then
      -- settled whether or not the frame is still open: the budget is given back either way
      apply_failure(rh, rkey, labeler, member, kind, rid, skipped, get(fh, 'source_id'))
      status = 'failed'
    elseif state ~= 'open' then
      status = 'finalised'
    elseif not req then
      status = 'unsolicited'
    elseif pending then
      apply_label(fh, rh, fkey, lkey, rkey, labeler, label, entry, member, kind)
      status = 'applied'
    elseif kind == 'failed' and matches then
      status = 'after_failure'
    else
      status = 'mismatch'
    end
  end
  statuses[i] = status
  if status == 'applied' or status == 'failed' or status == 'redelivered' then
    last_for_frame[fkey] = i
  end
end
if #released > 0 then call_many('ZREM', KEYS[2], released) end
local unloaded = {}
for labeler in pairs(unload) do unloaded[#unloaded + 1] = labeler end
if #unloaded > 0 then
  local loads = {}
  for s = 1, #unloaded, 1000 do
    local slice = {}
    for k = s, math.min(#unloaded, s + 999) do slice[#slice + 1] = unloaded[k] end
    local got = redis.call('HMGET', KEYS[3], unpack(slice))
    for k, labeler in ipairs(slice) do loads[labeler] = tonumber(got[k] or '0') end
  end
  for _, labeler in ipairs(unloaded) do
    local by = math.min(loads[labeler], unload[labeler])
    if by > 0 then redis.call('HINCRBY', KEYS[3], labeler, -by) end
  end
end
local clearing = {}
for labeler in pairs(to_clear) do clearing[#clearing + 1] = labeler end
if #clearing > 0 then
  call_many('HDEL', KEYS[6], clearing)
  call_many('HDEL', KEYS[7], clearing)
end
if n_applied > 0 then
  redis.call('HINCRBY', KEYS[4], 'labels_applied', n_applied)
  for labeler, count in pairs(applied) do
    redis.call('HINCRBY', KEYS[4], 'labels:' .. labeler, count)
  end
end
local waiting = KEYS[7 + 3 * n + 1]
local function left_waiting(fh, requests)
  if get(fh, 'state') ~= 'open' then return false end
  for k = 2, #requests, 2 do
    if string.sub(requests[k], 1, 4) == 'out:' then return false end
  end
  return true
end
local views = {}
local due = {}
for fkey, i in pairs(last_for_frame) do
  local fh, requests = read(fkey), read(KEYS[7 + 3 * i]).flat
  table.insert(views, i)
  table.insert(views, fh.flat)
  local lkey = KEYS[7 + 3 * i - 1]
  local labels = pushed[lkey]
  if not labels then
    -- n_labels counts the list (both change together, here): at 0 it is empty
    labels = get(fh, 'n_labels') == '0' and {} or redis.call('LRANGE', lkey, 0, -1)
  end
  table.insert(views, labels)
  table.insert(views, requests)
  if left_waiting(fh, requests) then
    local j = 4 + 5 * (i - 1)
    local labeler, member = ARGV[j + 1], ARGV[j + 4]  -- member: "<frame_id>|<labeler id>"
    due[#due + 1] = ARGV[1]
    due[#due + 1] = string.sub(member, 1, #member - #labeler - 1)
  end
end
if #due > 0 then call_many('ZADD', waiting, due, {'NX'}) end
return {statuses, views, redis.call('HMGET', KEYS[5], 'limit', 'spent')}
