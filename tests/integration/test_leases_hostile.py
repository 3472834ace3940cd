#!/usr/bin/env python3
"""Hostile clients of fill leases, stale serving and tags (issue 9,
docs/cache-aside.md, docs/stale-and-tags.md), on one instance (--shards 2)
and with --redis (a real redis-server): what test_leases*.py, test_stale*.py
and test_tags*.py do not already cover.

 1. the leases a connection remembers (at most 16, docs/cache-aside.md):
    fills that go to the other shard, and fills or deletes without the
    token, end the lease they fill and must free its place, so that a lease
    still held is still ended when its holder's connection closes
    (regression: such a fill left its lease remembered for ever)
 2. tokens and X-Cache-Fill in odd forms: case, length, spaces around,
    duplicate fields, a token of another connection
 3. more than 1024 (LEASE_MAX_WAITERS) waiters on one key from 20
    connections, pipelined: exactly 1024 wait, the rest get 404 at once
    (lease_refused); one fill answers them all; the gauges and the
    connections' memory come back
 4. waiters whose connections are reset: skipped when the lease is handed
    on; they leave their key's queue at once, their memory freed
 5. a fill larger than a waiter's room (64 KiB): every waiter gets the
    whole value (made again for room), also while other waiters reset
    (regression: made again, the answer said HIT, not HIT-FILL)
 6. a stale value larger than that room, asked with X-Cache-Fill from
    another shard: its answer carries the refresh lease it took
    (regression: the answer made again for room had lost its token)
 7. tags: odd bytes, percent-encoded purges, duplicates; a purge racing
    overwrites of its keys; a purge whose client resets; a purge while
    tagged writes go on
 8. extreme TTL and windows, over HTTP and RESP
 9. SIGTERM with waiters (local, remote, orphaned), a purge in slices and
    a large answer under way: a clean exit, no sanitizer report
10. with --redis: the same remembered-lease rule, waiters past 1024 (read
    from Redis as plain GETs), waiters reset while a fill crosses instances
    and values of 200 KiB from Redis to a lease GET and to waiters
    (regression: such an answer, made again for room, said HIT, not HIT-L2)
11. with --redis through a relay (redis_harness.Relay): a lease GET whose
    read of Redis times out after Redis took the lease there (regression:
    that lease was left in Redis for nobody, and the key's next lease GET
    on any instance waited --lease-ttl for it), and lease GETs whose
    clients reset while their reads are at Redis, answered "held
    elsewhere" (regression: parked for nobody until --lease-wait)
12. a client that parks 64 lease GETs with 28 KiB heads (keys of both
    shards, leased by an accomplice) and resets, 12 times over: each time
    all 64 leave at once, conn_memory comes back, no shard pauses, the
    fill answers nobody (regression: they stayed parked until the fill or
    --lease-wait, their copies counted in conn_memory, until the shard's
    share of --conn-memory was full and every connection of it paused)

Every wait is bounded (a socket timeout or a /stats poll); no timing
thresholds.

usage: test_leases_hostile.py [path/to/ringcached]
"""

import re
import socket
import struct

from harness import (IO_TIMEOUT, Conn, ProtocolError, Server, build_request,
                     keys_per_shard, pct, stats, wait_for)
from redis_harness import PREFIX, run_with_redis, start_instance, wait_l2_ready
from resp_harness import RespServer

LEASE = [("X-Cache-Fill", "lease")]
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
NSHARDS = 2
LONG = ["--lease-ttl", "600000", "--lease-wait", "600000"]   # only a fill or an end answers
KiB = 1 << 10


def tot(srv):
    return stats(srv)["total"]


def poll(srv, field, want, timeout=IO_TIMEOUT):
    """total[field] once it equals want (polled), else its last value."""
    got = wait_for(lambda: tot(srv)[field] == want, timeout, 0.01)
    return want if got else tot(srv)[field]


def lease_get(conn, key, method="GET"):
    return conn.roundtrip(method, "/cache/" + key, headers=LEASE)


def send_lease_get(conn, key):
    conn.send(build_request("GET", "/cache/" + key, headers=LEASE))


def put(conn, key, value, token=None, query=""):
    h = [("X-Cache-Lease", token)] if token is not None else []
    return conn.roundtrip("PUT", "/cache/" + key + query, value, headers=h)


def granted(r):
    tok = r.header("X-Cache-Lease")
    return (r.status == 404 and r.header("X-Cache") == "MISS" and tok is not None and
            TOKEN_RE.match(tok) is not None)


def reset(conn):
    """Closes conn with a reset (SO_LINGER 0), not a FIN."""
    try:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def read_or_none(conn, head_only=False):
    """The next response, or None when none comes within the socket's
    timeout (a waiter nobody answers) or the connection ends."""
    try:
        return conn.read_response(head_only)
    except (OSError, ProtocolError):
        return None


def conn_shard(srv, conn):
    """The shard that serves conn: a GET of a key shard 0 owns is local
    (local_requests) on shard 0 only when conn is on shard 0.  Asked while
    nobody else sends /cache/ requests."""
    key = keys_per_shard("probe-", NSHARDS, 1)[0][0]
    before = stats(srv)["per_shard"][0]["local_requests"]
    conn.roundtrip("GET", "/cache/" + key)
    return 0 if stats(srv)["per_shard"][0]["local_requests"] > before else 1


def settled(c, srv, base_mem, what):
    """Nothing outstanding: no lease, no waiter, only the asking connection,
    and the connections' memory back to what one asking connection holds."""
    c.eq(poll(srv, "lease_waiters", 0), 0, "%s: lease_waiters back to 0" % what)
    c.eq(poll(srv, "leases", 0), 0, "%s: leases back to 0" % what)
    c.eq(poll(srv, "connections", 1), 1, "%s: connections back to the one asking" % what)
    mem_back(c, srv, base_mem, what)


def mem_back(c, srv, base_mem, what):
    """conn_memory back to what one asking connection held at the start,
    within less than one answer's room (CONN_ROOM, 64 KiB): the asker's own
    buffers may differ a little, a request's room left reserved may not."""
    ok = wait_for(lambda: tot(srv)["conn_memory"] < base_mem + 64 * KiB, IO_TIMEOUT, 0.02)
    c.check(ok, "%s: conn_memory back to about %d" % (what, base_mem),
            "conn_memory %d" % tot(srv)["conn_memory"])


