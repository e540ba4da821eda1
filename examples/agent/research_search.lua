-- Use case 3, a research agent: repeated searches are cache hits, and a
-- confused agent that keeps repeating the same search is stopped by loop
-- detection (max_tool_repeats) before it runs away.
-- Run with `acache examples/agent/research_search.lua`.
local agent = require "agent_cache"
local runtime = require "cache.runtime"

-- The search API and the web, in process: they count their calls.
local search_api, http = { calls = 0 }, { calls = 0 }
function search_api.search(query)
  search_api.calls = search_api.calls + 1
  runtime.sleep(0.001)
  return { query = query, urls = { "https://example.org/a", "https://example.org/b" } }
end
function http.get(url)
  http.calls = http.calls + 1
  runtime.sleep(0.001)
  return "<html>" .. url .. "</html>"
end

local search_web = agent.AgentCache{ resource = "search", scope = "global", ttl = 600,
                                     name = "search_web" }(search_api.search)
local fetch_page = agent.AgentCache{ resource = "page", scope = "global", ttl = 600,
                                     name = "fetch_page" }(http.get)

local session <close> = agent.AgentCacheSession{
  max_tool_repeats = 3, max_execution_depth = 20, on_loop = "raise" }

local results = search_web("async python caching")          -- fetched
results = search_web("async python caching")                -- a hit
for _, url in ipairs(results.urls) do fetch_page(url) end   -- two pages fetched
search_web("async python caching")                          -- the third: a hit, allowed
print(("3 searches, %d search API call, %d page fetches"):format(search_api.calls, http.calls))

-- The fourth identical search: stopped, the tool does not run.
local ok, err = pcall(search_web, "async python caching")
print(ok, agent.AgentLoopDetectedError.is(err), err.kind, err.tool)
print(tostring(err))
local m = session:get_metrics()
print(("search API calls: %d; session: calls %d, hits %d, misses %d, loop_detections %d")
  :format(search_api.calls, m.calls, m.hits, m.misses, m.loop_detections))
