-- The script examples/host_readme.c (the README's C host) runs as
-- scripts/game.lua: its main chunk runs in a coroutine, so it may wait.
local cache = require "cache"
local runtime = require "cache.runtime"

local assets = cache.AsyncCache{ maxsize = 64 }
local function load_asset(name)        -- stands for reading a file
  runtime.sleep(0.01)
  return "asset:" .. name
end

-- Three entities want the same texture in the same frame: one load.
local got = runtime.gather(
  function() return assets:get("hero.png", load_asset) end,
  function() return assets:get("hero.png", load_asset) end,
  function() return assets:get("hero.png", load_asset) end)
print(("game: %s for 3 entities, %d load"):format(got[1][1], assets:get_metrics().loads))
