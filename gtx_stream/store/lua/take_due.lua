-- The sweep's share of the frames left waiting: take the open frames due in the waiting zset,
-- oldest due first, at most ARGV[2] of them, and push each back by its stall delay. A frame
-- the sweep then asks or finalises leaves the set (ask.lua, finalise.lua); one still waiting
-- (stalled: nobody could be asked, nothing ends it yet) is not decided again every sweep.
-- The delay grows with how long the frame has stalled, counted from its opening or from the
-- last wake (ARGV[3]: the sweeper saw something a stalled frame waits on change, and made them
-- all due, wake_waiting.lua), whichever is later: a frame stalled for a seconds is due again
-- after max(a, ARGV[4]) * (1 + spread), at most ARGV[5] * (3 + spread) / 4, where spread, in
-- [0, 1), is fixed per frame by its id, so that frames that stalled together come due apart
-- (and, at the cap, drift apart: three quarters to all of ARGV[5]). Each delay is so 2 to 3
-- times the one before, up to the cap.
-- KEYS[1] = waiting zset (<prefix>:waiting; frame id -> unix seconds from which it is due)
-- KEYS[2] = open zset    (<prefix>:open; frame id -> opened_at)
-- ARGV[1] = now (unix seconds)
-- ARGV[2] = the most frames taken
-- ARGV[3] = since (unix seconds): the sweeper's last wake; 0 when none
-- ARGV[4] = the shortest delay (seconds; aggregator.sweep_seconds)
-- ARGV[5] = the longest delay (seconds; aggregator.stall_max_seconds); 0: no delay, each frame
--           taken is stamped due at now (it comes after the others that are due next sweep)
-- An entry whose frame is not open any more (not in KEYS[2]) is removed, not returned.
-- Returns the ids of the due open frames taken, oldest due first.
local now = tonumber(ARGV[1])
local since = tonumber(ARGV[3] or '0')
local shortest, longest = tonumber(ARGV[4] or '0'), tonumber(ARGV[5] or '0')
local function spread(fid)  -- from the first 32 bits of the id's SHA-1: uniform, fixed per id
  return tonumber(string.sub(redis.sha1hex(fid), 1, 8), 16) / 4294967296
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local taken = {}
for _, fid in ipairs(due) do
  local opened = redis.call('ZSCORE', KEYS[2], fid)
  if opened then
    local delay = 0
    if longest > 0 then
      local age = now - math.max(tonumber(opened), since)
      local s = spread(fid)
      delay = math.min(longest * (3 + s) / 4, math.max(shortest, age) * (1 + s))
    end
    redis.call('ZADD', KEYS[1], 'XX', now + delay, fid)
    taken[#taken + 1] = fid
  else
    redis.call('ZREM', KEYS[1], fid)
  end
end
return taken
