-- Something a stalled frame waits on changed (a labeler registered, came live, or back from a
-- backoff or a pause; new parameters; the budget's limit; the budget ran out): make the waiting
-- frames that take_due.lua pushed back due now, so that the next sweeps decide them again.
-- At most ARGV[3] a call, in due order after ARGV[2], so that the sweeper spreads a wake of
-- many frames over its sweeps, each call going on from where the one before stopped.
-- KEYS[1] = waiting zset (<prefix>:waiting; frame id -> unix seconds from which it is due)
-- ARGV[1] = now (unix seconds): the new due time
-- ARGV[2] = wake the frames due strictly after this (unix seconds): now on a wake's first
--           call, then the due time the call before returned
-- ARGV[3] = the most frames woken
-- Returns {frames woken, the old due time of the last one woken ('' when none)}: fewer woken
-- than ARGV[3] means the wake is complete.
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'WITHSCORES',
                         'LIMIT', 0, tonumber(ARGV[3]))
local n = #later / 2
if n == 0 then return {0, ''} end
local batch = {}
for i = 1, #later, 2 do
  batch[#batch + 1] = ARGV[1]
  batch[#batch + 1] = later[i]
  if #batch >= 1000 then
    redis.call('ZADD', KEYS[1], 'XX', unpack(batch))
    batch = {}
  end
end
if #batch > 0 then redis.call('ZADD', KEYS[1], 'XX', unpack(batch)) end
return {n, later[#later]}
