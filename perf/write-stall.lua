-- write-stall.lua: the two clients of bench-write-stall.sh.
--
-- Without $RC_PUT_SIZE: GET of one preloaded key ($RC_KEY, default "bench"),
-- a prebuilt request as in get.lua.  With $RC_PUT_SIZE=BYTES: PUTs of
-- generated JSON records (the shape bench-compress.c uses: ids, names,
-- numbers, dates; compresses to ~20 %) of exactly BYTES, Content-Type
-- application/json, cycling over $RC_KEYS (default 16) keys "stall-1".. with
-- a different value each.  Either way done() (summary.lua) prints the
-- summary: line the script reads (latencies in microseconds, the load
-- generator's own histogram; under wrk2 -R, corrected for the schedule).
--
--   wrk -t1 -c1 -d10s -s perf/write-stall.lua http://127.0.0.1:8080
--   wrk2 -R 2000 -t1 -c1 -d10s -s perf/write-stall.lua http://127.0.0.1:8080
--   RC_PUT_SIZE=4096 wrk -t1 -c1 -d12s -s perf/write-stall.lua http://127.0.0.1:8080

local key = os.getenv("RC_KEY") or "bench"
local put_size = tonumber(os.getenv("RC_PUT_SIZE") or "0")
local nkeys = tonumber(os.getenv("RC_KEYS") or "16")
local role = put_size > 0 and "put" or "get"
local reqs = {}
local i = 0

local words = { "the", "of", "and", "to", "in", "is", "that", "for", "cache",
   "request", "server", "value", "memory", "shard", "ring", "client",
   "response", "header", "latency", "through", "between", "because",
   "performance", "measurement", "connection", "compression", "several" }
local tags = { "red", "green", "blue", "admin", "beta", "eu", "us", "mobile",
   "web", "premium" }

local function pick(t) return t[math.random(#t)] end

local function gen_json(n)
   local parts, len = { "[" }, 1
   while len + 256 < n do
      local r = string.format(
         '{"id":%d,"user":"user_%d","email":"user_%d@example.com",' ..
         '"score":%d.%02d,"active":%s,"tags":["%s","%s"],' ..
         '"created":"2024-%02d-%02dT%02d:%02d:%02dZ","note":"%s %s %s"}',
         100000 + math.random(0, 899999), math.random(0, 99999),
         math.random(0, 99999), math.random(0, 99), math.random(0, 99),
         math.random(2) == 1 and "true" or "false", pick(tags), pick(tags),
         math.random(12), math.random(28), math.random(0, 23),
         math.random(0, 59), math.random(0, 59), pick(words), pick(words),
         pick(words))
      if #parts > 1 then r = "," .. r end
      parts[#parts + 1] = r
      len = len + #r
   end
   parts[#parts + 1] = string.rep(" ", n - 1 - len) .. "]"
   return table.concat(parts)
end

if role == "get" then
   wrk.method = "GET"
   wrk.path = "/cache/" .. key
end

function init(args)
   if role == "put" then
      math.randomseed(4)
      local headers = { ["Content-Type"] = "application/json" }
      for k = 1, nkeys do
         reqs[k] = wrk.format("PUT", "/cache/stall-" .. k, headers, gen_json(put_size))
      end
   end
end

if role == "put" then
   function request()
      i = i % nkeys + 1
      return reqs[i]
   end
end

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "summary.lua")
