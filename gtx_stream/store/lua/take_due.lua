-- The sweep's share of the frames left waiting: take the open frames due in the waiting zset,
-- oldest due first, at most ARGV[2] of them, and stamp each again with now, so that a frame
-- still waiting after this decision comes after the others that are due on the next sweep.
-- KEYS[1] = waiting zset (<prefix>:waiting; frame id -> unix seconds from which it is due)
-- KEYS[2] = open zset    (<prefix>:open)
-- ARGV[1] = now (unix seconds)
-- ARGV[2] = the most frames taken
-- An entry whose frame is not open any more (not in KEYS[2]) is removed, not returned.
-- Returns the ids of the due open frames taken, oldest due first.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local taken = {}
for _, fid in ipairs(due) do
  if redis.call('ZSCORE', KEYS[2], fid) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], fid)
    taken[#taken + 1] = fid
  else
    redis.call('ZREM', KEYS[1], fid)
  end
end
return taken
