-- Lease a chunk of the global label budget to one shard (Redis Cluster layout).
-- KEYS[1] = budget pool hash (<prefix>:budget; fields limit (absent: unlimited), spent (labels
--           leased out to shards), leased:<shard> (labels leased to that shard in all))
-- ARGV[1] = shard number
-- ARGV[2] = labels wanted
-- Grants min(wanted, limit - spent): spent and leased:<shard> grow by it, so the shards' leases
-- never add up to more than the limit. Returns {granted, leased:<shard> after it}, or {-1, 0}
-- when the budget is unlimited. The shard's own budget hash is raised to leased:<shard> by
-- credit_budget.lua, in its own slot; a crash between the two loses nothing: the next credit
-- of that shard raises it to the total.
local limit = redis.call('HGET', KEYS[1], 'limit')
if not limit then
  return {-1, 0}
end
local field = 'leased:' .. ARGV[1]
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local granted = math.min(tonumber(ARGV[2]), tonumber(limit) - spent)
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], 'spent', granted)
  return {granted, redis.call('HINCRBY', KEYS[1], field, granted)}
end
return {0, tonumber(redis.call('HGET', KEYS[1], field) or '0')}
