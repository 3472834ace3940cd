-- get.lua: GET of one preloaded key, one request per round trip.
--
-- wrk and wrk2 alike: the request is fixed before the run starts (no
-- request() function), so wrk sends a prebuilt string and runs no Lua per
-- request.  The key comes from the first script argument or $RC_KEY
-- (default "bench"); bench-http.sh preloads it with a 100-byte value.
-- done() (summary.lua) prints the summary: line the bench scripts read.
--
--   wrk -t1 -c64 -d10s -s perf/get.lua http://127.0.0.1:8080 [-- KEY]
--   wrk2 -R 20000 -t1 -c64 -d10s -s perf/get.lua http://127.0.0.1:8080 [-- KEY]

local key = os.getenv("RC_KEY") or "bench"

wrk.method = "GET"
wrk.path = "/cache/" .. key

function init(args)
   if args[1] then
      wrk.path = "/cache/" .. args[1]
   end
end

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "summary.lua")
