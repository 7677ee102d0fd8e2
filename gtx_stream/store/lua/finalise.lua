-- Finalise frames, each exactly once: mark it final and publish its record, atomically.
-- One call takes the finals of one aggregator step (its frames span hash slots, as those of
-- apply_labels.lua do); each frame is finalised or refused on its own.
-- KEYS[1] = open zset      (<prefix>:open)
-- KEYS[2] = final stream   (<prefix>:final)
-- KEYS[3] = stats hash     (<prefix>:stats)
-- KEYS[4] = waiting zset   (<prefix>:waiting; a finalised frame leaves it, as it leaves KEYS[1])
-- then for frame i (i = 1..n), four keys of its own:
-- KEYS[4i + 1] = frame hash     (<prefix>:{f:<id>}:frame)
-- KEYS[4i + 2] = frame image    (<prefix>:{f:<id>}:jpeg)
-- KEYS[4i + 3] = frame labels   (<prefix>:{f:<id>}:labels)
-- KEYS[4i + 4] = frame requests (<prefix>:{f:<id>}:requests)
-- ARGV[1] = grace seconds: the frame's own keys (hash, labels, requests) expire this long
--           after finalisation, or sooner if their TTL says so; 0: they keep their TTL
-- ARGV[2] = m, the number of fields of a final record
-- ARGV[3..2+m] = the field names (core.records.FinalRecord.to_fields), the same for every
--           frame; the value of image_expires_at is filled in here: the record's
--           finalised_at plus the image's TTL (empty: image gone)
-- then for frame i, m + 2 values (a = 2 + m + (i - 1)(m + 2)):
-- ARGV[a + 1] = frame id
-- ARGV[a + 2] = n_labels the decision was made on
-- ARGV[a + 3..a + 2 + m] = the record's values, in the order of the names: written to the
--           final stream and copied into the frame hash
-- The image is kept with its TTL: the exporter deletes it once it is on disk.
-- Counts frames_finalised, and frames_finalised:<source id> per source (the frame id's part
-- before its last '-': ids are <source id>-<frame index>).
-- Redis calls per frame: HMGET, PTTL, XADD, HSET, and with a grace TTL + 3 EXPIRE (when the
-- frame's TTL is longer); per call one ZREM of each set and the HINCRBYs of the stats.
-- Returns one answer per frame: its final-stream entry id, or not_open (not open any more)
-- or stale (it got another label since the decision).
local grace, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local names, expires_at, finalised_at = {}, nil, nil
for j = 1, m do
  names[j] = ARGV[2 + j]
  if names[j] == 'image_expires_at' then expires_at = j end
  if names[j] == 'finalised_at' then finalised_at = j end
end
local answers = {}
local gone = {}  -- frames finalised here: out of KEYS[1] and KEYS[4], once at the end
local finalised = 0
local per_source = {}
for i = 1, (#KEYS - 4) / 4 do
  local fkey, ikey = KEYS[4 * i + 1], KEYS[4 * i + 2]
  local a = 2 + m + (i - 1) * (m + 2)
  local head = redis.call('HMGET', fkey, 'state', 'n_labels')
  if head[1] ~= 'open' then
    answers[i] = 'not_open'
  elseif tonumber(head[2] or '0') ~= tonumber(ARGV[a + 2]) then
    answers[i] = 'stale'
  else
    local record = {}
    for j = 1, m do
      record[2 * j - 1] = names[j]
      record[2 * j] = ARGV[a + 2 + j]
    end
    if expires_at then
      local pttl = redis.call('PTTL', ikey)
      local at = finalised_at and tonumber(record[2 * finalised_at])
      record[2 * expires_at] = (pttl > 0 and at) and string.format('%.3f', at + pttl / 1000)
        or ''
    end
    local id = redis.call('XADD', KEYS[2], '*', unpack(record))
    record[2 * m + 1], record[2 * m + 2], record[2 * m + 3], record[2 * m + 4] =
      'state', 'final', 'final_id', id
    redis.call('HSET', fkey, unpack(record))
    gone[#gone + 1] = ARGV[a + 1]
    if grace > 0 then
      -- the labels list and the requests hash got the frame's TTL (apply_labels.lua,
      -- ask.lua): the frame hash's TTL stands for all three
      local ttl = redis.call('TTL', fkey)
      if ttl == -1 or ttl > grace then
        for _, key in ipairs({fkey, KEYS[4 * i + 3], KEYS[4 * i + 4]}) do
          redis.call('EXPIRE', key, grace)
        end
      end
    end
    finalised = finalised + 1
    local source = string.match(ARGV[a + 1], '^(.*)%-%d+$')
    if source then per_source[source] = (per_source[source] or 0) + 1 end
    answers[i] = id
  end
end
if finalised > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('ZREM', KEYS[4], unpack(gone))
  redis.call('HINCRBY', KEYS[3], 'frames_finalised', finalised)
end
for source, n in pairs(per_source) do
  redis.call('HINCRBY', KEYS[3], 'frames_finalised:' .. source, n)
end
return answers
