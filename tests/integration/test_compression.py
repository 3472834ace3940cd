#!/usr/bin/env python3
"""Compression off the shard loop (issue 8, docs/fastlane.md), over real
sockets: a PUT of a compressible value is answered with the identity
representation stored, and its br and gzip variants arrive later from the
compression workers.  Every answer is correct meanwhile: the identity with
the ETag the PUT answered until the variants are installed, then br and
gzip on request, under the same tags; an overwrite or a delete before the
variants are ready never gets them; the counters and histograms are in
/stats and /metrics; --compress-threads 0 makes no variants.

Whether a GET sent right after its PUT finds the variants depends on how
fast the workers are, so those checks accept both states and check each
fully (the state seen is noted).  That a PUT's answer never waits for
compression is shown deterministically by tests/unit/test_cache.c, which
polls the workers itself.

usage: test_compression.py [path/to/ringcached]
"""

from harness import (Server, build_request, free_port, keys_per_shard, run_binary, run_main,
                     show, stats, stats_delta, wait_for)
from content_codings import decode, json_value, random_value, settle, text_value

FLAGS = ["--shards", "2", "--memory", "64M"]


def coding_of(r):
    ce = r.header("Content-Encoding")
    return "identity" if ce is None else ce.lower()


def stamp_of(tag):
    """The write's half of an ETag (docs/fastlane.md)."""
    return tag[9:17] if tag else tag


def check_answer(c, r, value, put_tag, want, what):
    """r answers a GET of `value` (PUT answered `put_tag`) with Accept-
    Encoding for `want`: before the variants, the identity with the PUT's
    tag and no Vary; after, `want` with Vary and the PUT's stamp.  Returns
    the state seen."""
    if r.status != 200:
        c.check(False, "%s -> 200" % what, show(r))
        return None
    got = coding_of(r)
    try:
        body = decode(r.body, r.header("Content-Encoding"))
    except ValueError as e:
        c.check(False, "%s: the body decodes" % what, str(e))
        return None
    c.check(body == value, "%s: %s body is the value" % (what, got),
            "%d bytes, want %d" % (len(body), len(value)))
    tag = r.header("ETag")
    if got == "identity" and not r.has_token("Vary", "Accept-Encoding"):
        c.eq(tag, put_tag, "%s (no variants yet): the PUT's ETag" % what)
        return "before"
    c.eq(got, want, "%s (variants in): %s" % (what, want))
    c.check(r.has_token("Vary", "Accept-Encoding"), "%s (variants in): Vary" % what, show(r))
    c.eq(stamp_of(tag), stamp_of(put_tag), "%s (variants in): the PUT's write in the ETag" % what)
    return "after"


def answered_first(c, srv):
    c.section("a PUT is answered before its variants; every GET is correct meanwhile")
    keys = keys_per_shard("first-", 2, 1)
    for s in (0, 1):
        key = keys[s][0]
        value = text_value(1 << 20)     # ~30 ms of compression
        with srv.connect() as conn:
            # PUT and GET in one send: the GET is parsed right after the PUT
            conn.send(build_request("PUT", "/cache/" + key, value,
                                    [("Content-Type", "text/plain")])
                      + build_request("GET", "/cache/" + key,
                                      headers=[("Accept-Encoding", "br")]))
            w = conn.read_response()
            c.eq(w.status, 201, "shard %d: PUT 1 MB text -> 201" % s)
            put_tag = w.header("ETag")
            g = conn.read_response()
            state = check_answer(c, g, value, put_tag, "br", "shard %d: GET br right after" % s)
            c.note("shard %d: the GET right after its PUT saw the value %s its variants"
                   % (s, "before" if state == "before" else "with"))
        c.check(settle(srv), "shard %d: the variants are made" % s)
        r = srv.request("GET", "/cache/" + key, headers=[("Accept-Encoding", "br")])
        c.eq(check_answer(c, r, value, put_tag, "br", "shard %d: GET br after" % s), "after",
             "shard %d: br served once the variants are in" % s)
        r = srv.request("GET", "/cache/" + key, headers=[("Accept-Encoding", "gzip")])
        c.eq(check_answer(c, r, value, put_tag, "gzip", "shard %d: GET gzip after" % s), "after",
             "shard %d: gzip served once the variants are in" % s)
        r = srv.request("GET", "/cache/" + key)
        c.eq(r.header("ETag"), put_tag, "shard %d: the identity keeps the PUT's ETag" % s)
        c.check(r.has_token("Vary", "Accept-Encoding") and r.body == value,
                "shard %d: identity after: the value, Vary" % s, show(r))
        r = srv.request("GET", "/cache/" + key, headers=[("If-None-Match", put_tag)])
        c.eq(r.status, 304, "shard %d: If-None-Match: the PUT's ETag -> 304" % s)


