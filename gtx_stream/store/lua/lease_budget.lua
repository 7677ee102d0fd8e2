-- Lease a chunk of the global label budget to one shard (Redis Cluster layout).
-- KEYS[1] = budget pool hash (<prefix>:budget; fields limit (absent: unlimited), spent (labels
--           leased out to shards, less what they gave back: return_budget.lua), leased:<shard>
--           (labels leased to that shard in all))
-- ARGV[1] = shard number
-- ARGV[2] = labels needed now
-- ARGV[3] = labels a lease takes at most (a chunk)
-- ARGV[4] = shard count
-- Grants what is needed, or more: up to a chunk, but no more than a shard's share of what is
-- left (left / shard count), so that leases shrink as the pool runs low; never more than is
-- left. spent and leased:<shard> grow by it, so the shards' leases, less what they gave back,
-- never add up to more than the limit.
-- Returns {granted, leased:<shard> after it}, or {-1, 0} when the budget is unlimited. The
-- shard's own budget hash is raised to leased:<shard> (less what it gave back) by
-- credit_budget.lua, in its own slot; a crash between the two loses nothing: the next credit
-- of that shard raises it to the total.
local limit = redis.call('HGET', KEYS[1], 'limit')
if not limit then
  return {-1, 0}
end
local field = 'leased:' .. ARGV[1]
local left = tonumber(limit) - tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local share = math.floor(left / math.max(1, tonumber(ARGV[4])))
local wanted = math.max(tonumber(ARGV[2]), math.min(tonumber(ARGV[3]), share))
local granted = math.min(wanted, left)
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], 'spent', granted)
  return {granted, redis.call('HINCRBY', KEYS[1], field, granted)}
end
return {0, tonumber(redis.call('HGET', KEYS[1], field) or '0')}
