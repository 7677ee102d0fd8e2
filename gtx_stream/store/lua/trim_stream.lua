-- Trim a stream with XTRIM MINID, never past an entry that a consumer group has not
-- acknowledged: a group keeps its oldest pending entry (XPENDING), or, with nothing pending,
-- everything after its last-delivered-id. Every group of the stream counts, a user's own too.
-- KEYS[1] = the stream (<prefix>:labels, <prefix>:opened or <prefix>:final)
-- KEYS[2] = optional: the open zset (<prefix>:open, score opened_at); nothing from the oldest
--           open frame's opened_at minus ARGV[3] on is trimmed
-- ARGV[1] = age in ms: entries older than this (by Redis's clock) may go; '' : no age rule
-- ARGV[2] = length: entries beyond the newest this many may go; 0: no length rule
-- ARGV[3] = clock skew in ms between the ingesters' clocks and Redis's (with KEYS[2])
-- ARGV[4] = the length rule reads at most this many entries, so trims at most this many a call
-- ARGV[5] = a group that must exist, else nothing is trimmed (nobody read the stream yet);
--           '' : none needed
-- Returns {trimmed, held_by}: the number of entries removed, and the name of the group whose
-- unacknowledged entries stopped the trim short of the rules ('' if none did).
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then return {0, ''} end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return {tonumber(ms), tonumber(seq)}
end
local function fields(flat)
  local out = {}
  for i = 1, #flat, 2 do out[flat[i]] = flat[i + 1] end
  return out
end
local function less(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end

-- what the rules would trim: entries with an id below target
local target = nil
if ARGV[1] ~= '' then
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  target = {now_ms - tonumber(ARGV[1]), 0}
end
local maxlen = tonumber(ARGV[2])
if maxlen > 0 then
  local excess = redis.call('XLEN', stream) - maxlen
  if excess > 0 then
    local n = math.min(excess, tonumber(ARGV[4]))
    local items = redis.call('XRANGE', stream, '-', '+', 'COUNT', n + 1)
    local first_kept = parse(items[#items][1])
    if target == nil or less(target, first_kept) then target = first_kept end
  end
end
if target == nil then return {0, ''} end

-- what the groups allow
local bound, held_by = target, ''
local found = ARGV[5] == ''
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = fields(g)
  if info['name'] == ARGV[5] then found = true end
  local keep
  if tonumber(info['pending']) > 0 then
    keep = parse(redis.call('XPENDING', stream, info['name'])[2])
  else
    local last = parse(info['last-delivered-id'])
    keep = {last[1], last[2] + 1}
  end
  if less(keep, bound) then bound, held_by = keep, info['name'] end
end
if not found then return {0, ''} end

if KEYS[2] then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #oldest > 0 then
    local ms = math.max(0, math.floor(tonumber(oldest[2]) * 1000 - tonumber(ARGV[3])))
    if less({ms, 0}, bound) then bound, held_by = {ms, 0}, '' end
  end
end
local function id(a) return string.format('%.0f-%.0f', a[1], a[2]) end
local trimmed = redis.call('XTRIM', stream, 'MINID', id(bound))
if held_by ~= '' then
  -- the group's position is below the target: did it keep an entry the rules would trim?
  local waiting = redis.call('XRANGE', stream, id(bound), '(' .. id(target), 'COUNT', 1)
  if #waiting == 0 then held_by = '' end
end
return {trimmed, held_by}
