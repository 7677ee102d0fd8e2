-- Move one dead letter back onto the labels stream, exactly once: the label entry is added
-- and the dead letter deleted in one step, so a crash never loses it nor requeues it twice,
-- and two runs at once requeue it once.
-- KEYS[1] = dead stream   (<prefix>:dead)
-- KEYS[2] = labels stream (<prefix>:labels)
-- KEYS[3] = stats hash    (<prefix>:stats; counts requeued)
-- ARGV[1] = the dead letter's entry id on the dead stream
-- ARGV[2..] = field, value pairs of the label entry (core.records.LabelEntry.to_fields)
-- Returns the new labels-stream entry id, or "gone" (nothing written) when the dead letter
-- is not on the dead stream any more (requeued or removed meanwhile).
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 'gone' end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'requeued', 1)
return id
