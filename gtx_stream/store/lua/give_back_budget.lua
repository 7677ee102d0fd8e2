-- Give back what one shard holds of the budget (or of sources' shares) beyond what its open
-- frames keep: the first half of a give-back (Redis Cluster layout), in the shard's slot.
-- KEYS[1] = the shard's budget hash (<prefix>:{s<k>}:budget; fields limit, spent, returned;
--           with source shares also limit:<source>, spent:<source>, returned:<source>)
-- KEYS[2] = the shard's open frames zset (<prefix>:{s<k>}:open; members <source id>-<index>)
-- ARGV[1] = labels kept for each open frame (aggregator.reserve_per_frame: what open_frame.lua
--           keeps for each, so that a give-back never takes an open frame's reserve)
-- ARGV[2..] = what to give back: '' (the budget) or a source id (the shard's lease of its share)
-- For each: given = limit - spent - kept, kept = ARGV[1] x the shard's open frames (of that
-- source); when above 0, the limit falls by it and returned rises by it in one step, so the
-- shard can no longer spend it and credit_budget.lua (limit = leased - returned) never
-- restores it. Nothing where the limit is absent (unlimited). Outstanding requests are in spent
-- already: only what nothing was asked with goes back.
-- Returns {given, returned after it} for each of ARGV[2..], flattened, in order. The pool takes
-- the labels back with return_budget.lua, given the returned total: a crash before it loses
-- them until this shard's next give-back brings its total again (never overspends).
local keep = tonumber(ARGV[1])
local open_of = nil -- source id -> open frames of it, counted once, when a source is asked for
local out = {}
for i = 2, #ARGV do
  local sfx = ARGV[i] == '' and '' or (':' .. ARGV[i])
  local b = redis.call('HMGET', KEYS[1], 'limit' .. sfx, 'spent' .. sfx, 'returned' .. sfx)
  local given, returned = 0, tonumber(b[3] or '0')
  if b[1] then
    local n_open
    if ARGV[i] == '' then
      n_open = redis.call('ZCARD', KEYS[2])
    else
      if not open_of then
        open_of = {}
        for _, fid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
          local src = string.match(fid, '^(.+)%-%d+$') or fid
          open_of[src] = (open_of[src] or 0) + 1
        end
      end
      n_open = open_of[ARGV[i]] or 0
    end
    given = tonumber(b[1]) - tonumber(b[2] or '0') - n_open * keep
    if given > 0 then
      redis.call('HINCRBY', KEYS[1], 'limit' .. sfx, -given)
      returned = redis.call('HINCRBY', KEYS[1], 'returned' .. sfx, given)
    else
      given = 0
    end
  end
  out[#out + 1] = given
  out[#out + 1] = returned
end
return out
