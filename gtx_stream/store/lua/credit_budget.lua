-- Raise one shard's budget limit to what the pool leased it in all (Redis Cluster layout).
-- KEYS[1] = the shard's budget hash (<prefix>:{s<k>}:budget; fields limit, spent, as the
--           budget hash of one Redis, which ask.lua and open_frame.lua spend from)
-- ARGV[1] = leased:<shard> of the pool after a lease (lease_budget.lua)
-- The limit only ever rises (a late credit of an older total changes nothing), so crediting
-- twice, or out of order, is safe. Returns the limit after it.
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '0')
local leased = tonumber(ARGV[1])
if leased > limit or not redis.call('HGET', KEYS[1], 'limit') then
  limit = math.max(limit, leased)
  redis.call('HSET', KEYS[1], 'limit', limit)
end
return limit