# --- 1. the leases a connection remembers ---------------------------------------------

def remembered(c, srv, tag, remote):
    """The holder takes the lease of `held`, then takes and fills with
    their tokens 16 leases of other keys, owned by its own shard or
    (remote) by the other; then it dies: the lease it still holds must end
    at once (its waiter is handed a token), since each fill ended its lease
    and so freed its place among the 16 remembered.  Regression: a fill
    forwarded to the other shard left its lease remembered (the owner had
    dropped the token from the request the origin then looked at), so 16
    such fills pushed a lease still held out of the connection's memory and
    it outlived its holder by --lease-ttl."""
    a = Conn(srv.port)
    mine = conn_shard(srv, a)
    where = 1 - mine if remote else mine
    keys = keys_per_shard("rm-%s-" % tag, NSHARDS, 16)[where]
    held = keys[0] + "-held"
    r = lease_get(a, held)
    c.check(granted(r), "%s: the holder takes the lease of %s" % (tag, held), r)
    statuses = []
    for k in keys:
        tok = lease_get(a, k).header("X-Cache-Lease")
        statuses.append(put(a, k, b"v", tok).status)
    c.eq(statuses, [201] * 16, "%s: 16 more leases taken and filled with their tokens, on %s"
         % (tag, "the other shard" if remote else "the connection's shard"))
    b = Conn(srv.port)
    base = tot(srv)["lease_waiters"]
    send_lease_get(b, held)
    c.eq(poll(srv, "lease_waiters", base + 1), base + 1, "%s: a waiter on %s" % (tag, held))
    a.close()
    r = read_or_none(b)
    c.check(r is not None and granted(r),
            "%s: the holder's connection closed: its waiter is handed the lease at once "
            "(not after --lease-ttl)" % tag, r)
    if r is not None and granted(r):
        c.eq(put(b, held, b"filled", r.header("X-Cache-Lease")).status, 201,
             "%s: the new holder fills" % tag)
    b.close()


def pipelined_twenty(c, srv):
    """20 lease GETs of 20 keys pipelined: 20 tokens; the holder dies
    without filling: the 16 leases its connection remembers end at once,
    the 4 it forgot stay until --lease-ttl (docs/cache-aside.md, Limits),
    here ended by DELETEs."""
    c.section("20 leases taken in one pipeline by a holder that dies")
    keys = ["p20-%d" % i for i in range(20)]
    s0 = tot(srv)
    with Conn(srv.port) as a:
        a.send(b"".join(build_request("GET", "/cache/" + k, headers=LEASE) for k in keys))
        got = [read_or_none(a) for _ in keys]
        c.check(all(r is not None and granted(r) for r in got), "20 tokens")
        c.eq(len({r.header("X-Cache-Lease") for r in got if r is not None}), 20, "all different")
    c.check(wait_for(lambda: tot(srv)["lease_abandoned"] - s0["lease_abandoned"] == 16,
                     IO_TIMEOUT, 0.01), "its connection closed: 16 leases end at once "
            "(lease_abandoned +16)", tot(srv)["lease_abandoned"] - s0["lease_abandoned"])
    c.eq(tot(srv)["leases"], 4, "the 4 it could not remember stay (until --lease-ttl)")
    with Conn(srv.port) as d:
        d.send(b"".join(build_request("DELETE", "/cache/" + k) for k in keys))
        c.eq([read_or_none(d).status for _ in keys], [404] * 20, "DELETEs revoke them")
    c.eq(poll(srv, "leases", 0), 0, "no lease left")


# --- 2. tokens and X-Cache-Fill in odd forms -----------------------------------------

def odd_forms(c, srv):
    c.section("tokens and X-Cache-Fill in odd forms")
    a, x = Conn(srv.port), Conn(srv.port)
    r = lease_get(a, "of")
    tok = r.header("X-Cache-Lease")
    c.check(granted(r), "a lease on 'of'", r)
    conflicts = tot(srv)["lease_conflicts"]
    bad = [tok.upper(), tok[:31], tok + "0", tok[1:] + tok[0], "0" * 64,
           tok + "," + tok]
    got = [put(x, "of", b"forged", t).status for t in bad]
    c.eq(got, [409] * len(bad), "upper case, 31 and 33 chars, rotated, 64 zeros, a list: 409")
    with Conn(srv.port) as d:
        d.send(build_request("PUT", "/cache/of", b"dup",
                             [("X-Cache-Lease", "0" * 32), ("X-Cache-Lease", tok)]))
        c.eq(d.read_response().status, 409, "two X-Cache-Lease fields: the first counts (409)")
    r = x.roundtrip("DELETE", "/cache/of", headers=[("X-Cache-Lease", tok.upper())])
    c.eq(r.status, 409, "DELETE with the token in upper case: 409, nothing ended")
    c.eq(tot(srv)["lease_conflicts"] - conflicts, len(bad) + 2, "each counted in lease_conflicts")
    c.eq(x.roundtrip("GET", "/cache/of").status, 404, "none of them stored anything")
    # a token is the key's lease whoever sends it (docs: a lease ends when
    # its holder's connection closes, but any client may fill with it)
    r = x.roundtrip("PUT", "/cache/of", b"by-x", headers=[("X-Cache-Lease", "  %s  " % tok)])
    c.eq(r.status, 201, "the token from another connection, with spaces around: fills (201)")
    c.eq(put(a, "of", b"by-a", tok).status, 409, "the holder's own fill after it: 409")
    a.close()
    c.eq(x.roundtrip("GET", "/cache/of").body, b"by-x", "the other connection's fill stays")

    for i, (hdrs, want, what) in enumerate((
            ([("X-Cache-Fill", " \tlease\t ")], "granted", "spaces and tabs around 'lease'"),
            ([("x-cache-fill", "LeAsE")], "granted", "any case of name and value"),
            ([("X-Cache-Fill", "lease"), ("X-Cache-Fill", "bogus")], "granted",
             "two fields, 'lease' first: the first counts"),
            ([("X-Cache-Fill", "bogus"), ("X-Cache-Fill", "lease")], 400,
             "two fields, 'bogus' first: 400"),
            ([("X-Cache-Fill", "lease, lease")], 400, "a list 'lease, lease': 400"),
            ([("X-Cache-Fill", "leases")], 400, "'leases': 400"),
            ([("X-Cache-Fill", "lease\x00")], 400, "a NUL after it: 400"))):
        with Conn(srv.port) as d:
            d.send(build_request("GET", "/cache/of-%d" % i, headers=hdrs))
            r = read_or_none(d)
            ok = granted(r) if (r is not None and want == "granted") else \
                (r is not None and r.status == want)
            c.check(ok, "X-Cache-Fill %s -> %s" % (what, want), r)
            if r is not None and granted(r):
                put(d, "of-%d" % i, b"x", r.header("X-Cache-Lease"))
    r = x.roundtrip("PUT", "/cache/of-put", b"v", headers=LEASE)
    c.eq(r.status, 201, "X-Cache-Fill: lease on a PUT: a plain PUT (201)")
    r = x.roundtrip("PUT", "/cache/of-put", b"v", headers=[("X-Cache-Fill", "nope")])
    c.eq(r.status, 400, "X-Cache-Fill other than lease on a PUT: 400")
    r = x.roundtrip("GET", "/cache/of-get", headers=[("X-Cache-Lease", "0" * 32)])
    c.eq(r.status, 404, "X-Cache-Lease on a GET is ignored (404, no 409)")
    x.close()
    c.check(srv.healthy(), "still healthy")


