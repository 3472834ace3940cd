#!/usr/bin/env python3
"""Fill leases on one instance (issue 9, docs/cache-aside.md): a miss hands
out a token, later missers wait on the server for the fill, every way a
lease ends, 409 for a fill that lost its lease, waiters in a pipeline.

No timing thresholds: a waiter is known to wait when /stats counts it
(lease_waiters), and is known to be answered when its answer arrives.

usage: test_leases.py [path/to/ringcached]
"""

import re
import signal
import time

from resp_harness import RespServer
from harness import (IO_TIMEOUT, Conn, Server, build_request, keys_per_shard, run_main,
                     stats)

LEASE = [("X-Cache-Fill", "lease")]
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")


def tot(srv):
    return stats(srv)["total"]


def wait_for(srv, field, want, what, c, timeout=IO_TIMEOUT):
    """Polls /stats until total[field] == want (a condition, not a sleep)."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = tot(srv)[field]
        if got == want:
            return c.eq(got, want, what)
        time.sleep(0.01)
    return c.eq(got, want, what)


def lease_get(conn, key, method="GET"):
    return conn.roundtrip(method, "/cache/" + key, headers=LEASE)


def send_lease_get(conn, key):
    conn.send(build_request("GET", "/cache/" + key, headers=LEASE))


def put(conn, key, value, token=None):
    h = [("X-Cache-Lease", token)] if token is not None else []
    return conn.roundtrip("PUT", "/cache/" + key, value, headers=h)


def is_granted(r):
    tok = r.header("X-Cache-Lease")
    return (r.status == 404 and r.header("X-Cache") == "MISS" and tok is not None and
            TOKEN_RE.match(tok) is not None)


def basics(c, srv, key):
    c.section("miss -> token; a waiter gets the fill (HIT-FILL); key " + key)
    a, b, x = Conn(srv.port), Conn(srv.port), Conn(srv.port)
    r = lease_get(a, key)
    c.check(is_granted(r), "first lease GET: 404 MISS with a 32-hex-digit token", r)
    tok = r.header("X-Cache-Lease")
    r = x.roundtrip("GET", "/cache/" + key)
    c.check(r.status == 404 and r.header("X-Cache-Lease") is None,
            "a GET without X-Cache-Fill behaves as before: 404, no token, no wait", r)
    waiting = tot(srv)["lease_waiters"]
    send_lease_get(b, key)
    wait_for(srv, "lease_waiters", waiting + 1, "the second lease GET waits on the server", c)
    r = put(a, key, b"filled-" + key.encode(), tok)
    c.eq(r.status, 201, "the holder's PUT with its token stores (201)")
    r = b.read_response()
    c.eq((r.status, r.header("X-Cache"), r.body), (200, "HIT-FILL", b"filled-" + key.encode()),
         "the waiter is answered with the value, X-Cache: HIT-FILL")
    c.eq(r.header("X-Cache-Lease"), None, "a HIT-FILL carries no token")
    r = put(a, key, b"again", tok)
    c.eq(r.status, 409, "the token ended with the fill: a second PUT with it is 409")
    r = lease_get(x, key)
    c.eq((r.status, r.header("X-Cache"), r.body), (200, "HIT", b"filled-" + key.encode()),
         "a lease GET of a filled key is a plain hit; the refused PUT stored nothing")
    for k in (a, b, x):
        k.close()


def waiter_timeout(c):
    c.section("a waiter gives up after --lease-wait: 404 without token")
    srv = Server(["--shards", "1", "--memory", "16M", "--lease-wait", "200"], checks=c).start()
    a, b = Conn(srv.port), Conn(srv.port)
    tok = lease_get(a, "tw").header("X-Cache-Lease")
    c.check(tok is not None, "the first GET holds the lease")
    r = lease_get(b, "tw")
    c.check(r.status == 404 and r.header("X-Cache") == "MISS" and
            r.header("X-Cache-Lease") is None, "the waiter gets 404 MISS, no token", r)
    s = tot(srv)
    c.eq((s["lease_waiters_timed_out"], s["lease_waiters"]), (1, 0),
         "counted in lease_waiters_timed_out; nobody waits")
    c.eq(put(a, "tw", b"v", tok).status, 201, "the lease outlived the waiter: the holder fills")
    a.close()
    b.close()
    srv.stop()


def give_up_and_revoke(c, srv):
    c.section("the holder gives up (DELETE with its token): the next waiter fills")
    a, b, d = Conn(srv.port), Conn(srv.port), Conn(srv.port)
    tok = lease_get(a, "gu").header("X-Cache-Lease")
    base = tot(srv)["lease_waiters"]
    send_lease_get(b, "gu")
    wait_for(srv, "lease_waiters", base + 1, "b waits", c)
    send_lease_get(d, "gu")
    wait_for(srv, "lease_waiters", base + 2, "d waits behind b", c)
    r = a.roundtrip("DELETE", "/cache/gu", headers=[("X-Cache-Lease", "f" * 32)])
    c.eq(r.status, 409, "DELETE with a token that is not the lease: 409")
    r = a.roundtrip("DELETE", "/cache/gu", headers=[("X-Cache-Lease", tok)])
    c.eq(r.status, 204, "DELETE with the holder's token: 204, lease given up")
    r = b.read_response()
    c.check(is_granted(r), "the oldest waiter (b) is handed a new token", r)
    tok_b = r.header("X-Cache-Lease")
    c.check(tok_b != tok, "a new token, not the old one")
    wait_for(srv, "lease_waiters", base + 1, "d still waits", c)
    c.eq(put(a, "gu", b"late", tok).status, 409, "the given-up token cannot fill: 409")
    c.eq(put(b, "gu", b"from-b", tok_b).status, 201, "b fills with its token")
    r = d.read_response()
    c.eq((r.status, r.header("X-Cache"), r.body), (200, "HIT-FILL", b"from-b"),
         "d gets b's value")

    c.section("stale-set protection: a DELETE revokes the lease, the late fill is 409")
    tok = lease_get(a, "rv").header("X-Cache-Lease")
    base = tot(srv)["lease_waiters"]
    send_lease_get(b, "rv")
    wait_for(srv, "lease_waiters", base + 1, "b waits", c)
    r = d.roundtrip("DELETE", "/cache/rv")
    c.eq(r.status, 404, "a DELETE of the (absent) key by another client: 404 as before")
    rb = b.read_response()
    c.check(is_granted(rb), "the waiter is handed a new lease", rb)
    r = put(a, "rv", b"stale", tok)
    c.eq(r.status, 409, "the revoked holder's PUT: 409 Conflict")
    r = d.roundtrip("GET", "/cache/rv")
    c.eq(r.status, 404, "and it stored nothing")
    c.eq(put(b, "gu", b"x", rb.header("X-Cache-Lease")).status, 409,
         "a token of another key does not fill this one")
    c.eq(put(b, "rv", b"fresh", rb.header("X-Cache-Lease")).status, 201,
         "the new holder fills")
    for k in (a, b, d):
        k.close()


def hostile_tokens(c, srv):
    c.section("tokens from clients are hostile: unknown, long, malformed -> 409")
    with Conn(srv.port) as a:
        c.eq(put(a, "ht", b"v", "0" * 32).status, 409, "PUT with an unknown token: 409")
        c.eq(put(a, "ht", b"v", "x" * 65).status, 409, "PUT with a 65-char token: 409")
        c.eq(put(a, "ht", b"v", "a" * 5000).status, 409, "PUT with a 5000-char token: 409")
        c.eq(put(a, "ht", b"v", "caf\xe9").status, 409, "PUT with a non-ASCII token: 409")
        c.eq(put(a, "ht", b"v", "a b").status, 409, "PUT with a space in it: 409")
        c.eq(put(a, "ht", b"v", "").status, 409, "PUT with an empty X-Cache-Lease: 409")
        r = a.roundtrip("GET", "/cache/ht", headers=[("X-Cache-Fill", "")])
        c.eq(r.status, 400, "an empty X-Cache-Fill: 400")
    with Conn(srv.port) as a:
        c.eq(put(a, "ht", b"v", "a\x01b").status, 400,
             "PUT with a control char in it: the parser's 400 (connection closes)")
    with Conn(srv.port) as a:
        c.eq(a.roundtrip("GET", "/cache/ht").status, 404, "none of them stored anything")
        r = a.roundtrip("GET", "/cache/ht", headers=[("X-Cache-Fill", "please")])
        c.eq(r.status, 400, "X-Cache-Fill other than 'lease': 400")
        r = a.roundtrip("GET", "/cache/ht", headers=[("X-Cache-Fill", "LEASE")])
        c.check(is_granted(r), "X-Cache-Fill is case-insensitive", r)
        c.check(tot(srv)["lease_conflicts"] >= 5, "409s counted in lease_conflicts")
        c.eq(put(a, "ht", b"ok", r.header("X-Cache-Lease")).status, 201, "the real token fills")


def ttl_expiry(c):
    c.section("--lease-ttl: an unfilled lease ends, the next waiter gets one")
    srv = Server(["--shards", "1", "--memory", "16M", "--lease-ttl", "200"], checks=c).start()
    a, b = Conn(srv.port), Conn(srv.port)
    tok = lease_get(a, "te").header("X-Cache-Lease")
    r = lease_get(b, "te")    # waits until a's lease expires (wait 2000 > ttl 200)
    c.check(is_granted(r), "the waiter is handed a new token when the lease expires", r)
    s = tot(srv)
    c.eq((s["lease_expired"], s["lease_handed_over"]), (1, 1),
         "counted: lease_expired, lease_handed_over")
    c.eq(put(a, "te", b"late", tok).status, 409, "the expired token cannot fill: 409")
    c.eq(put(b, "te", b"v", r.header("X-Cache-Lease")).status, 201, "the new holder fills")
    a.close()
    b.close()
    srv.stop()


def holder_dies(c, srv):
    c.section("a lease holder that dies: its connection closes, the next waiter fills")
    a, b = Conn(srv.port), Conn(srv.port)
    tok = lease_get(a, "hd").header("X-Cache-Lease")
    base = tot(srv)["lease_waiters"]
    send_lease_get(b, "hd")
    wait_for(srv, "lease_waiters", base + 1, "b waits", c)
    abandoned = tot(srv)["lease_abandoned"]
    a.close()
    r = b.read_response()
    c.check(is_granted(r), "the waiter is handed a new token at once", r)
    c.eq(tot(srv)["lease_abandoned"], abandoned + 1, "counted in lease_abandoned")
    with Conn(srv.port) as x:
        c.eq(put(x, "hd", b"v", tok).status, 409, "the dead holder's token: 409")
    c.eq(put(b, "hd", b"v", r.header("X-Cache-Lease")).status, 201, "the new holder fills")
    b.close()


def pipelined(c, srv, keys):
    c.section("requests pipelined behind a waiter keep their order")
    a, b = Conn(srv.port), Conn(srv.port)
    k, other = keys
    put(a, other, b"other-value")
    tok = lease_get(a, k).header("X-Cache-Lease")
    base = tot(srv)["lease_waiters"]
    b.send(build_request("GET", "/cache/" + k, headers=LEASE) +
           build_request("GET", "/cache/" + other) +
           build_request("PUT", "/cache/" + other, b"b's write") +
           build_request("GET", "/cache/" + other))
    wait_for(srv, "lease_waiters", base + 1, "the first request waits", c)
    c.eq(put(a, k, b"filled", tok).status, 201, "the holder fills")
    got = [b.read_response() for _ in range(4)]
    c.eq([(r.status, r.body) for r in got],
         [(200, b"filled"), (200, b"other-value"), (204, b""), (200, b"b's write")],
         "the 4 answers in request order, the waiter's first")
    c.eq(got[0].header("X-Cache"), "HIT-FILL", "the first is the fill")
    a.close()
    b.close()


def head_and_many(c, srv, key):
    c.section("HEAD waits too; 20 waiters are all answered by one fill")
    a = Conn(srv.port)
    tok = lease_get(a, key, "HEAD").header("X-Cache-Lease")
    c.check(tok is not None, "a HEAD with X-Cache-Fill: lease takes the lease")
    base = tot(srv)["lease_waiters"]
    ws = [Conn(srv.port) for _ in range(20)]
    for w in ws:
        send_lease_get(w, key)
    wait_for(srv, "lease_waiters", base + 20, "20 waiters", c)
    h = Conn(srv.port)
    h.send(build_request("HEAD", "/cache/" + key, headers=LEASE))
    wait_for(srv, "lease_waiters", base + 21, "and a HEAD", c)
    c.eq(put(a, key, b"x" * 1000, tok).status, 201, "one fill")
    got = [w.read_response() for w in ws]
    c.check(all(r.status == 200 and r.header("X-Cache") == "HIT-FILL" and r.body == b"x" * 1000
                for r in got), "every waiter got the value")
    r = h.read_response(head_only=True)
    c.eq((r.status, r.header("X-Cache"), r.header("Content-Length")), (200, "HIT-FILL", "1000"),
         "the HEAD waiter: 200 HIT-FILL, the value's length, no body")
    for w in ws + [a, h]:
        w.close()


def stop_with_waiters(c):
    c.section("SIGTERM with a waiter (--lease-wait 60000): the daemon stops, cleanly")
    srv = Server(["--shards", "2", "--memory", "16M", "--lease-wait", "60000"],
                 checks=c).start()
    a, b = Conn(srv.port), Conn(srv.port)
    c.check(lease_get(a, "st").header("X-Cache-Lease") is not None, "a holds the lease")
    send_lease_get(b, "st")
    wait_for(srv, "lease_waiters", 1, "b waits", c)
    rc = srv.stop()     # SIGTERM; SIGKILL if it has not exited within STOP_TIMEOUT
    c.check(rc in (0, -signal.SIGTERM) and not srv.killed,
            "it exits on SIGTERM without waiting out the waiter", rc)
    # stop shuts every connection (docs/architecture.md): the waiter's ends
    c.check(b.closed_by_peer(), "the waiter's connection is closed")
    a.close()
    b.close()


def resp_writes(c):
    c.section("a write over RESP fills the lease and answers the waiters; DEL revokes it")
    srv = RespServer(["--shards", "2", "--memory", "32M"], checks=c).start()
    rc = srv.client()
    for key in keys_per_shard("rw", 2, 1)[0] + keys_per_shard("rw", 2, 1)[1]:
        a, b = Conn(srv.port), Conn(srv.port)
        tok = lease_get(a, key).header("X-Cache-Lease")
        c.check(tok is not None, "the first lease GET of %s holds the lease" % key)
        waiting = tot(srv)["lease_waiters"]
        send_lease_get(b, key)
        wait_for(srv, "lease_waiters", waiting + 1, "a second lease GET waits", c)
        c.check(rc.cmd("SET", key, "from-resp", "KEEPTTL") in (b"OK", "OK"),
                "SET %s KEEPTTL over RESP (a command run as a kv operation)" % key)
        r = b.read_response()
        c.eq((r.status, r.header("X-Cache"), r.body), (200, "HIT-FILL", b"from-resp"),
             "the waiter is answered with the RESP write's value (HIT-FILL)")
        c.eq(put(a, key, b"late", tok).status, 409,
             "the holder's fill after the RESP write: 409 (its lease ended)")
        c.eq(rc.cmd("DEL", key), 1, "DEL %s over RESP" % key)
        for cmd in (("DEL", key), ("GETDEL", key)):
            tok = lease_get(a, key).header("X-Cache-Lease")
            c.check(tok is not None, "a new lease on %s" % key)
            rc.cmd(*cmd)
            c.eq(put(a, key, b"stale", tok).status, 409,
                 "%s over RESP of the missing key revoked the lease: the late fill is 409"
                 % cmd[0])
            c.eq(a.roundtrip("GET", "/cache/" + key).status, 404, "... and stored nothing")
        a.close()
        b.close()
    rc.close()
    srv.stop()


def holder_dies_after_refused_fill(c):
    """A fill the server refuses for its own reasons (400 here, also 507)
    leaves the lease with its holder, who may try again; if the holder
    then dies, the lease must end at once, as for any holder that dies, not
    hold its waiters up for --lease-ttl.  Found by review: the connection
    forgot the lease as soon as it parsed a PUT carrying the token."""
    c.section("a holder whose fill was refused (400), then dies: the waiter takes over at once")
    srv = Server(["--shards", "2", "--memory", "32M",
                  "--lease-ttl", "600000", "--lease-wait", "600000"], checks=c).start()
    a, b = Conn(srv.port), Conn(srv.port)
    tok = lease_get(a, "rf").header("X-Cache-Lease")
    r = a.roundtrip("PUT", "/cache/rf", b"v", headers=[("X-Cache-Lease", tok),
                                                        ("Cache-Control", "stale-if-error=x")])
    c.eq(r.status, 400, "the holder's fill has a bad stale-if-error: 400, nothing stored")
    send_lease_get(b, "rf")
    wait_for(srv, "lease_waiters", 1, "b waits: the lease is still the holder's", c)
    a.close()
    wait_for(srv, "lease_abandoned", 1, "the holder's connection closed: its lease ends", c)
    r = b.read_response()
    c.check(is_granted(r), "the waiter is handed a new token", r)
    b.close()
    srv.stop()


def main(c):
    srv = Server(["--shards", "2", "--memory", "32M"], checks=c).start()
    per = keys_per_shard("lk", 2, 2)
    for shard in (0, 1):
        # connections land on either shard: over both keys and several runs,
        # the key's owner is the connection's shard and another shard
        for i, key in enumerate(per[shard]):
            basics(c, srv, key)
    give_up_and_revoke(c, srv)
    hostile_tokens(c, srv)
    holder_dies(c, srv)
    holder_dies_after_refused_fill(c)
    pipelined(c, srv, (per[0][0] + "p", per[1][0] + "p"))
    pipelined(c, srv, (per[1][1] + "q", per[0][1] + "q"))
    head_and_many(c, srv, "many")
    s = tot(srv)
    c.check(s["forwarded_requests"] > 0, "some lease requests crossed shards (--shards 2)")
    c.eq((s["leases"], s["lease_waiters"]), (0, 0), "nothing left outstanding")
    waiter_timeout(c)
    ttl_expiry(c)
    stop_with_waiters(c)
    resp_writes(c)


if __name__ == "__main__":
    run_main("test_leases", main)
