-- Raise one shard's budget limit to what the pool leased it in all, less what it gave back
-- (Redis Cluster layout).
-- KEYS[1] = the shard's budget hash (<prefix>:{s<k>}:budget; fields limit, spent, as the
--           budget hash of one Redis, which ask.lua and open_frame.lua spend from, and returned
--           (given back to the pool, give_back_budget.lua); with source shares also
--           limit:<source>, spent:<source>, returned:<source>)
-- ARGV[1] = leased:<shard> of the pool after a lease (lease_budget.lua), or
--           leased:<shard>:<source> (lease_source_budget.lua)
-- ARGV[2] = the field raised: limit, or limit:<source> (absent: limit)
-- The limit becomes ARGV[1] less the field's returned (returned, or returned:<source>), and
-- only ever rises (a late credit of an older total changes nothing), so crediting twice, or
-- out of order, is safe, and a credit never restores what the shard gave back. Returns the
-- limit after it.
local field = ARGV[2] or 'limit'
local raw = redis.call('HGET', KEYS[1], field)
local limit = tonumber(raw or '0')
local returned = tonumber(redis.call('HGET', KEYS[1], 'returned' .. string.sub(field, 6)) or '0')
local leased = tonumber(ARGV[1]) - returned
if leased > limit or not raw then
  limit = math.max(limit, leased)
  redis.call('HSET', KEYS[1], field, limit)
end
return limit
