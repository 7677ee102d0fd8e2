-- Record one person's answer to a gold item once, and publish their new accuracy with it.
-- KEYS[1] = gold hash            (<prefix>:gold; gold id -> truth; on a Redis Cluster every key
--                                  here is <prefix>:{registry}:..., one slot)
-- KEYS[2] = person's answers     (<prefix>:gold:answers:<person>; gold id -> label)
-- KEYS[3] = gold scores hash     (<prefix>:gold:scores; person -> JSON with "total")
-- KEYS[4] = labelers hash        (<prefix>:labelers)
-- KEYS[5] = paused hash          (<prefix>:paused)
-- KEYS[6] = live zset            (<prefix>:live)
-- KEYS[7] = gold counters hash   (<prefix>:stats; on a Redis Cluster <prefix>:{registry}:gold:stats)
-- ARGV[1] = person (labeler id)
-- ARGV[2] = gold id
-- ARGV[3] = label (0 or 1)
-- ARGV[4] = the person's gold total the estimates below were computed from
-- ARGV[5], ARGV[6] = score JSON if the answer is right, if it is wrong
-- ARGV[7], ARGV[8] = labelers record JSON if right, if wrong ('': not qualified, not written)
-- ARGV[9], ARGV[10] = paused record JSON if right, if wrong ('': not paused by this answer)
-- The estimates are Beta posteriors, computed in Python (Lua has no Beta quantile) for both
-- outcomes from the total in ARGV[4]; when another answer of the same person got in first,
-- the total differs and nothing is written ('retry': the caller computes them again).
-- A person paused once stays paused (the first record is kept), leaves the live set and is
-- unregistered (no longer in the labelers hash), whatever they answer next.
-- Returns {status, right (1/0), total after}; status: recorded, duplicate (this person
-- answered this item before: nothing changes), unknown (no such gold item), retry.
local person = ARGV[1]
local truth = redis.call('HGET', KEYS[1], ARGV[2])
if not truth then return {'unknown', 0, 0} end
local score = redis.call('HGET', KEYS[3], person)
local total = 0
if score then total = tonumber(cjson.decode(score)['total']) end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  local given = redis.call('HGET', KEYS[2], ARGV[2])
  return {'duplicate', given == truth and 1 or 0, total}
end
if total ~= tonumber(ARGV[4]) then return {'retry', 0, total} end
local right = ARGV[3] == truth
local pick = right and 0 or 1
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], person, ARGV[5 + pick])
if ARGV[9 + pick] ~= '' or redis.call('HEXISTS', KEYS[5], person) == 1 then
  redis.call('HSETNX', KEYS[5], person, ARGV[9 + pick])
  redis.call('ZREM', KEYS[6], person)
  redis.call('HDEL', KEYS[4], person)
elseif ARGV[7 + pick] ~= '' then
  redis.call('HSET', KEYS[4], person, ARGV[7 + pick])
end
redis.call('HINCRBY', KEYS[7], 'gold_answers', 1)
redis.call('HINCRBY', KEYS[7], 'gold_answers:' .. person, 1)
return {'recorded', right and 1 or 0, total + 1}
