-- An open frame whose state is gone (its TTL ran out before it was finalised) leaves the
-- open set once, with a dead letter saying why.
-- KEYS[1] = frame hash  (<prefix>:{f:<id>}:frame)
-- KEYS[2] = open zset   (<prefix>:open)
-- KEYS[3] = dead stream (<prefix>:dead)
-- KEYS[4] = stats hash  (<prefix>:stats)
-- KEYS[5] = waiting zset (<prefix>:waiting; the frame leaves it too)
-- ARGV[1] = frame id
-- ARGV[2..] = field, value pairs of the dead letter (core.records.DeadLetter.to_fields)
-- Returns 1 when dropped, 0 when the frame still exists or was dropped already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZREM', KEYS[5], ARGV[1])
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
local letter = {}
for i = 2, #ARGV do letter[#letter + 1] = ARGV[i] end
redis.call('XADD', KEYS[3], '*', unpack(letter))
redis.call('HINCRBY', KEYS[4], 'dead', 1)
return 1
