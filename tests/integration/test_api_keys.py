#!/usr/bin/env python3
"""API keys (issue 4) over real sockets: keys from --api-keys-file in
X-API-Key or Authorization: Bearer, what needs one (everything but
/health), refusal before a body is read, the key file's format, and bad key
files.  The rules are the README's and docs/stats.md's.

usage: test_api_keys.py [path/to/ringcached]
"""

import os
import re
import secrets
import shutil
import tempfile
import time

from harness import (RUN_TIMEOUT, WRITE_OK, ProtocolError, Server, build_request, free_port,
                     run_binary, run_main, show, stats, strip_clock)

FLAGS = ["--shards", "2", "--memory", "64M"]


class TempDir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="ringcached-auth-")

    def file(self, name, text, mode=0o600):
        p = os.path.join(self.path, name)
        with open(p, "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
        os.chmod(p, mode)
        return p

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


# --- auth ---------------------------------------------------------------------------

def denied(c, r, what, value=None):
    ok = c.eq(r.status, 401, "%s -> 401" % what)
    if ok:
        c.check(r.header("WWW-Authenticate") not in (None, ""),
                "%s: 401 has WWW-Authenticate" % what, show(r))
        if value is not None:
            c.check(value not in r.body, "%s: 401 does not carry the value" % what)
    else:
        c.note(show(r))


def auth(c, tmp):
    c.section("--api-keys-file with two keys (mode 0600)")
    k1 = secrets.token_hex(16)          # 32 characters
    k2 = "K2-" + secrets.token_hex(20)  # 43 characters
    path = tmp.file("keys", "%s\n%s\n" % (k1, k2))
    srv = Server(FLAGS + ["--api-keys-file", path], checks=c).start()
    c.check(k1 not in srv.log_text() and k2 not in srv.log_text(),
            "the startup log does not show the keys")
    c.check("readable" not in srv.log_text(), "no 'readable by others' warning at 0600",
            srv.log_text()[-300:])

    value = b"secret value"
    ok_put = srv.request("PUT", "/cache/a", value, [("X-API-Key", k1)])
    c.within(ok_put.status, WRITE_OK, "PUT with the right key in X-API-Key -> 201/204")

    c.section("requests without a valid key")
    denied(c, srv.request("GET", "/cache/a"), "GET /cache/a without a key", value)
    r = srv.request("HEAD", "/cache/a")
    denied(c, r, "HEAD /cache/a without a key")
    g = srv.request("GET", "/cache/a")
    c.eq(strip_clock(r.raw_head), strip_clock(g.raw_head),
         "HEAD's 401 head is GET's (Date blanked)")
    denied(c, srv.request("GET", "/cache/missing"), "GET of a missing key without a key")
    r = srv.request("PUT", "/cache/b", b"intruder")
    denied(c, r, "PUT /cache/b without a key")
    r = srv.request("DELETE", "/cache/a")
    denied(c, r, "DELETE /cache/a without a key")
    wrong_last = k1[:-1] + ("0" if k1[-1] != "0" else "1")
    wrong_first = ("0" if k1[0] != "0" else "1") + k1[1:]
    mixed = k1[:16] + k2[16:32]
    bad = [
        (wrong_last, "a wrong key of the same length (last byte differs)"),
        (wrong_first, "a wrong key of the same length (first byte differs)"),
        (k1[:-1], "the right key minus its last byte (a prefix)"),
        (k1[:16], "the first half of the right key"),
        (k1[:1], "the first byte of the right key"),
        (k1 + "x", "the right key plus one byte"),
        (k1 + k1, "the right key twice"),
        ("x" + k1, "one byte plus the right key"),
        (k1.upper(), "the right key in upper case"),
        (mixed, "half of key 1 and half of key 2"),
        (k2[:32], "the first 32 bytes of key 2 (key 1's length)"),
    ]
    for key, what in bad:
        denied(c, srv.request("GET", "/cache/a", headers=[("X-API-Key", key)]),
               "X-API-Key: %s" % what, value)
        denied(c, srv.request("GET", "/cache/a", headers=[("Authorization", "Bearer " + key)]),
               "Authorization: Bearer %s" % what, value)
    for hv, what in (("", "an empty X-API-Key"),):
        denied(c, srv.request("GET", "/cache/a", headers=[("X-API-Key", hv)]), what, value)
    for hv, what in (("Bearer", "'Bearer' and no key"), ("Bearer ", "'Bearer ' and no key"),
                     (k1, "the key without a scheme"), ("Basic " + k1, "the key as Basic"),
                     ("Bearer" + k1, "'Bearer' glued to the key"),
                     ("Token " + k1, "the key under another scheme")):
        denied(c, srv.request("GET", "/cache/a", headers=[("Authorization", hv)]),
               "Authorization: %s" % what, value)
    c.eq(srv.request("GET", "/cache/b", headers=[("X-API-Key", k1)]).status, 404,
         "the PUT without a key stored nothing")
    c.eq(srv.request("GET", "/cache/a", headers=[("X-API-Key", k1)]).body, value,
         "the DELETE without a key deleted nothing")

    c.section("requests with a valid key")
    good = [
        ([("X-API-Key", k1)], "X-API-Key: key 1"),
        ([("X-API-Key", k2)], "X-API-Key: key 2"),
        ([("Authorization", "Bearer " + k1)], "Authorization: Bearer key 1"),
        ([("Authorization", "Bearer " + k2)], "Authorization: Bearer key 2"),
        ([("Authorization", "bearer " + k1)], "Authorization: bearer (lower case) key 1"),
        ([("Authorization", "BEARER " + k2)], "Authorization: BEARER key 2"),
        ([("Authorization", "Bearer   " + k1)], "Authorization: Bearer, three spaces, key 1"),
        ([("X-API-Key", "  %s\t" % k1)], "X-API-Key: key 1 with surrounding whitespace"),
        ([("x-api-key", k2)], "x-api-key (lower-case field name): key 2"),
    ]
    for h, what in good:
        r = srv.request("GET", "/cache/a", headers=h)
        c.check(r.status == 200 and r.body == value, "GET with %s -> 200 and the value" % what,
                show(r))
    for i, (h, what) in enumerate(good[:4]):
        r = srv.request("PUT", "/cache/w%d" % i, b"w", headers=h)
        c.eq(r.status, 201, "PUT a new key with %s -> 201" % what)
    r = srv.request("HEAD", "/cache/a", headers=[("X-API-Key", k2)])
    c.eq(r.status, 200, "HEAD with key 2 -> 200")
    r = srv.request("GET", "/cache/missing", headers=[("X-API-Key", k2)])
    c.eq(r.status, 404, "GET of a missing key with key 2 -> 404 (not 401)")
    r = srv.request("DELETE", "/cache/w0", headers=[("Authorization", "Bearer " + k2)])
    c.eq(r.status, 204, "DELETE with Authorization: Bearer key 2 -> 204")

    with srv.connect() as conn:
        conn.send(build_request("GET", "/cache/a", headers=[("X-API-Key", k1)]))
        a = conn.read_response()
        conn.send(build_request("GET", "/cache/a", headers=[("X-API-Key", wrong_last)]))
        b = conn.read_response()
        c.check(a.status == 200 and b.status == 401,
                "one connection: a good key then a wrong one -> 200 then 401 "
                "(the key is checked per request)", "%r then %r" % (a, b))

    c.section("/health, /stats, /metrics with keys configured")
    c.eq(srv.request("GET", "/health").status, 200, "GET /health without a key -> 200")
    for path in ("/stats", "/metrics"):
        denied(c, srv.request("GET", path), "GET %s without a key" % path)
        denied(c, srv.request("GET", path, headers=[("X-API-Key", wrong_last)]),
               "GET %s with a wrong key" % path)
        r = srv.request("GET", path, headers=[("X-API-Key", k1)])
        c.eq(r.status, 200, "GET %s with X-API-Key key 1 -> 200" % path)
        r = srv.request("GET", path, headers=[("Authorization", "Bearer " + k2)])
        c.eq(r.status, 200, "GET %s with Authorization: Bearer key 2 -> 200" % path)
    c.section("a body without a key is refused before it is sent")
    for hdrs, what in (("Content-Length: 1000000\r\nExpect: 100-continue\r\n",
                        "Expect: 100-continue"),
                       ("Content-Length: 1000000\r\n", "Content-Length, body not sent"),
                       ("Transfer-Encoding: chunked\r\n", "chunked, no chunk sent")):
        with srv.connect() as cl:
            cl.send(("PUT /cache/early HTTP/1.1\r\nHost: x\r\n%s\r\n" % hdrs).encode())
            r = cl.read_response()
            c.eq(r.status, 401, "PUT with %s and no key -> 401 before the body" % what)
            c.check(r.has_token("Connection", "close"), "... with Connection: close", show(r))
            c.check(cl.closed_by_peer(), "... and the connection is closed")
    r = srv.request("GET", "/cache/early", headers=[("X-API-Key", k1)])
    c.eq(r.status, 404, "nothing was stored by the refused PUTs")
    for line, want, what in (("FOO /cache/early", 405, "an unknown method on /cache/"),
                             ("POST /stats", 405, "POST /stats"),
                             ("PUT /health", 405, "PUT /health")):
        with srv.connect() as cl:
            cl.send(("%s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" % line)
                    .encode())
            r = cl.read_response()
            c.eq(r.status, want, "%s with a body not sent yet and no key -> %d, as when complete"
                 % (what, want))
            c.check(cl.closed_by_peer(), "... and the connection is closed")

    try:
        errors, detail = stats(srv, headers=[("X-API-Key", k1)])["total"]["errors"], None
    except ProtocolError as e:
        errors, detail = None, str(e)
    c.check(errors is not None and errors > 0,
            "/stats with a key is the JSON document and counts the 401s as errors", detail)
    c.check(k1 not in srv.log_text() and k2 not in srv.log_text(), "the log does not show the keys")
    srv.stop()

    c.section("key file format: comments, blank lines, CRLF, trailing spaces")
    k3 = "k3#" + secrets.token_hex(8)
    k4 = secrets.token_hex(128)                  # 256 bytes, the longest key
    path = tmp.file("keys-fmt", "# a comment line\r\n\r\n   \n%s \r\n\t\n#%s\n%s\n"
                    % (k3, k1, k4))
    srv = Server(FLAGS + ["--api-keys-file", path], checks=c).start()
    r = srv.request("PUT", "/cache/f", b"v", [("X-API-Key", k3)])
    c.within(r.status, WRITE_OK, "a key with '#' inside and a trailing space + CRLF works")
    r = srv.request("GET", "/cache/f", headers=[("Authorization", "Bearer " + k4)])
    c.eq(r.status, 200, "a 256-byte key works")
    denied(c, srv.request("GET", "/cache/f", headers=[("X-API-Key", k1)]),
           "the key of a comment line ('#key')")
    denied(c, srv.request("GET", "/cache/f", headers=[("X-API-Key", "#" + k1)]),
           "a comment line as a key")
    denied(c, srv.request("GET", "/cache/f", headers=[("X-API-Key", k4[:-1])]),
           "the 256-byte key minus its last byte")
    denied(c, srv.request("GET", "/cache/f", headers=[("X-API-Key", k4 + "0")]),
           "the 256-byte key plus a byte")
    srv.stop()

    c.section("a key file readable by others")
    path = tmp.file("keys-open", "%s\n" % k1, 0o644)
    srv = Server(FLAGS + ["--api-keys-file", path], checks=c).start()
    c.eq(srv.request("GET", "/cache/x", headers=[("X-API-Key", k1)]).status, 404,
         "mode 0644: the daemon starts and the key works")
    log = srv.log_text()
    c.check("--api-keys-file" in log and "readable by others" in log,
            "mode 0644: the log warns that the key file is readable by others",
            repr(log[-300:]))
    srv.stop()

    c.section("a key file its group may read (the unit's SupplementaryGroups=ringcached)")
    path = tmp.file("keys-group", "%s\n" % k1, 0o640)
    srv = Server(FLAGS + ["--api-keys-file", path], checks=c).start()
    c.eq(srv.request("GET", "/cache/x", headers=[("X-API-Key", k1)]).status, 404,
         "mode 0640: the daemon starts and the key works")
    c.check("readable" not in srv.log_text(), "mode 0640: no warning",
            repr(srv.log_text()[-300:]))
    srv.stop()


def bad_key_files(c, tmp):
    c.section("bad --api-keys-file: the daemon exits 2 (a bad flag value) with a message naming the flag")
    secret = "s3cr3t-" + secrets.token_hex(6)
    cases = [
        (os.path.join(tmp.path, "does-not-exist"), "a missing file", None),
        (tmp.file("empty", ""), "an empty file", None),
        (tmp.file("comments", "# only a comment\n\n   \n"), "a file with comments only", None),
        (tmp.file("space", "goodkey-1234567890\nbad %s\n" % secret), "a key with a space (line 2)",
         2),
        (tmp.file("ctl", "goodkey-1234567890\n\n%s\x01\n" % secret),
         "a key with a control character (line 3)", 3),
        (tmp.file("long", "%s\n" % ("L" * 257)), "a 257-byte key (line 1)", 1),
        (tmp.file("utf8", "%s\u00e9\n" % secret), "a key with a non-ASCII byte (line 1)", 1),
        (tmp.path, "a directory", None),
    ]
    for path, what, line in cases:
        t0 = time.monotonic()
        rc, out = run_binary(["--listen", "127.0.0.1:%d" % free_port()] + FLAGS
                             + ["--api-keys-file", path])
        took = time.monotonic() - t0
        if rc is None:
            c.check(False, "%s: the daemon exits (it was still running after %.0f s)"
                    % (what, RUN_TIMEOUT), repr(out[-300:]))
            continue
        c.eq(rc, 2, "%s: exit status 2 (took %.1f s)" % (what, took))
        c.check("--api-keys-file" in out, "%s: the message names --api-keys-file" % what,
                repr(out[-300:]))
        c.check(secret not in out, "%s: the message does not show the bad line's text" % what,
                repr(out[-300:]))
        if line is not None:
            c.check(re.search(r"\bline %d\b" % line, out) is not None,
                    "%s: the message names line %d" % (what, line), repr(out[-300:]))
    rc, out = run_binary(["--listen", "127.0.0.1:%d" % free_port()] + FLAGS + ["--api-keys-file"])
    c.eq(rc, 2, "--api-keys-file without a value exits 2")
    c.check("--api-keys-file" in out, "... naming --api-keys-file", repr(out[-300:]))


def main(c):
    tmp = TempDir()
    try:
        auth(c, tmp)
        bad_key_files(c, tmp)
    finally:
        tmp.remove()


if __name__ == "__main__":
    run_main("test_api_keys", main)
