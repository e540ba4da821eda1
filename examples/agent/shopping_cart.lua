-- Use case 1, an e-commerce shopping agent: read tools cached by resource,
-- writes invalidating the cart before they run.
-- Run with `acache examples/agent/shopping_cart.lua`.
local agent = require "agent_cache"
local runtime = require "cache.runtime"

-- The shop's API, in process: it counts its calls.
local shop_api = { calls = { get_cart = 0, get_product = 0, add_to_cart = 0, checkout = 0 } }
local carts, prices = { user_1 = {} }, { laptop = 999, mouse = 25 }
local function total(items)
  local t = 0
  for _, p in ipairs(items) do t = t + prices[p] end
  return t
end
function shop_api.get_cart(user_id)
  shop_api.calls.get_cart = shop_api.calls.get_cart + 1
  runtime.sleep(0.001) -- the network
  local items = table.move(carts[user_id], 1, #carts[user_id], 1, {})
  return { user = user_id, items = items, total = total(items) }
end
function shop_api.get_product(id)
  shop_api.calls.get_product = shop_api.calls.get_product + 1
  runtime.sleep(0.001)
  return { id = id, price = prices[id] }
end
function shop_api.add_to_cart(user_id, product_id)
  shop_api.calls.add_to_cart = shop_api.calls.add_to_cart + 1
  runtime.sleep(0.001)
  table.insert(carts[user_id], product_id)
  return true
end
function shop_api.checkout(user_id)
  shop_api.calls.checkout = shop_api.calls.checkout + 1
  runtime.sleep(0.001)
  local order = { user = user_id, total = total(carts[user_id]) }
  carts[user_id] = {}
  return order
end

local get_cart = agent.AgentCache{ resource = "cart", scope = "global", ttl = 120,
                                   name = "get_cart" }(shop_api.get_cart)
local get_product = agent.AgentCache{ resource = "product", scope = "global", ttl = 300,
                                      name = "get_product" }(shop_api.get_product)
local add_to_cart = agent.AgentCacheInvalidator{ resource = "cart", scope = "global",
                                                 name = "add_to_cart" }(shop_api.add_to_cart)
local checkout = agent.AgentCacheInvalidator{ resource = "cart", scope = "global",
                                              name = "checkout" }(shop_api.checkout)

local session <close> = agent.AgentCacheSession{ loop_detection = false }
local cart = get_cart("user_1")                 -- fetched
print(("cart: %d items, total %d"):format(#cart.items, cart.total))
cart = get_cart("user_1")                       -- a hit: no API call
local product = get_product("laptop")           -- fetched
print(("product: %s at %d"):format(product.id, product.price))
add_to_cart("user_1", "laptop")                 -- invalidates every cart entry, then adds
cart = get_cart("user_1")                       -- fetched again: the right total
print(("cart: %d items, total %d"):format(#cart.items, cart.total))
get_product("laptop")                           -- a hit: products were not invalidated
local order = checkout("user_1")                -- invalidates the cart again
print(("order: total %d"):format(order.total))
cart = get_cart("user_1")
print(("cart after checkout: %d items"):format(#cart.items))

local c = shop_api.calls
print(("API calls: get_cart %d, get_product %d, add_to_cart %d, checkout %d")
  :format(c.get_cart, c.get_product, c.add_to_cart, c.checkout))
local m = session:get_metrics()
print(("session: hits %d, misses %d, invalidations %d, hit_rate %.3f")
  :format(m.hits, m.misses, m.invalidations, m.hit_rate))
