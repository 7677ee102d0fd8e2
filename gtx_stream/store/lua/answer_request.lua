-- A person's answer (or skip) to a request they hold: check the request is still in their
-- hand, take it out and send the entry, in one step, so an answer sent twice (a replay, a
-- second tab) reaches the labels stream once.
-- KEYS[1] = the person's hand hash          (<prefix>:person:<id>:hand; token -> JSON item)
-- KEYS[2] = labels stream                   (<prefix>:labels)
-- KEYS[3] = the person's answered-today counter (<prefix>:person:<id>:answered:<YYYY-MM-DD>)
-- ARGV[1] = the request's token on the page
-- ARGV[2] = the hand's value for the token, as the caller read it (must still be there)
-- ARGV[3] = "1" when the answer counts as answered today (a label, a gold answer), else "0"
--           (a skip, a frame decided meanwhile)
-- ARGV[4] = TTL of the counter (seconds)
-- ARGV[5..] = the labels-stream entry's fields, name then value (core.records.LabelEntry);
--             none: nothing is sent (a gold frame's answer goes to the gold book instead)
-- Returns the entry id (or "" when no entry was sent), taken when the token is not in the hand
-- any more (answered already, or dropped), gone when it holds another value now.
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 'taken' end
if held ~= ARGV[2] then return 'gone' end
redis.call('HDEL', KEYS[1], ARGV[1])
local id = ''
if #ARGV > 4 then
  local fields = {}
  for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
  id = redis.call('XADD', KEYS[2], '*', unpack(fields))
end
if ARGV[3] == '1' then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
end
return id
