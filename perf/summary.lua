-- summary.lua: the done() of get.lua, pipeline.lua and write-stall.lua, so
-- the bench scripts parse one line whether wrk 4 or wrk2 ran them:
--
--   summary: requests=N duration_us=D bytes=B non2xx=E errors=S samples=H p50=.. p90=.. p99=.. p99.9=.. max=..
--
-- Latencies are microseconds from the load generator's own histogram.  Under
-- wrk (closed loop) a sample is a request's round trip, one per pipelined
-- batch, and wrk 4 then pads the histogram with its own rough correction for
-- coordinated omission (synthetic samples at each latency less multiples of
-- the mean interval between a connection's responses), which makes its
-- pipelined percentiles meaningless.  Under wrk2 -R it is the corrected latency: from the moment the
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
   -- wrk 4 answers 0 when its rank falls outside [min, max], which its own
   -- rough correction (stats_correct, applied before done() runs) causes by
   -- adding samples below min; no sample is 0 us, so 0 is printed "n/a".
   local function p(q)
      local v = math.min(latency:percentile(q), latency.max)
      return v > 0 and string.format("%d", v) or "n/a"
   end
   io.write(string.format(
      "summary: requests=%d duration_us=%d bytes=%d non2xx=%d errors=%d samples=%d " ..
      "p50=%s p90=%s p99=%s p99.9=%s max=%d\n",
      summary.requests, summary.duration, summary.bytes, e.status,
      e.connect + e.read + e.write + e.timeout, #latency,
      p(50), p(90), p(99), p(99.9), latency.max))
end
