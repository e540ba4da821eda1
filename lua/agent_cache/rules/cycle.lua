--- Rule "cycle": the last 2k calls are one sequence of k calls twice,
-- for 2 <= k <= max_cycle_length, and the sequence is not one call
-- repeated (that is the "repeats" rule's business).  Calls are compared
-- by key (the tool and its arguments), so check_stock("SKU-42") ->
-- update_stock("SKU-42", -1) twice is a cycle, while reading a cart
-- between adding different products is not.  Message: "Cycle detected:
-- check_stock -> update_stock" (the sequence's tools, oldest first).
--
-- Cost: nothing beyond one lookup unless the current call is already in
-- the window; then, for each k, one comparison of the current call with
-- the call k before it, and more only when they are equal (keys are
-- interned strings when short: a pointer comparison).  The window bounds
-- k: 2k <= history_size.
local concat = table.concat

local _M = { name = "cycle" }

function _M.new(session)
  local maxk = session.max_cycle_length
  if 2 * maxk > session.history_size then maxk = session.history_size // 2 end
  if maxk < 2 then return nil end
  return function(call, history)
    local cur = call.key
    -- A call that is alone in the window cannot close a cycle: the common
    -- case costs one lookup.
    if (history.counts[cur] or 0) < 2 then return nil end
    local n = history.n
    local kmax = n // 2
    if kmax > maxk then kmax = maxk end
    if kmax < 2 then return nil end
    local keys, pos, size = history.keys, history.pos, history.capacity
    for k = 2, kmax do
      local p = pos - k
      if p < 1 then p = p + size end
      if keys[p] == cur then
        -- the remaining k - 1 pairs, and whether the sequence has two
        -- different calls
        local same, varied = true, false
        local a, b = pos, p
        for _ = 2, k do
          a, b = a - 1, b - 1
          if a < 1 then a = a + size end
          if b < 1 then b = b + size end
          local ka = keys[a]
          if ka ~= keys[b] then same = false break end
          if ka ~= cur then varied = true end
        end
        if same and varied then
          local names, tools = {}, history.tools
          for i = k - 1, 0, -1 do
            local q = pos - i
            if q < 1 then q = q + size end
            names[#names + 1] = tools[q]
          end
          return "Cycle detected: " .. concat(names, " -> ")
        end
      end
    end
  end
end

return _M
