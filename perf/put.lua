-- put.lua: PUTs of 100-byte values over a set of keys, one per round trip.
--
-- The requests are built once in init() and request() only walks the list,
-- so the cost per request is a table lookup.  Keys are "<prefix><thread
-- counter>-<i>", so threads write disjoint keys.
--
--   wrk -t1 -c64 -d10s -s perf/put.lua http://127.0.0.1:8080 [-- NKEYS [SIZE]]
-- Defaults: $RC_KEYS or 1000 keys, $RC_SIZE or 100 bytes per value.

local nkeys = tonumber(os.getenv("RC_KEYS") or "1000")
local size = tonumber(os.getenv("RC_SIZE") or "100")
local reqs = {}
local i = 0

-- Each thread runs this chunk in its own Lua state; the address of a fresh
-- table tells the threads apart without wrk 4's setup()/thread API.
local tag = string.match(tostring({}), "0x(%x+)") or tostring(math.random(1e9))

function init(args)
   if args[1] then nkeys = tonumber(args[1]) end
   if args[2] then size = tonumber(args[2]) end
   local body = string.rep("v", size)
   for k = 1, nkeys do
      reqs[k] = wrk.format("PUT", "/cache/put-" .. tag .. "-" .. k, {}, body)
   end
end

function request()
   i = i % nkeys + 1
   return reqs[i]
end