# --- 3. waiters past the bound ------------------------------------------------------

NCONNS, PER_CONN = 20, 55       # 1100 lease GETs: 1024 wait, 76 do not


def past_bound(c, srv, key, what):
    c.section("%s: %d lease GETs of one key from %d connections, pipelined"
              % (what, NCONNS * PER_CONN, NCONNS))
    base_mem = tot(srv)["conn_memory"]
    h = Conn(srv.port)
    r = lease_get(h, key)
    tok = r.header("X-Cache-Lease")
    c.check(granted(r), "the holder", r)
    s0 = tot(srv)
    ws = [Conn(srv.port, timeout=30) for _ in range(NCONNS)]
    for w in ws:
        w.send(b"".join(build_request("GET", "/cache/" + key, headers=LEASE)
                        for _ in range(PER_CONN)))
    refused = NCONNS * PER_CONN - 1024
    c.eq(poll(srv, "lease_waiters", 1024, timeout=30), 1024,
         "exactly 1024 (LEASE_MAX_WAITERS) wait")
    c.eq(wait_for(lambda: tot(srv)["lease_refused"] - s0["lease_refused"] == refused, 30, 0.02)
         and refused, refused, "the other %d are refused (lease_refused)" % refused)
    c.eq(put(h, key, b"F" * 100, tok).status, 201, "one fill")
    got = {}
    for w in ws:
        for _ in range(PER_CONN):
            r = read_or_none(w)
            k = (r.status, r.header("X-Cache"), r.header("X-Cache-Lease") is not None,
                 r.body if r.status == 200 else b"") if r else None
            got[k] = got.get(k, 0) + 1
    want = {(200, "HIT-FILL", False, b"F" * 100): 1024, (404, "MISS", False, b""): refused}
    c.eq(got, want, "1024 HIT-FILL answers with the value, %d 404 MISS without a token" % refused)
    s1 = tot(srv)
    c.eq(s1["lease_waiters_answered"] - s0["lease_waiters_answered"], 1024,
         "lease_waiters_answered grew by 1024")
    for w in ws + [h]:
        w.close()
    settled(c, srv, base_mem, what)


# --- 4. waiters reset -----------------------------------------------------------

def waiters_reset(c, srv):
    c.section("waiters whose connections are reset: skipped by a hand-over, freed by a fill")
    base_mem = tot(srv)["conn_memory"]
    for key in (keys_per_shard("wr-", NSHARDS, 1)[0][0], keys_per_shard("wr-", NSHARDS, 1)[1][0]):
        h = Conn(srv.port)
        tok = lease_get(h, key).header("X-Cache-Lease")
        ws = []
        for i in range(6):
            w = Conn(srv.port)
            send_lease_get(w, key)
            poll(srv, "lease_waiters", i + 1)
            ws.append(w)
        c.eq(tot(srv)["lease_waiters"], 6, "%s: 6 waiters, in order" % key)
        # the two oldest and the fourth go
        for i in (0, 1, 3):
            reset(ws[i])
        # the holder, 3 waiters and the asker
        c.eq(poll(srv, "connections", 5), 5, "%s: their connections are freed" % key)
        r = h.roundtrip("DELETE", "/cache/" + key, headers=[("X-Cache-Lease", tok)])
        c.eq(r.status, 204, "%s: the holder gives up" % key)
        r = read_or_none(ws[2])
        c.check(r is not None and granted(r),
                "%s: the oldest waiter still connected is handed the lease" % key, r)
        if r is not None and granted(r):
            c.eq(put(ws[2], key, b"W", r.header("X-Cache-Lease")).status, 201,
                 "%s: and fills" % key)
        for i in (4, 5):
            r = read_or_none(ws[i])
            c.check(r is not None and r.status == 200 and r.body == b"W",
                    "%s: waiter %d gets the fill" % (key, i), r)
        for w in ws + [h]:
            w.close()
        settled(c, srv, base_mem, key)

    c.section("orphaned waiters: they leave their key's queue at once")
    key = "wr-fill"
    h = Conn(srv.port)
    tok = lease_get(h, key).header("X-Cache-Lease")
    ws = [Conn(srv.port) for _ in range(30)]
    for w in ws:
        send_lease_get(w, key)
    c.eq(poll(srv, "lease_waiters", 30), 30, "30 waiters")
    s0 = tot(srv)
    for w in ws:
        reset(w)
    c.eq(poll(srv, "connections", 2), 2, "all 30 reset and freed")
    c.eq(poll(srv, "lease_waiters", 0), 0, "they leave at once, not at the fill or "
         "--lease-wait (10 minutes here)")
    c.eq(tot(srv).get("lease_waiters_gone", 0) - s0.get("lease_waiters_gone", 0), 30,
         "counted in lease_waiters_gone")
    # conn_memory is published 4 times a second (docs/stats.md): polled
    mem_back(c, srv, base_mem, "orphaned waiters, before the fill")
    c.eq(tot(srv)["leases"], 1, "the lease stays with its holder")
    c.eq(put(h, key, b"late", tok).status, 201, "the fill")
    c.eq(tot(srv)["lease_waiters_answered"] - s0["lease_waiters_answered"], 0,
         "it answers nobody")
    h.close()
    settled(c, srv, base_mem, "orphaned waiters")


