-- Write labeler records that were fitted from what the hash held, where it still holds that.
-- KEYS[1] = labelers hash (<prefix>:labelers)
-- ARGV = triples: labeler id, the record the fit read (JSON), the new record (JSON)
-- A record that changed since the fit read it (a person's gold answer rewrote it, an operator
-- set it, or gold paused and unregistered the person) is left as it is: a fit never undoes a
-- newer record, nor registers a labeler again. Returns the ids written.
local written = {}
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[1], id) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], id, ARGV[i + 2])
    written[#written + 1] = id
  end
end
return written
