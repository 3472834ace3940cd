-- summary.lua: the done() of get.lua, pipeline.lua and write-stall.lua, so
-- the bench scripts parse one line whether wrk 4 or wrk2 ran them:
--
--   summary: requests=N duration_us=D non2xx=E errors=S samples=H p50=.. p90=.. p99=.. p99.9=.. max=..
--
-- Latencies are microseconds from the load generator's own histogram.  Under
-- wrk (closed loop) a sample is a request's round trip, one per pipelined
-- batch.  Under wrk2 -R it is the corrected latency: from the moment the
-- constant-rate schedule says the request should have been sent, so a stall
-- is charged to every request it held back; every response is a sample,
-- pipelined ones too.  samples is wrk2's histogram count (wrk2 resets the
-- histogram after calibrating for 10 s + 5 ms per connection of a thread, so
-- a longer run counts only what follows); wrk 4's `#latency` is not that
-- count, and the scripts show samples only for wrk2 runs.
--
-- A script loads it with
--   dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "summary.lua")
-- which finds it beside the script whatever the current directory.

function done(summary, latency, requests)
   local e = summary.errors
   -- wrk2's HdrHistogram answers a percentile with the top of its bucket
   -- (3 significant digits), which can exceed the exact max: cap it there.
   local function p(q) return math.min(latency:percentile(q), latency.max) end
   io.write(string.format(
      "summary: requests=%d duration_us=%d non2xx=%d errors=%d samples=%d " ..
      "p50=%d p90=%d p99=%d p99.9=%d max=%d\n",
      summary.requests, summary.duration, e.status,
      e.connect + e.read + e.write + e.timeout, #latency,
      p(50), p(90), p(99), p(99.9), latency.max))
end