# --- 5. a fill larger than the waiters' room --------------------------------------------

def big_fill(c, srv):
    c.section("a 1 MiB fill to waiters, some reset while it is sent")
    base_mem = tot(srv)["conn_memory"]
    value = bytes(range(256)) * 4096
    for key in (keys_per_shard("bf-", NSHARDS, 1)[0][0], keys_per_shard("bf-", NSHARDS, 1)[1][0]):
        h = Conn(srv.port)
        tok = lease_get(h, key).header("X-Cache-Lease")
        ws = [Conn(srv.port, timeout=20) for _ in range(12)]
        for w in ws:
            w.send(build_request("GET", "/cache/" + key, headers=LEASE) +
                   build_request("HEAD", "/cache/" + key, headers=LEASE) +
                   build_request("GET", "/cache/" + key))
        c.eq(poll(srv, "lease_waiters", 24), 24, "%s: 12 GET and 12 HEAD waiters" % key)
        h.send(build_request("PUT", "/cache/" + key, value, [("X-Cache-Lease", tok)]))
        for i in range(0, 12, 3):
            reset(ws[i])
        c.eq(h.read_response().status, 201, "%s: the fill" % key)
        ok = True
        for i, w in enumerate(ws):
            if i % 3 == 0:
                continue
            g = read_or_none(w)
            hd = read_or_none(w, head_only=True)
            p = read_or_none(w)
            # the plain GET behind the waiters was executed meanwhile (a miss)
            good = (g is not None and g.status == 200 and g.body == value and
                    g.header("X-Cache") == "HIT-FILL" and hd is not None and hd.status == 200
                    and hd.header("X-Cache") == "HIT-FILL" and
                    hd.header("Content-Length") == str(len(value)) and
                    p is not None and p.status == 404)
            if not good:
                c.check(False, "%s: waiter %d: the whole value, HIT-FILL, then its HEAD, "
                        "then the plain GET's 404" % (key, i), repr((g, hd, p)))
                ok = False
                break
        c.check(ok, "%s: 8 waiters got the 1 MiB value whole (HIT-FILL), the HEAD its length, "
                "the plain GET pipelined behind them its miss, in order" % key)
        for w in ws + [h]:
            w.close()
        settled(c, srv, base_mem, "%s big fill" % key)


# --- 6. a large stale value with a refresh lease, across shards ----------------------

def conn_on(srv, shard):
    """A connection the given shard serves (the others are closed and the
    connect tried again)."""
    for _ in range(60):
        conn = Conn(srv.port)
        if conn_shard(srv, conn) == shard:
            return conn
        conn.close()
    raise RuntimeError("no connection landed on shard %d" % shard)


def big_stale(c, srv):
    """Regression: a stale answer larger than the room a forwarded request
    holds (64 KiB) is made again with room (fwd_resend); its first making
    took the refresh lease and noted it on the connection, the second found
    the lease taken and left the token out: the client never learnt it, and
    nobody refreshed the value until --lease-ttl."""
    c.section("a 200 KiB stale value asked with X-Cache-Fill, from its shard and the other")
    value = b"s" * (200 * KiB)
    per = keys_per_shard("bs-", NSHARDS, 2)
    cases = [(owner, side, per[owner][i]) for owner in (0, 1)
             for i, side in enumerate(("local", "remote"))]
    for owner, side, key in cases:
        c.eq(srv.request("PUT", "/cache/%s?ttl=1&swr=600" % key, value).status, 201,
             "PUT %s ?ttl=1&swr=600 (owner shard %d)" % (key, owner))
    st = wait_for(lambda: all(srv.request("GET", "/cache/" + k).header("X-Cache") == "STALE"
                              for _, _, k in cases), 10, 0.1)
    c.check(st, "the values turn stale")
    for owner, side, key in cases:
        a = conn_on(srv, owner if side == "local" else 1 - owner)
        r = lease_get(a, key)
        tok = r.header("X-Cache-Lease")
        c.check(r.status == 200 and r.header("X-Cache") == "STALE" and r.body == value
                and tok is not None and TOKEN_RE.match(tok) is not None,
                "%s, %s: 200 STALE, the whole value and the refresh lease's token"
                % (key, side), r)
        c.eq(tot(srv)["leases"], 1, "%s, %s: one lease taken" % (key, side))
        r2 = srv.request("GET", "/cache/" + key, headers=LEASE)
        c.check(r2.status == 200 and r2.header("X-Cache") == "STALE" and
                r2.header("X-Cache-Lease") is None,
                "%s, %s: the next lease GET: stale, no token" % (key, side), r2)
        if tok is not None:
            c.eq(put(a, key, b"fresh", tok).status, 204,
                 "%s, %s: the refresh with the token (204)" % (key, side))
        a.close()
        c.eq(poll(srv, "leases", 0), 0, "%s, %s: no lease left" % (key, side))


# --- 7. tags ----------------------------------------------------------------------

def purge(srv, tag, conn=None):
    r = (conn.roundtrip if conn else srv.request)("DELETE", "/tags/" + pct(tag))
    return r


def removed(r):
    m = re.match(rb'\{"removed": (\d+)', r.body)
    return int(m.group(1)) if r.status == 200 and m else None


