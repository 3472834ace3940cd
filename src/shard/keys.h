/*
 * keys.h - the RESP front end's key commands on the shards that own the
 * keys (cmd.h parses them; this routes and executes them).
 *
 * A command on one key goes to its owner exactly as an HTTP request does
 * (route.h): GET, SET, DEL are the executor's GET, PUT and DELETE with a
 * RESP form (resp.h) saying how the answer reads; what they cannot say (SET
 * NX/XX/GET/KEEPTTL, INCRBY, APPEND, GETDEL, GETEX, EXPIRE, PERSIST) travels
 * in the fwd's `kv` and runs as one step on the owner (cache.h,
 * cache_kv_exec), so it is atomic there.
 *
 * With --redis, on the owner:
 *
 *   GET-like    L1 miss -> Redis read, coalesced, promoted (l2.h), as HTTP
 *   SET, DEL    L1 write -> written through, invalidation published, as HTTP
 *   kv op       L1 miss -> promote first (stage PROMOTE); then the op in L1;
 *               a change -> the answer is rendered, and the new value is
 *               written through (SET) or the key deleted (DEL) in Redis
 *               (stage WRITE); the answer goes home once Redis has it
 *
 * Gathered commands (DEL/UNLINK/EXISTS/MSET of several keys, DBSIZE,
 * FLUSHALL): a parent fwd waits in the pipeline, never leaving its shard;
 * one part per key (per shard for DBSIZE/FLUSHALL) goes to its owner and
 * comes home to the parent, which adds up the parts and is answered when the
 * last is home.  Parts are sent a few at a time (cmd.c stops issuing, and
 * reading the connection, while KEYS_PARTS_MAX of its parts are out, of
 * whichever commands), so a command of a million keys, or many commands
 * pipelined, hold a bounded number of them; and a part's copy of its key
 * (an MSET's value) counts against its connection's CONN_OUT_MAX as its
 * parent's (pipeline_hold) until it is home.
 */
#ifndef RINGCACHE_KEYS_H
#define RINGCACHE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/cache.h"

struct conn;
struct fwd;
struct shard;

#define KEYS_PARTS_MAX 64       /* parts of a connection's gathered commands out at once */

/* One key command as cmd.c parsed it. */
struct keys_req {
	struct cache_req req;   /* key, hash, op; body and ttl for a PUT */
	struct cache_kv kv;     /* kv.op 0: req.op alone */
	uint8_t form;           /* enum resp_form */
	bool uncounted;         /* MGET's values after the first */
	bool value_answer;      /* a kv op that may answer a value: room for one */
};

/* Routes a one-key command of c: answered here or at its owner. */
void keys_single(struct conn *c, const struct keys_req *k);

/* How a gathered command's parts add up. */
enum keys_sum {
	KEYS_SUM_COUNT,         /* an integer: parts found, deleted, counted */
	KEYS_SUM_OK,            /* +OK unless a part failed (its error) */
};

/*
 * Starts a gathered command of c: its parent, waiting in c's pipeline.
 * wide_write: its parts write (a read made again after it could see them).
 * NULL without memory (c is aborted).
 */
struct fwd *keys_gather_begin(struct conn *c, enum keys_sum sum, bool wide_write);

/* Sends one part of parent p to the owner of k's key, or to shard `to`
 * when k has no key (DBSIZE, FLUSHALL).  False without memory (c aborted). */
bool keys_gather_part(struct conn *c, struct fwd *p, const struct keys_req *k, int to);

/* Every part of p has been sent: p is answered once they are home. */
void keys_gather_end(struct fwd *p);

/* Whether c has KEYS_PARTS_MAX parts out: no more may be sent. */
bool keys_gather_busy(const struct conn *c);

/* A connection that ends while issuing p: p is freed once its parts are
 * home (its slot was orphaned with the pipeline). */
void keys_gather_abandon(struct fwd *p);

/* Owner: runs f's kv operation (route_exec_forwarded for kv.op != 0). */
void keys_exec_owner(struct shard *sh, struct fwd *f);

/* Owner: f came back from Redis between its steps (fwd_answer, stage set). */
void keys_l2_step(struct shard *sh, struct fwd *f);

/* Origin: a part is home (fwd.c arrive_home). */
void keys_part_home(struct fwd *f);

#endif
