-- Record label requests, one per ask, in order, each reserving one label of budget.
-- One call takes the asks of one aggregator step (their frames span hash slots, as those of
-- apply_labels.lua do); each ask is granted or refused on its own, as if asked alone.
-- KEYS[1] = budget hash         (<prefix>:budget; fields limit (absent: unlimited), spent)
-- KEYS[2] = leases zset         (<prefix>:leases)
-- KEYS[3] = load hash           (<prefix>:load)
-- KEYS[4] = stats hash          (<prefix>:stats)
-- KEYS[5] = waiting zset        (<prefix>:waiting; a granted request takes the frame out: its
--                               lease in KEYS[2] is how a sweep finds it now)
-- KEYS[6] = unsent hash         (<prefix>:unsent; journal token -> the call's granted requests,
--                               until the aggregator has enqueued them: store/unsent.py)
-- then for ask i (i = 1..n), two keys of its frame:
-- KEYS[6 + 2i - 1] = frame hash          (<prefix>:{f:<id>}:frame)
-- KEYS[6 + 2i]     = frame requests hash (<prefix>:{f:<id>}:requests)
-- ARGV[1] = max outstanding requests per frame
-- ARGV[2] = labels one source may spend at most (aggregator.budget_per_source; 0: no share of
--           its own): counted in the budget hash's field spent:<source id> (the frame hash's
--           source_id), given back with a failure by apply_labels.lua; -1 (a Redis Cluster's
--           shard): at most the budget hash's limit:<source id>, what the shard leased of it
-- ARGV[3] = journal token ('': none): the granted requests are written to KEYS[6] under it,
--           as JSON {"t": ARGV[4], "r": [[frame id, labeler id, request id], ...]}, so that a
--           sweep can send them if the aggregator stops before enqueueing them
-- ARGV[4] = now (unix seconds), the journal entry's time
-- then six per ask i (j = 4 + 6(i - 1)):
-- ARGV[j + 1] = labeler id
-- ARGV[j + 2] = n_labels the decision to ask was made on
-- ARGV[j + 3] = lease deadline (unix seconds)
-- ARGV[j + 4] = lease member "<frame_id>|<labeler id>"
-- ARGV[j + 5] = request id (unguessable; the label must bring it back to be applied)
-- ARGV[j + 6] = frame id
-- The request is stored as "out:<request id>" (core.records.RequestState). The requests hash
-- gets the frame's TTL with its first request.
-- Returns one answer per ask: ok, or why not: not_open, stale, asked, inflight, budget,
-- source_budget (its source spent its share).
-- Redis calls: three per ask (HMGET, HGETALL, HSET; TTL and EXPIRE with a frame's first
-- request), and per call one HMGET and HINCRBY of the budget, one ZADD of the leases, one
-- ZREM of the waiting set, one HINCRBY of the stats, one HINCRBY of the load per labeler and
-- one HSET of the journal.
local max_out = tonumber(ARGV[1])
local share = tonumber(ARGV[2])
local by_source, source_granted = {}, {}  -- source id -> spent, and granted in this call
local cap = {}  -- source id -> what it may spend here
local token = ARGV[3]
local journal = {}
local n = (#KEYS - 6) / 2
local budget = redis.call('HMGET', KEYS[1], 'limit', 'spent')
local limit = budget[1] and tonumber(budget[1])
local spent = tonumber(budget[2] or '0')
local granted = 0
local leases, waiting, load = {}, {}, {}
local answers = {}
for i = 1, n do
  local fkey, rkey = KEYS[6 + 2 * i - 1], KEYS[6 + 2 * i]
  local j = 4 + 6 * (i - 1)
  local labeler = ARGV[j + 1]
  local head = redis.call('HMGET', fkey, 'state', 'n_labels', 'source_id')
  local src = head[3] or ''
  if share ~= 0 and by_source[src] == nil then
    by_source[src] = tonumber(redis.call('HGET', KEYS[1], 'spent:' .. src) or '0')
    cap[src] = share > 0 and share or tonumber(redis.call('HGET', KEYS[1], 'limit:' .. src) or '0')
  end
  local answer
  if head[1] ~= 'open' then
    answer = 'not_open'
  elseif tonumber(head[2] or '0') ~= tonumber(ARGV[j + 2]) then
    answer = 'stale'
  else
    local requests = redis.call('HGETALL', rkey)
    local out, asked = 0, false
    for k = 1, #requests, 2 do
      if requests[k] == labeler then asked = true end
      if string.sub(requests[k + 1], 1, 4) == 'out:' then out = out + 1 end
    end
    if asked then
      answer = 'asked'
    elseif out >= max_out then
      answer = 'inflight'
    elseif limit and spent >= limit then
      answer = 'budget'
    elseif share ~= 0 and by_source[src] >= cap[src] then
      answer = 'source_budget'
    else
      spent = spent + 1
      if share ~= 0 then
        by_source[src] = by_source[src] + 1
        source_granted[src] = (source_granted[src] or 0) + 1
      end
      granted = granted + 1
      redis.call('HSET', rkey, labeler, 'out:' .. ARGV[j + 5])
      if #requests == 0 then
        local ttl = redis.call('TTL', fkey)
        if ttl > 0 then redis.call('EXPIRE', rkey, ttl) end
      end
      leases[#leases + 1] = ARGV[j + 3]
      leases[#leases + 1] = ARGV[j + 4]
      waiting[#waiting + 1] = ARGV[j + 6]
      load[labeler] = (load[labeler] or 0) + 1
      journal[#journal + 1] = {ARGV[j + 6], labeler, ARGV[j + 5]}
      answer = 'ok'
    end
  end
  answers[i] = answer
end
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], 'spent', granted)
  for src, count in pairs(source_granted) do
    redis.call('HINCRBY', KEYS[1], 'spent:' .. src, count)
  end
  redis.call('ZADD', KEYS[2], unpack(leases))
  for labeler, count in pairs(load) do redis.call('HINCRBY', KEYS[3], labeler, count) end
  redis.call('HINCRBY', KEYS[4], 'requests', granted)
  redis.call('ZREM', KEYS[5], unpack(waiting))
  if token ~= '' then
    redis.call('HSET', KEYS[6], token, cjson.encode({t = ARGV[4], r = journal}))
  end
end
return answers