def tags(c, srv):
    c.section("tags: odd bytes, percent-encoded purges, duplicates")
    odd = ["a/b?c#d", "%41", "\"q\"", "x;y=z", "~!@$^&*()[]{}|\\<>`'", "T", "t"]
    for i, t in enumerate(odd):
        r = srv.request("PUT", "/cache/odd-%d" % i, b"v", headers=[("X-Cache-Tags", t)])
        c.eq(r.status, 201, "a tag %r" % t)
    r = srv.request("PUT", "/cache/odd-dup", b"v",
                    headers=[("X-Cache-Tags", ",".join(["dup"] * 20 + ["T", "t", " T "]))])
    c.eq(r.status, 201, "20 times one tag and two others: 3 tags, within 8 (201)")
    r = purge(srv, "%41")
    c.eq(removed(r), 1, "DELETE /tags/%2541 purges the tag '%41', not 'A'")
    c.eq(removed(purge(srv, "dup")), 1, "the tag given 20 times: its one key")
    c.eq(removed(purge(srv, "T")), 1, "then T: its other key (tags are case-sensitive)")
    c.eq(srv.request("GET", "/cache/odd-6").status, 200, "the key tagged 't' stays")
    for i, t in enumerate(odd):
        if t in ("%41", "T"):
            continue
        c.eq(removed(purge(srv, t)), 1, "the tag %r purged through its percent-encoding" % t)
    c.eq(tot(srv)["tag_index_entries"], 0, "the index is empty")

    c.section("a purge racing overwrites of its keys (pipelined behind it)")
    n = 2000
    keys = ["race-%d" % i for i in range(n)]
    with Conn(srv.port, timeout=30) as conn:
        conn.send(b"".join(build_request("PUT", "/cache/" + k, b"old",
                                         [("X-Cache-Tags", "race")]) for k in keys))
        st = [conn.read_response().status for _ in keys]
        c.eq(st, [201] * n, "%d keys tagged 'race'" % n)
        conn.send(build_request("DELETE", "/tags/race") +
                  b"".join(build_request("PUT", "/cache/" + k, b"new") for k in keys))
        r = conn.read_response()
        n_removed = removed(r)
        c.check(n_removed is not None and 0 <= n_removed <= n,
                "the purge answers (removed %s of %d)" % (n_removed, n), r)
        st = [conn.read_response().status for _ in keys]
        c.check(all(s in (201, 204) for s in st), "every overwrite stored")
        c.eq(st.count(201), n_removed, "an overwrite made a new key (201) exactly where the "
             "purge had removed the old one first")
    with Conn(srv.port, timeout=30) as conn:
        conn.send(b"".join(build_request("GET", "/cache/" + k) for k in keys))
        bodies = [conn.read_response().body for _ in keys]
    c.eq(bodies.count(b"new"), n, "every key holds its overwrite: none lost to the purge")
    c.eq(wait_for(lambda: tot(srv)["tag_index_entries"] == 0, 5, 0.05), True,
         "the index lets go of every key (purged, or overwritten without the tag)")

    c.section("a purge of 20000 keys whose client resets at once")
    base_mem = tot(srv)["conn_memory"]
    fill_tagged(c, srv, "rst", 20000)
    purged = tot(srv)["tag_purged"]
    conn = Conn(srv.port)
    conn.send(build_request("DELETE", "/tags/rst"))
    reset(conn)
    c.eq(poll(srv, "connections", 1), 1, "its connection is freed")
    # the reset may even come before the request is read (its bytes are then
    # dropped); a second purge, queued behind the first where the first got
    # to a shard, takes whatever the first did not: each key once
    r = purge(srv, "rst")
    c.check(removed(r) is not None, "a second purge answers (removed %s)" % removed(r), r)
    c.check(wait_for(lambda: tot(srv)["tag_purged"] - purged == 20000, 10, 0.05),
            "the two purges removed the 20000 keys once each (tag_purged +20000)",
            tot(srv)["tag_purged"] - purged)
    c.note("the purge whose client reset removed %d" % (20000 - (removed(r) or 0)))
    c.eq(srv.request("GET", "/cache/rst-7").status, 404, "the keys are gone")
    mem_back(c, srv, base_mem, "purge reset")

    c.section("a purge of 20000 keys while tagged writes of the tag go on")
    fill_tagged(c, srv, "live", 20000)
    w = Conn(srv.port, timeout=30)
    p = Conn(srv.port, timeout=30)
    batch = b"".join(build_request("PUT", "/cache/live-new-%d" % i, b"n",
                                   [("X-Cache-Tags", "live")]) for i in range(500))
    w.send(batch)
    p.send(build_request("DELETE", "/tags/live"))
    w.send(batch)
    r = read_or_none(p)
    c.check(r is not None and removed(r) is not None and removed(r) >= 20000,
            "the purge ends while writes of its tag go on (removed %s)"
            % (removed(r) if r else None), r)
    st = [read_or_none(w) for _ in range(1000)]
    c.check(all(x is not None and x.status in (201, 204) for x in st), "the writes all stored")
    left = tot(srv)["tag_index_entries"]
    c.check(left <= 500, "at most the 500 keys written after it stay tagged (%d)" % left)
    c.eq(removed(purge(srv, "live")), left, "a second purge takes exactly those")
    w.close()
    p.close()


def fill_tagged(c, srv, tag, n):
    with Conn(srv.port, timeout=30) as conn:
        for lo in range(0, n, 1000):
            conn.send(b"".join(build_request("PUT", "/cache/%s-%d" % (tag, i), b"x",
                                             [("X-Cache-Tags", tag)])
                               for i in range(lo, min(n, lo + 1000))))
            for _ in range(lo, min(n, lo + 1000)):
                r = conn.read_response()
                if r.status not in (201, 204):
                    c.check(False, "tagged PUT -> 201", r)
                    return


# --- 8. extreme TTL and windows -------------------------------------------------------

