--- Module paths for the Lua benchmarks: the source tree's lua/ and the
-- build's cache.core (ACACHE_BUILD_DIR, default build/ beside bench/).
--   dofile(DIR .. "/setup.lua")(DIR)   -- DIR: the folder of bench/
return function(dir)
  local build = os.getenv("ACACHE_BUILD_DIR") or (dir .. "/../build")
  package.path = table.concat({ dir .. "/../lua/?.lua", dir .. "/../lua/?/init.lua",
    package.path }, ";")
  package.cpath = table.concat({ build .. "/lua/?.so", build .. "/bench/?.so", package.cpath }, ";")
end
