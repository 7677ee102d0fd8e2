-- Remove the consumers of a group that have nothing pending and have been idle a long time
-- (those of dead aggregators, once their pending entries were claimed). Checking and removing
-- in one script: a consumer that reads in between cannot lose its pending entries.
-- KEYS[1] = the stream (<prefix>:labels or <prefix>:opened)
-- ARGV[1] = the group
-- ARGV[2] = the calling consumer (never removed)
-- ARGV[3] = idle in ms above which a consumer with nothing pending is removed
-- Returns the names of the consumers removed (none when the stream or group does not exist).
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local function fields(flat)
  local out = {}
  for i = 1, #flat, 2 do out[flat[i]] = flat[i + 1] end
  return out
end
local exists = false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  if fields(g)['name'] == ARGV[1] then exists = true end
end
if not exists then return {} end
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = fields(c)
  if info['name'] ~= ARGV[2] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