def extremes(c):
    c.section("extreme TTL and windows, over HTTP and RESP")
    srv = RespServer(["--shards", "2", "--memory", "32M"], checks=c).start()
    with srv.client() as rc:
        for q, what in (("ttl=0&swr=31536000&sie=31536000", "no TTL, largest windows"),
                        ("ttl=4294967295&swr=31536000&sie=31536000", "largest TTL and windows"),
                        ("ttl=4294967295", "largest TTL alone"),
                        ("ttl=1&swr=0&sie=0", "windows of 0"),
                        ("ttl=31536000&swr=31536000&sie=31536000", "a year each")):
            key = "ext-" + q
            r = srv.request("PUT", "/cache/" + pct(key) + "?" + q, b"x")
            c.eq(r.status, 201, "PUT ?%s (%s): 201" % (q, what))
            r = srv.request("GET", "/cache/" + pct(key))
            c.check(r.status == 200 and r.header("X-Cache") == "HIT" and r.header("Age") is None,
                    "?%s: a fresh HIT" % q, r)
            ttl = rc.cmd("TTL", key)
            want = (-1,) if q.startswith("ttl=0") else range(0, 4294967297)
            c.check(isinstance(ttl, int) and ttl in want, "?%s: RESP TTL %r is sane" % (q, ttl))
            r = rc.cmd("GET", key)
            c.eq(r, b"x", "?%s: RESP GET" % q)
        r = srv.request("PUT", "/cache/ext-over?ttl=4294967296", b"x")
        c.eq(r.status, 400, "?ttl=4294967296 (2^32): 400")
        r = srv.request("PUT", "/cache/ext-cc", b"x", headers=[
            ("Cache-Control", "max-age=4294967295, stale-while-revalidate=31536000, "
                              "stale-if-error=31536000")])
        c.eq(r.status, 201, "the same extremes through Cache-Control: 201")
        r = srv.request("GET", "/cache/ext-cc",
                        headers=[("Cache-Control", "max-stale=99999999999")])
        c.check(r.status == 200 and r.header("X-Cache") == "HIT",
                "a huge max-stale on a fresh item: a HIT", r)
    c.check(srv.healthy(), "still healthy")
    srv.stop()


# --- 9. SIGTERM with everything under way --------------------------------------------------

def sigterm(c):
    c.section("SIGTERM with waiters (local, remote, orphaned), a purge and a large send")
    srv = Server(["--shards", "2", "--memory", "64M"] + LONG, checks=c).start()
    fill_tagged(c, srv, "term", 20000)
    per = keys_per_shard("term-l", NSHARDS, 1)
    holders, ws = [], []
    for s in (0, 1):
        h = Conn(srv.port)
        c.check(granted(lease_get(h, per[s][0])), "a lease on shard %d's key" % s)
        holders.append(h)
    for i in range(40):
        w = Conn(srv.port)
        send_lease_get(w, per[i % 2][0])
        ws.append(w)
    c.eq(poll(srv, "lease_waiters", 40), 40, "40 waiters on both shards' keys")
    for w in ws[:10]:
        reset(w)
    srv.request("PUT", "/cache/term-big", b"b" * (1 << 20))
    big = Conn(srv.port)
    big.send(b"".join(build_request("GET", "/cache/term-big") for _ in range(20)))
    p = Conn(srv.port)
    p.send(build_request("DELETE", "/tags/term"))
    rc = srv.stop()
    c.check(rc in (0, -15) and not srv.killed, "it exits on SIGTERM at once, cleanly", rc)
    for x in ws + holders + [big, p]:
        x.close()


# --- 10. with --redis -------------------------------------------------------------------------

def with_redis(c, redis):
    c.section("--redis: the leases a connection remembers")
    a = start_instance(c, redis, "lh-a", ["--conn-memory", "512M"] + LONG)
    c.check(wait_l2_ready(a, "lh-a", 10) is not None, "a: L2 ready")
    for remote in (False, True):
        remembered(c, a, "l2-remote" if remote else "l2-local", remote)
    past_bound(c, a, "l2-bound", "--redis")

    c.section("--redis: waiters on b reset while a fills")
    b = start_instance(c, redis, "lh-b", LONG)
    c.check(wait_l2_ready(b, "lh-b", 10) is not None, "b: L2 ready")
    base_mem = tot(b)["conn_memory"]
    h = Conn(a.port)
    r = lease_get(h, "l2-wr")
    c.check(granted(r), "a holds the fleet's lease", r)
    ws = [Conn(b.port) for _ in range(10)]
    for w in ws:
        send_lease_get(w, "l2-wr")
    c.eq(poll(b, "lease_waiters", 10), 10, "10 waiters on b")
    for w in ws[:5]:
        reset(w)
    c.eq(poll(b, "connections", 6), 6, "5 of them reset")
    c.eq(poll(b, "lease_waiters", 5), 5, "the 5 reset leave b's queue at once")
    c.eq(put(h, "l2-wr", b"fleet", r.header("X-Cache-Lease")).status, 201, "a fills")
    got = [read_or_none(w) for w in ws[5:]]
    c.check(all(x is not None and x.status == 200 and x.body == b"fleet" for x in got),
            "b's 5 waiters still connected get the fill", got)
    for w in ws + [h]:
        w.close()
    settled(c, b, base_mem, "b")
    big_from_redis(c, a, b)


def big_from_redis(c, a, b):
    """Regression: a lease GET answered from Redis (HIT-L2) with a value
    larger than its request's room (64 KiB) is made again with room
    (fwd.h, bounce), and made again it said HIT, where a plain GET says
    HIT-L2 all the same (via_l2)."""
    c.section("--redis: 200 KiB values from Redis to lease GETs and to waiters on b")
    value = bytes(range(256)) * 800
    per = keys_per_shard("l2big-", NSHARDS, 2)
    for key in (per[0][0], per[1][0]):
        c.eq(a.request("PUT", "/cache/" + key, value).status, 201, "a writes %s" % key)
        r = b.request("GET", "/cache/" + key, headers=LEASE)
        c.check(r.status == 200 and r.header("X-Cache") == "HIT-L2" and r.body == value and
                r.header("X-Cache-Lease") is None,
                "b: a lease GET of %s, read from Redis: 200 HIT-L2, the whole value" % key, r)
    for key in (per[0][1], per[1][1]):
        h = Conn(a.port)
        r = lease_get(h, key)
        c.check(granted(r), "a holds the lease of %s" % key, r)
        ws = [Conn(b.port) for _ in range(3)]
        for w in ws:
            send_lease_get(w, key)
        c.eq(poll(b, "lease_waiters", 3), 3, "3 waiters on b")
        c.eq(put(h, key, value, r.header("X-Cache-Lease")).status, 201, "a fills")
        got = [read_or_none(w) for w in ws]
        c.check(all(x is not None and x.status == 200 and x.body == value for x in got),
                "b's waiters get the whole value", got)
        c.eq(sorted(x.header("X-Cache") for x in got if x is not None),
             ["HIT-FILL", "HIT-FILL", "HIT-L2"],
             "one read it from Redis (HIT-L2), the others were answered by that read (HIT-FILL)")
        for w in ws + [h]:
            w.close()


