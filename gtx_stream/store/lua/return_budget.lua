-- Take back into the budget pool what one shard gave back (give_back_budget.lua): the second
-- half of a give-back (Redis Cluster layout), in the pool's slot.
-- KEYS[1] = budget pool hash (<prefix>:budget; fields spent (labels leased out, less those
--           taken back), spent:<source> (the same of a source's share), returned:<shard> and
--           returned:<shard>:<source> (what the pool took back from that shard in all))
-- ARGV[1] = shard number
-- ARGV[2], ARGV[3], ... = pairs: what ('' the budget, or a source id), the shard's returned
--           total of it (its returned, or returned:<source>, after its give-back)
-- For each pair: taken = total - returned:<shard>[:<source>]; when above 0, that field is set
-- to the total and spent (or spent:<source>) falls by taken, so the pool may lease it again.
-- Idempotent: a total taken back already, or an older one, changes nothing; a later total
-- takes back what a crash between the two halves left out.
-- Returns the labels taken back in all.
local taken = 0
for i = 2, #ARGV, 2 do
  local sfx = ARGV[i] == '' and '' or (':' .. ARGV[i])
  local field = 'returned:' .. ARGV[1] .. sfx
  local delta = tonumber(ARGV[i + 1]) - tonumber(redis.call('HGET', KEYS[1], field) or '0')
  if delta > 0 then
    redis.call('HSET', KEYS[1], field, ARGV[i + 1])
    redis.call('HINCRBY', KEYS[1], 'spent' .. sfx, -delta)
    taken = taken + delta
  end
end
return taken
