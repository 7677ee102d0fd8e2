-- Renew or give up the ownership of one shard, only by its owner (pipeline/aggregate/shards.py).
-- Taking an unowned shard is a plain SET NX PX; this script is for the owner alone, so an
-- aggregator whose ownership ran out (and was taken by another) cannot renew or delete it.
-- KEYS[1] = owner key  <prefix>:shard:<k>:owner (STRING: the owner's consumer name, with a TTL)
-- ARGV[1] = consumer name of the caller
-- ARGV[2] = new TTL in milliseconds (renew), or 0 (give the shard up: the key is deleted)
-- Returns 1 when the caller owned the shard (renewed or given up), 0 when it did not.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('DEL', KEYS[1])
end
return 1