def overwritten_first(c, srv):
    c.section("overwritten or deleted before the variants: they never land on the new value")
    big = text_value(1 << 20)
    new = json_value(4096, seed=21)
    with srv.connect() as conn:
        conn.send(build_request("PUT", "/cache/ow", big, [("Content-Type", "text/plain")])
                  + build_request("PUT", "/cache/ow", new, [("Content-Type", "application/json")])
                  + build_request("PUT", "/cache/gone", big, [("Content-Type", "text/plain")])
                  + build_request("DELETE", "/cache/gone"))
        statuses = [conn.read_response().status for _ in range(4)]
    c.eq(statuses, [201, 204, 201, 204], "PUT, PUT over it, PUT, DELETE")
    c.check(settle(srv), "the variants are made (or discarded)")
    for ae in ("br", "gzip", None):
        h = [] if ae is None else [("Accept-Encoding", ae)]
        r = srv.request("GET", "/cache/ow", headers=h)
        try:
            body = decode(r.body, r.header("Content-Encoding"))
        except ValueError as e:
            body = str(e).encode()
        c.check(r.status == 200 and body == new and coding_of(r) == (ae or "identity"),
                "overwritten key, Accept-Encoding %s: the new value, as %s"
                % (ae, ae or "identity"), show(r))
        c.eq(r.header("Content-Type"), "application/json",
             "overwritten key, Accept-Encoding %s: the new Content-Type" % ae)
    r = srv.request("GET", "/cache/gone", headers=[("Accept-Encoding", "br")])
    c.eq(r.status, 404, "deleted key stays deleted after its compression finished")


def counters(c, srv):
    c.section("/stats and /metrics: what the compression did, and the loop's busy stretches")
    before = stats(srv)["total"]
    srv.request("PUT", "/cache/cnt-text", json_value(8192, seed=3),
                [("Content-Type", "application/json")])
    srv.request("PUT", "/cache/cnt-noise", random_value(8192, seed=4),
                [("Content-Type", "application/json")])
    srv.request("PUT", "/cache/cnt-small", b"x" * 100)             # below --compress-min
    srv.request("PUT", "/cache/cnt-png", json_value(8192, seed=5),   # compressed type
                [("Content-Type", "image/png")])
    c.check(settle(srv), "the variants are made")
    after = stats(srv)["total"]
    d = {k: after[k] - before[k] for k in ("zip_queued", "zip_queue_full", "zip_retried",
                                           "zip_installed", "zip_stale", "zip_unprofitable",
                                           "zip_refused")}
    c.eq(d["zip_queued"] - d["zip_retried"] + d["zip_queue_full"], 2,
         "two of the four values qualify for variants (queued, or found the queue full)")
    c.eq(d["zip_installed"] + d["zip_unprofitable"] + d["zip_stale"] + d["zip_refused"],
         d["zip_queued"], "every queued value came back once")
    c.eq(after["zip_pending"], 0, "zip_pending is 0 once settled")
    c.eq(d["zip_installed"], 1, "the JSON value got variants")
    c.eq(d["zip_unprofitable"], 1, "the random bytes did not pay")
    lat = after["latency_ns"]
    c.check(lat["zip_lag"]["count"] >= 1 and lat["zip_lag"]["p50"] > 0,
            "latency_ns.zip_lag: PUT to install, recorded", repr(lat["zip_lag"]))
    c.check(lat["loop_busy"]["count"] > 0 and lat["loop_busy"]["max"] > 0,
            "latency_ns.loop_busy: the loop's busy stretches, recorded", repr(lat["loop_busy"]))
    for s in stats(srv)["per_shard"]:
        c.check("zip_queued" in s and "loop_busy" in s["latency_ns"],
                "per_shard %d has the compression counters and loop_busy" % s["shard"])
    m = srv.request("GET", "/metrics").body.decode()
    for name in ("ringcached_zip_queued_total", "ringcached_zip_queue_full_total",
                 "ringcached_zip_retried_total",
                 "ringcached_zip_installed_total", "ringcached_zip_stale_total",
                 "ringcached_zip_unprofitable_total", "ringcached_zip_refused_total",
                 "ringcached_zip_pending{", 'kind="loop_busy"', 'kind="zip_lag"'):
        c.check(name in m, "/metrics has %s" % name)


