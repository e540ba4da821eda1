--- Module paths for the Lua scripts of bench/ (and fuzz/): their own
-- folder, the source tree's lua/, and the build's C modules (cache.core,
-- bench/floor) from ACACHE_BUILD_DIR, default build/ in the source tree.
-- Under acache, cache.core is preloaded; the paths serve lua5.4.
--   local DIR = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
--   dofile(DIR .. "/setup.lua")(DIR)      -- DIR: the script's folder
return function(dir)
  local build = os.getenv("ACACHE_BUILD_DIR") or (dir .. "/../build")
  package.path = table.concat({ dir .. "/?.lua", dir .. "/../lua/?.lua",
    dir .. "/../lua/?/init.lua", package.path }, ";")
  package.cpath = table.concat({ build .. "/lua/?.so", build .. "/bench/?.so", package.cpath }, ";")
end
