-- Lease a chunk of one source's share of the budget to one shard (Redis Cluster layout, with
-- aggregator.budget_per_source): the share is global, each shard spends from its own lease.
-- KEYS[1] = budget pool hash (<prefix>:budget; fields spent:<source> (the source's labels
--           leased out to shards, less what they gave back: return_budget.lua),
--           leased:<shard>:<source> (leased to that shard in all))
-- ARGV[1] = shard number
-- ARGV[2] = source id
-- ARGV[3] = labels needed now
-- ARGV[4] = labels a lease takes at most (a chunk)
-- ARGV[5] = shard count
-- ARGV[6] = the source's share (aggregator.budget_per_source, above 0)
-- As lease_budget.lua does for the whole budget: grants what is needed, or more, up to a chunk
-- but no more than a shard's share of what the source has left, never more than it has left;
-- spent:<source> and leased:<shard>:<source> grow by it, so the shards' leases of a source
-- (less what they gave back) never add up to more than its share. Returns {granted,
-- leased:<shard>:<source> after it}; credit_budget.lua raises the shard's limit:<source> to
-- the total less the shard's returned:<source>, in the shard's slot.
local src = ARGV[2]
local field = 'leased:' .. ARGV[1] .. ':' .. src
local left = tonumber(ARGV[6]) - tonumber(redis.call('HGET', KEYS[1], 'spent:' .. src) or '0')
local share = math.floor(left / math.max(1, tonumber(ARGV[5])))
local wanted = math.max(tonumber(ARGV[3]), math.min(tonumber(ARGV[4]), share))
local granted = math.min(wanted, left)
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], 'spent:' .. src, granted)
  return {granted, redis.call('HINCRBY', KEYS[1], field, granted)}
end
return {0, tonumber(redis.call('HGET', KEYS[1], field) or '0')}
