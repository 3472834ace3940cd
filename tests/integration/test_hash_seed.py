#!/usr/bin/env python3
"""The key hash's seed is secret and per process (issue 11, defect 9).

With a public seed anyone could compute keys that all land on one shard (and
one pair of index buckets).  Keys chosen for shard 0 under the public default
seed must spread over both shards of a daemon that draws its own seed: all 64
landing on shard 0 again has odds of 2^-64.  With --hash-seed set to the
public value they do land on shard 0, which shows the check can fail.

usage: test_hash_seed.py [path/to/ringcached]
"""

from harness import Server, key_shard, run_main, stats

KEYS = 64


def aimed_keys():
    """KEYS keys that the public default seed puts on shard 0 of 2."""
    out, i = [], 0
    while len(out) < KEYS:
        k = "aim%d" % i
        if key_shard(k, 2) == 0:
            out.append(k)
        i += 1
    return out


def sets_per_shard(c, srv, keys):
    for k in keys:
        r = srv.request("PUT", "/cache/" + k, body=b"v")
        if r.status not in (201, 204):
            c.check(False, "PUT %s stored" % k, "status %d" % r.status)
            return None
    return [s["sets"] for s in stats(srv)["per_shard"]]


def body(c):
    keys = aimed_keys()
    with Server(["--shards", "2", "--memory", "16M"], checks=c,
                hash_seed="0x72696e6763616368").start() as srv:
        sets = sets_per_shard(c, srv, keys)
        c.eq(sets, [KEYS, 0], "with the public seed fixed, the aimed keys all land on shard 0")
    for attempt in range(2):
        with Server(["--shards", "2", "--memory", "16M"], checks=c,
                    hash_seed="random").start() as srv:
            sets = sets_per_shard(c, srv, keys)
            c.check(sets is not None and min(sets) > 0,
                    "daemon %d with its own seed: the aimed keys spread over both shards"
                    % (attempt + 1), "sets per shard %r" % (sets,))


if __name__ == "__main__":
    run_main("test_hash_seed", body)