def timed_out_read(c, redis, relay):
    """Regression: a lease GET's read of Redis (one EVAL: read, or take the
    lease) that times out after Redis ran it.  The shard then grants a
    lease of its own instance (X-L2: timeout), but the script had taken
    <prefix>lease:<key> in Redis, for nobody: when the client went without
    filling, every instance's next lease GET of the key found it held and
    waited --lease-ttl for a fill that could not come."""
    c.section("--redis: a lease GET whose read of Redis times out after Redis took the lease")
    t = Server(["--shards", "2", "--memory", "32M", "--redis", relay.url(), "--instance-id",
                "lh-t", "--redis-timeout", "100"] + LONG, checks=c).start()
    c.check(wait_l2_ready(t, "lh-t", 10) is not None, "t (through a relay): L2 ready")
    key = "lh-timeout"
    relay.hold_replies(key.encode())
    w = Conn(t.port)
    r = lease_get(w, key)
    c.check(granted(r) and r.header("X-L2") == "timeout",
            "Redis' answer held past --redis-timeout: a lease of this instance alone "
            "(X-L2: timeout)", r)
    c.check(relay.holding(), "the EVAL reached Redis (its reply was held)")
    relay.release()
    lease_key = PREFIX + "lease:" + key
    c.check(wait_for(lambda: redis.cmd("GET", lease_key) is None, IO_TIMEOUT, 0.02),
            "what the script took in Redis is released, not left for --lease-ttl",
            redis.cmd("GET", lease_key))
    reset(w)
    c.eq(poll(t, "leases", 0), 0, "the client resets: its lease ends")
    b = Conn(t.port)
    b.send(build_request("GET", "/cache/" + key, headers=LEASE))
    r = read_or_none(b)
    c.check(r is not None and granted(r),
            "the next lease GET takes the key's lease at once (no wait for a dead one)", r)
    if r is not None and granted(r):
        c.eq(redis.cmd("GET", lease_key), r.header("X-Cache-Lease").encode(),
             "in Redis: the fleet's lease again")
        c.eq(put(b, key, b"v", r.header("X-Cache-Lease")).status, 201, "and it fills")
    b.close()

    c.section("--redis: a purge whose client resets while Redis' part is out")
    base_mem = tot(t)["conn_memory"]
    for i in range(200):
        t.request("PUT", "/cache/prst-%d" % i, b"x", headers=[("X-Cache-Tags", "prst")])
    c.eq(redis.cmd("SCARD", PREFIX + "tag:prst"), 200, "200 keys in the tag's set in Redis")
    relay.hold_replies(b"prst")
    p = Conn(t.port)
    p.send(build_request("DELETE", "/tags/prst"))
    c.check(wait_for(relay.holding, IO_TIMEOUT, 0.01), "the purge reached Redis")
    reset(p)
    c.eq(poll(t, "connections", 1), 1, "its client is gone")
    relay.release()
    c.check(wait_for(lambda: redis.cmd("EXISTS", PREFIX + "tag:prst") == 0 and
                     redis.cmd("EXISTS", PREFIX + "prst-7") == 0, IO_TIMEOUT, 0.02),
            "the purge ran to its end in Redis")
    c.check(wait_for(lambda: tot(t)["tag_index_entries"] == 0, IO_TIMEOUT, 0.02),
            "and in L1", tot(t)["tag_index_entries"])
    c.eq(t.request("GET", "/cache/prst-7").status, 404, "its keys are gone")
    mem_back(c, t, base_mem, "t")


# --- 12. waiters reset again and again -------------------------------------------------

ROUNDS, PER_ROUND = 12, 64      # 64: what one connection may have waiting (README)
# 40M: a 20 MiB share per shard, which two connections at the bound of the
# README (about 8.3 MiB with --max-value 64K) fit in
ORPHAN_FLAGS = ["--shards", "2", "--memory", "32M", "--max-value", "64K",
                "--conn-memory", "40M"] + LONG
BIG_HEAD = [("If-None-Match", '"%s"' % ("x" * 28000))]   # copied with the request


def shard_stats(srv, admin, shard):
    return stats(srv, admin)["per_shard"][shard]


