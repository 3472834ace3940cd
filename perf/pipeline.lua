-- pipeline.lua: GETs of one preloaded key, DEPTH requests per write.
--
-- request() returns DEPTH concatenated requests; wrk (4.x and wrk2) counts
-- the requests in the string it is given and waits for that many responses
-- before it sends the next batch, so each connection keeps DEPTH requests in
-- flight.  wrk counts each response as a request in its totals; wrk2's -R
-- rate is responses per second.  done() (summary.lua) prints the summary:
-- line the bench scripts read.
--
--   wrk -t1 -c64 -d10s -s perf/pipeline.lua http://127.0.0.1:8080 [-- DEPTH [KEY]]
-- Defaults: $RC_DEPTH or 16, $RC_KEY or "bench".

local depth = tonumber(os.getenv("RC_DEPTH") or "16")
local key = os.getenv("RC_KEY") or "bench"
local batch

function init(args)
   if args[1] then depth = tonumber(args[1]) end
   if args[2] then key = args[2] end
   local one = wrk.format("GET", "/cache/" .. key)
   batch = string.rep(one, depth)
end

function request()
   return batch
end

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "summary.lua")
