-- A script whose main chunk waits for an event nobody sets: acache reports
-- where it waits and exits with status 1 (see cmake/Tests.cmake).
local runtime = require "cache.runtime"

local ready = runtime.event()
print("waiting for an event nobody sets")
ready:wait()
print("never printed")