def orphans_again(c):
    """Regression: a lease GET waiting for a fill whose client reset stayed
    parked on its key's owner until the fill or --lease-wait, its copy of
    the request (head included) counted in its origin shard's conn_memory
    all along.  A client that had an accomplice (any client) hold the
    leases of a few keys and reset connections full of lease GETs of them
    left 1.8 MiB per reset for --lease-wait (up to 10 minutes): about ten
    resets filled the shard's share of --conn-memory, and every connection
    of that shard paused (memory_pauses) until the waits ran out."""
    c.section("%d times: 64 lease GETs with 28 KiB heads, for keys of both shards, "
              "then a reset" % ROUNDS)
    srv = Server(ORPHAN_FLAGS, checks=c).start()
    admin = conn_on(srv, 1)
    victim = conn_on(srv, 0)
    per = keys_per_shard("orph-", NSHARDS, 8)
    holder = Conn(srv.port)
    toks = {}
    for k in per[0] + per[1]:
        r = lease_get(holder, k)
        toks[k] = r.header("X-Cache-Lease")
        if not granted(r):
            c.check(False, "the accomplice takes the lease of %s" % k, r)
    keys = [per[i % 2][(i // 2) % 8] for i in range(PER_ROUND)]
    batch = b"".join(build_request("GET", "/cache/" + k, headers=LEASE + BIG_HEAD)
                     for k in keys)
    nconns = 3      # admin, victim, holder (once conn_on's probes are gone)
    c.check(wait_for(lambda: stats(srv, admin)["total"]["connections"] == nconns,
                     IO_TIMEOUT, 0.02), "3 connections")
    t0 = stats(srv, admin)["total"]
    s0 = shard_stats(srv, admin, 0)
    done = 0
    for rnd in range(ROUNDS):
        a = conn_on(srv, 0)
        a.send(batch)
        if not wait_for(lambda: stats(srv, admin)["total"]["lease_waiters"] == PER_ROUND,
                        IO_TIMEOUT, 0.02):
            c.check(False, "round %d: 64 lease GETs wait" % rnd, stats(srv, admin)["total"])
            break
        reset(a)
        if not wait_for(lambda: all_left(srv, admin, nconns), IO_TIMEOUT, 0.02):
            t = stats(srv, admin)["total"]
            c.check(False, "round %d: its connection freed, its 64 waiters leave at once "
                    "(--lease-wait is 10 minutes)" % rnd,
                    "connections %d (want %d), lease_waiters %d, shard 0 conn_memory %d"
                    % (t["connections"], nconns, t["lease_waiters"],
                       shard_stats(srv, admin, 0)["conn_memory"]))
            break
        done += 1
    c.eq(done, ROUNDS, "every round: 64 waiting (half on each shard), then none once "
         "their connection reset")
    t1 = stats(srv, admin)["total"]
    c.eq(t1.get("lease_waiters_gone", 0) - t0.get("lease_waiters_gone", 0), done * PER_ROUND,
         "each counted in lease_waiters_gone")
    # published 4 times a second (docs/stats.md): polled
    ok = wait_for(lambda: shard_stats(srv, admin, 0)["conn_memory"] <
                  s0["conn_memory"] + 64 * KiB, IO_TIMEOUT, 0.02)
    c.check(ok, "shard 0's conn_memory back to where it was (%d)" % s0["conn_memory"],
            shard_stats(srv, admin, 0)["conn_memory"])
    c.eq(shard_stats(srv, admin, 0)["memory_pauses"], s0["memory_pauses"],
         "shard 0 never paused its connections for memory")
    victim.send(build_request("GET", "/cache/orph-victim"))
    r = read_or_none(victim)
    c.check(r is not None and r.status == 404, "a client on shard 0 is served meanwhile", r)
    st = [put(holder, k, b"v", toks[k]).status for k in per[0] + per[1]]
    c.eq(st, [201] * 16, "the accomplice fills its 16 keys")
    t2 = stats(srv, admin)["total"]
    c.eq(t2["lease_waiters_answered"] - t1["lease_waiters_answered"], 0,
         "the fills answer nobody: nobody waited")
    c.eq((t2["leases"], t2["lease_waiters"]), (0, 0), "no lease, no waiter left")
    for x in (admin, victim, holder):
        x.close()
    c.check(srv.healthy(), "still healthy")
    srv.stop()


def all_left(srv, admin, nconns):
    """Only the connections from before the round, and nobody waiting."""
    t = stats(srv, admin)["total"]
    return t["connections"] == nconns and t["lease_waiters"] == 0


def reset_at_redis(c, redis, relay):
    """Regression: a lease GET whose client resets while its read (the EVAL
    that reads the key or takes its lease) is at Redis, and whose answer
    then says the lease is held by another instance: it was parked as a
    waiter for nobody until --lease-wait, since what told its owner that
    the connection had ended (the connection's end on the owner itself, or
    the sweep from the other shard) had come while it was out."""
    c.section("--redis: lease GETs whose clients reset while their reads are at Redis")
    t = Server(["--shards", "2", "--memory", "32M", "--redis", relay.url(), "--instance-id",
                "lh-r", "--redis-timeout", "10000"] + LONG, checks=c).start()
    c.check(wait_l2_ready(t, "lh-r", 10) is not None, "r (through a relay): L2 ready")
    a = start_instance(c, redis, "lh-ra", LONG)
    c.check(wait_l2_ready(a, "lh-ra", 10) is not None, "ra: L2 ready")
    per = keys_per_shard("lhr-", NSHARDS, 2)
    for owner in (0, 1):
        key, probe = per[owner]
        what = "%s (shard %d's, %s)" % (key, owner, "local" if owner == 0 else "remote")
        h = Conn(a.port)
        r = lease_get(h, key)
        htok = r.header("X-Cache-Lease")
        c.check(granted(r), "%s: another instance holds the fleet's lease" % what, r)
        w = conn_on(t, 0)
        relay.hold_replies(key.encode())
        send_lease_get(w, key)
        c.check(wait_for(relay.holding, IO_TIMEOUT, 0.01), "%s: its read is at Redis, "
                "the answer held" % what)
        reset(w)
        c.eq(poll(t, "connections", 1), 1, "%s: the client reset" % what)
        relay.release()
        # the same shard's next read goes after it on the same connection:
        # once that one is answered, the held answer was handled
        p = Conn(t.port)
        r = lease_get(p, probe)
        c.check(granted(r), "%s: a lease GET of another key of the shard, read after it" % what,
                r)
        c.eq(tot(t)["lease_waiters"], 0, "%s: the answer said 'held elsewhere': the request "
             "whose client reset is not parked to wait for it" % what)
        if granted(r):
            c.eq(put(p, probe, b"p", r.header("X-Cache-Lease")).status, 201,
                 "%s: the other key filled" % what)
        c.eq(put(h, key, b"v", htok).status, 201, "%s: the holder fills" % what)
        c.eq(poll(t, "leases", 0), 0, "%s: no lease left on r" % what)
        for x in (h, p):
            x.close()


def main(c, redis, relay):
    srv = Server(["--shards", "2", "--memory", "64M", "--conn-memory", "512M",
                  "--max-value", "2M"] + LONG, checks=c).start()
    base_mem = tot(srv)["conn_memory"]
    c.section("the leases a connection remembers")
    for remote in (False, True):
        remembered(c, srv, "remote" if remote else "local", remote)
    pipelined_twenty(c, srv)
    settled(c, srv, base_mem, "remembered leases")
    odd_forms(c, srv)
    past_bound(c, srv, "bound", "one instance")
    waiters_reset(c, srv)
    big_fill(c, srv)
    big_stale(c, srv)
    tags(c, srv)
    settled(c, srv, base_mem, "after everything")
    srv.stop()
    orphans_again(c)
    extremes(c)
    sigterm(c)
    with_redis(c, redis)
    timed_out_read(c, redis, relay)
    reset_at_redis(c, redis, relay)


if __name__ == "__main__":
    run_with_redis("test_leases_hostile", main, relay=True)