def burst(c, srv):
    c.section("64 KB PUTs back to back: every one answered, the queue bounded, "
              "the values that found it full get variants later")
    value = json_value(65536, seed=8)
    n = 60
    before = stats(srv)["total"]
    with srv.connect() as conn:
        for i in range(0, n, 10):
            conn.send(b"".join(build_request("PUT", "/cache/burst-%d" % k, value,
                                             [("Content-Type", "application/json")])
                               for k in range(i, i + 10)))
            for k in range(i, i + 10):
                r = conn.read_response()
                c.check(r.status == 201, "burst PUT %d -> 201" % k, show(r))
    c.check(settle(srv), "the variants are made")
    after = stats(srv)["total"]
    queued = after["zip_queued"] - before["zip_queued"]
    full = after["zip_queue_full"] - before["zip_queue_full"]
    retried = after["zip_retried"] - before["zip_retried"]
    installed = after["zip_installed"] - before["zip_installed"]
    c.eq(queued - retried + full, n, "each of the %d values queued at once or found the queue "
         "full" % n)
    c.eq(retried, full, "every one that found it full was queued later (fewer than 64)")
    c.check(installed == queued, "each queued one installed (distinct keys: nothing stale)",
            repr(stats_delta(before, after)))
    c.note("%d of %d queued at once, %d found the queue full and were queued later"
           % (queued - retried, n, full))
    with_br = 0
    for k in range(n):
        r = srv.request("GET", "/cache/burst-%d" % k, headers=[("Accept-Encoding", "br")])
        try:
            ok = r.status == 200 and decode(r.body, r.header("Content-Encoding")) == value
        except ValueError:
            ok = False
        c.check(ok, "burst-%d reads back" % k, show(r))
        with_br += coding_of(r) == "br"
    c.eq(with_br, n, "all of them are served as br in the end")


def no_workers(c):
    c.section("--compress-threads 0: no variants, nothing queued")
    with Server(FLAGS + ["--compress-threads", "0"], checks=c).start() as srv:
        value = json_value(8192, seed=9)
        srv.request("PUT", "/cache/k", value, [("Content-Type", "application/json")])
        r = srv.request("GET", "/cache/k", headers=[("Accept-Encoding", "br, gzip")])
        c.check(r.status == 200 and r.body == value and coding_of(r) == "identity"
                and r.header("Vary") is None, "GET br, gzip -> the identity, no Vary", show(r))
        t = stats(srv)["total"]
        c.eq((t["zip_queued"], t["zip_queue_full"], t["zip_pending"]), (0, 0, 0),
             "no job counted")
        c.check("compression" not in srv.log_text(), "no compression line in the startup log",
                srv.log_text()[-300:])


def flags(c):
    c.section("flags and the startup line")
    with Server(FLAGS, checks=c).start() as srv:
        c.check(wait_for(lambda: "compression: 1 thread, SCHED_IDLE, unpinned" in srv.log_text(),
                         5.0), "default: one unpinned worker at SCHED_IDLE (logged)",
                srv.log_text()[-400:])
    listen = "127.0.0.1:%d" % free_port()
    status, out = run_binary(["--listen", listen, "--compress-threads", "65"])
    c.eq(status, 2, "--compress-threads 65 -> exit 2")
    c.check("--compress-threads" in out, "... naming the flag", out)
    status, out = run_binary(["--listen", listen, "--compress-cpuset", "1000"])
    c.eq(status, 2, "--compress-cpuset with a CPU the process cannot use -> exit 2")
    c.check("--compress-cpuset" in out, "... naming the flag", out)


def body(c):
    with Server(FLAGS, checks=c).start() as srv:
        answered_first(c, srv)
        overwritten_first(c, srv)
        counters(c, srv)
        burst(c, srv)
    no_workers(c)
    flags(c)


if __name__ == "__main__":
    run_main("test_compression", body)
