#!/usr/bin/env python3
"""Real Redis clients against the RESP front end (issue 12): redis-cli
(commands, RESP3 with -3, and --pipe mass insertion of 1,000,000 keys) and
redis-py (Debian's python3-redis: commands, pipelines, expiry, errors).

Usage: test_resp_clients.py [path/to/ringcached]
"""

import shutil
import subprocess

from harness import run_main
from resp_harness import RespServer, redis_py

PIPE_KEYS = 1000000


def cli(srv, *args, stdin=None, timeout=60):
    p = subprocess.run(["redis-cli", "-p", str(srv.resp_port)] + list(args), input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def redis_cli(c, srv):
    c.section("redis-cli")
    c.eq(cli(srv, "PING"), (0, "PONG\n"), "redis-cli PING")
    c.eq(cli(srv, "SET", "cli-key", "hello world"), (0, "OK\n"), "redis-cli SET")
    c.eq(cli(srv, "GET", "cli-key"), (0, "hello world\n"), "redis-cli GET")
    c.eq(cli(srv, "--raw", "INCRBY", "cli-n", "5"), (0, "5\n"), "redis-cli INCRBY")
    c.eq(cli(srv, "MGET", "cli-key", "nope"), (0, "hello world\n\n"), "redis-cli MGET")
    rc, out = cli(srv, "NOSUCH", "x")
    c.check(rc == 0 and "ERR unknown command 'NOSUCH'" in out, "redis-cli shows the error", out)
    rc, out = cli(srv, "-3", "GET", "nope")
    c.check(rc == 0 and out.strip() in ("", "(nil)"), "redis-cli -3 (HELLO 3) GET of a miss",
            out)
    rc, out = cli(srv, "-3", "HELLO", "3")
    c.check(rc == 0 and "proto" in out, "redis-cli -3 HELLO 3", out)
    rc, out = cli(srv, "INFO", "keyspace")
    c.check(rc == 0 and "db0:keys=" in out, "redis-cli INFO keyspace", out)
    h = srv.request("GET", "/cache/cli-key")
    c.check(h.status == 200 and h.body == b"hello world", "the key over HTTP", h)

    c.section("redis-cli --pipe: %d keys" % PIPE_KEYS)
    cli(srv, "FLUSHALL")
    data = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" %
                    (len(k), k, len(v), v)
                    for k, v in ((b"key:%d" % i, b"value:%d" % i) for i in range(PIPE_KEYS)))
    rc, out = cli(srv, "--pipe", stdin=data, timeout=300)
    c.check(rc == 0 and "errors: 0, replies: %d" % PIPE_KEYS in out,
            "redis-cli --pipe of %d SETs: no errors, every reply" % PIPE_KEYS, out[-300:])
    c.eq(cli(srv, "DBSIZE"), (0, "%d\n" % PIPE_KEYS), "DBSIZE is %d" % PIPE_KEYS)
    for i in (0, 1, 499999, PIPE_KEYS - 1):
        c.eq(cli(srv, "GET", "key:%d" % i), (0, "value:%d\n" % i), "GET key:%d" % i)


def redis_python(c, srv):
    redis = redis_py()
    if redis is None:
        c.check(False, "python3-redis is installed (tools/deps.sh)")
        return
    c.section("redis-py %s" % redis.__version__)
    r = redis.Redis(host="127.0.0.1", port=srv.resp_port, socket_timeout=10)
    c.eq(r.ping(), True, "ping")
    c.eq(r.set("py-key", b"\x00\xffbytes"), True, "set")
    c.eq(r.get("py-key"), b"\x00\xffbytes", "get binary")
    c.eq(r.set("py-key", "x", nx=True), None, "set nx on an existing key")
    c.eq(r.set("py-new", "x", nx=True, ex=30), True, "set nx ex")
    c.check(r.ttl("py-new") in (29, 30), "ttl after ex=30")
    c.eq(r.incr("py-n"), 1, "incr")
    c.eq(r.incrby("py-n", 9), 10, "incrby")
    c.eq(r.decr("py-n"), 9, "decr")
    c.eq(r.append("py-s", "ab"), 2, "append")
    c.eq(r.strlen("py-s"), 2, "strlen")
    c.eq(r.mset({"m1": "1", "m2": "2", "m3": "3"}), True, "mset")
    c.eq(r.mget(["m1", "m2", "nope", "m3"]), [b"1", b"2", None, b"3"], "mget")
    c.eq(r.exists("m1", "m2", "nope"), 2, "exists")
    c.eq(r.delete("m1", "m2", "nope"), 2, "delete")
    c.eq(r.expire("m3", 100), True, "expire")
    c.check(r.pttl("m3") > 0, "pttl")
    c.eq(r.persist("m3"), True, "persist")
    c.eq(r.getdel("m3"), b"3", "getdel")
    c.eq(r.getex("py-key", ex=50), b"x" if r.get("py-key") == b"x" else r.get("py-key"), "getex")
    c.eq(r.dbsize(), r.dbsize(), "dbsize answers")
    c.eq(r.client_setname("py-client"), True, "client setname")
    c.eq(r.client_getname(), "py-client", "client getname")
    c.check("redis_version" in r.info(), "info parses")
    try:
        r.incr("py-key")
        c.check(False, "incr of a non-integer raises")
    except redis.exceptions.ResponseError as e:
        c.eq(str(e), "value is not an integer or out of range", "incr of a non-integer raises")
    p = r.pipeline(transaction=False)
    for i in range(1000):
        p.set("pp:%d" % i, i)
    for i in range(1000):
        p.get("pp:%d" % i)
    out = p.execute()
    c.check(out[:1000] == [True] * 1000 and out[1000:] == [str(i).encode() for i in range(1000)],
            "a pipeline of 1000 SETs and 1000 GETs, answers in order")
    r.close()


def body(c):
    srv = RespServer(["--shards", "2", "--memory", "256M"], checks=c).start()
    if shutil.which("redis-cli"):
        redis_cli(c, srv)
    else:
        c.check(False, "redis-cli is installed (package redis-tools, tools/deps.sh)")
    redis_python(c, srv)


if __name__ == "__main__":
    run_main("test_resp_clients", body)
