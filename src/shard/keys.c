/*
 * keys.c - the RESP front end's key commands, from the connection's shard
 * to the owners of their keys and back (keys.h).
 *
 * Stages of a kv operation with --redis (f->stage), on the owner:
 *
 *   exec_owner --L1 has the key--> run --changed--> render, WRITE: l2_begin
 *       |                           |                  (SET or DEL in Redis)
 *       +--L1 miss--> PROMOTE: l2_begin (GET)          |
 *                       |                              v
 *                       +--> l2_step: run        l2_step: home
 *
 * The answer of a changing operation is rendered before the write goes to
 * Redis: it may point at bytes the next request on this shard changes.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "conn.h"
#include "fill.h"
#include "fwd.h"
#include "keys.h"
#include "l2.h"
#include "route.h"
#include "shard.h"
#include "ringcache/hash.h"
#include "ringcache/stats.h"

enum { KS_NONE = 0, KS_PROMOTE, KS_WRITE };

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs a kv operation on this shard's store and counts it. */
static void exec_kv(struct shard *sh, const struct cache_req *r, const struct cache_kv *kv,
		    struct reply *out, enum cache_kv_effect *effect)
{
	struct cache_kv_ctx ctx = {
		.cache = sh->cache,
		.st = sh->store,
		.now = sh->now_s,
		.now_ms = wall_ms(),
		.max_value = sh->cfg->max_value,
		.scratch = &sh->kv_scratch,
	};
	enum cache_outcome oc = cache_kv_exec(&ctx, r, kv, out, effect);

	route_count_outcome(sh, oc);
	/* As over HTTP (route.c, docs/cache-aside.md): a write fills the key's
	 * lease and answers its waiters; a delete revokes it, also of a key that
	 * was not there (GETDEL of a missing key still means "the value changed") */
	if (*effect == CACHE_KV_WROTE || *effect == CACHE_KV_DELETED ||
	    kv->op == CACHE_KV_GETDEL) {
		struct cache_req w = *r;
		bool wrote = *effect == CACHE_KV_WROTE;

		w.op = wrote ? CACHE_PUT : CACHE_DELETE;
		w.lease_token.len = 0;
		fill_after(sh, &w, wrote ? CACHE_STORED : CACHE_DELETED, out);
	}
	if (kv->op == CACHE_KV_FLUSH || (*effect != CACHE_KV_UNCHANGED &&
					 oc != CACHE_STORED && oc != CACHE_DELETED))
		route_count_store(sh);
}

static struct pipeline_req resp_req(const struct conn *c, const struct keys_req *k)
{
	struct pipeline_req q = {
		.to = { .proto = PROTO_RESP,
			.resp = { .proto = c->resp->proto, .form = k->form } },
		.uncounted = k->uncounted,
		.t0 = c->sh->now_ns,
	};
	return q;
}

void keys_single(struct conn *c, const struct keys_req *k)
{
	struct shard *sh = c->sh;
	struct pipeline_req q = resp_req(c, k);
	unsigned owner = hash_shard(k->req.hash, sh->srv->nshards);

	if (!k->kv.op) {
		q.timing = owner == sh->id ? PIPELINE_LOCAL : PIPELINE_REMOTE;
		if (owner == sh->id)
			route_exec_local(c, &k->req, &q);
		else
			route_forward(c, &k->req, &q, owner);
		return;
	}
	if (owner == sh->id && !sh->l2) {
		struct reply r;
		enum cache_kv_effect effect;
		q.timing = PIPELINE_LOCAL;
		stats_inc(&sh->stats->local_requests);
		exec_kv(sh, &k->req, &k->kv, &r, &effect);
		conn_answer(c, &r, &q);
		return;
	}
	struct fwd *f = fwd_create(sh, c, &k->req, &q.to);
	if (!f) {
		conn_abort(c);
		return;
	}
	/* what a later read's conflict check looks for (fwd_conflicts) */
	f->req.op = CACHE_PUT;
	f->kv = k->kv;
	f->owner = (uint16_t)owner;
	/* an answer that may be a value has room for the largest one: it is
	 * never made again (bounced), which would run the operation twice */
	f->room = k->value_answer ? sh->cfg->max_value + CONN_ANSWER_HEAD : CONN_ROOM;
	q.timing = owner == sh->id ? PIPELINE_LOCAL : PIPELINE_REMOTE;
	conn_wait(c, &f->slot, &q, f->room);
	if (owner == sh->id) {
		keys_exec_owner(sh, f);
	} else {
		f->remote = true;
		fwd_send(sh, owner, f);
	}
}

/* --- on the owner ----------------------------------------------------------- */

/* Runs f's operation in L1 now; with --redis a change continues at Redis. */
static void run(struct shard *sh, struct fwd *f)
{
	enum cache_kv_effect effect;

	exec_kv(sh, &f->req, &f->kv, &f->r, &effect);
	if (!sh->l2 || effect == CACHE_KV_UNCHANGED || f->kv.op == CACHE_KV_FLUSH ||
	    f->kv.op == CACHE_KV_COUNT) {
		fwd_answer(sh, f);
		return;
	}
	pipeline_render(&f->slot, &f->r, &f->to);
	f->stage = KS_WRITE;
	if (effect == CACHE_KV_WROTE &&
	    cache_kv_identity(sh->store, &f->req, &f->req.body, &f->req.body_len,
			      &f->req.content_type.p, &f->req.content_type.len) == 0) {
		/* l2_begin copies the value and its type now */
		f->req.op = CACHE_PUT;
	} else {
		f->req.op = CACHE_DELETE;
		f->outcome = CACHE_DELETED;  /* the answer is ours, not the DELETE's */
	}
	l2_begin(sh, f);
}

void keys_exec_owner(struct shard *sh, struct fwd *f)
{
	if (!f->resent)
		stats_inc(f->remote ? &sh->stats->forwarded_requests : &sh->stats->local_requests);
	if (sh->l2 && f->kv.op != CACHE_KV_COUNT && f->kv.op != CACHE_KV_FLUSH &&
	    !store_contains(sh->store, f->req.key, f->req.key_len, f->req.hash)) {
		/* what the operation reads is in Redis, if anywhere: read it
		 * into L1 first (coalesced with the other reads of the key) */
		f->stage = KS_PROMOTE;
		f->req.op = CACHE_GET;
		reply_status(&f->r, 404, NULL);
		l2_begin(sh, f);
		return;
	}
	run(sh, f);
}

static const char *l2_failure(uint8_t l2)
{
	switch (l2) {
	case REPLY_L2_TIMEOUT: return "TRYAGAIN the key could not be read from Redis (L2): timeout";
	case REPLY_L2_SKIPPED: return "TRYAGAIN the key could not be read from Redis (L2): unreachable";
	case REPLY_L2_BAD_DATA: return "ERR the key's value in Redis (L2) cannot be read";
	case REPLY_L2_ERROR: return "TRYAGAIN the key could not be read from Redis (L2): error";
	default: return NULL;
	}
}

void keys_l2_step(struct shard *sh, struct fwd *f)
{
	uint8_t stage = f->stage;

	f->stage = KS_NONE;
	if (stage == KS_WRITE) {
		fwd_home(sh, f);        /* rendered before the write went to Redis */
		return;
	}
	const char *why = l2_failure(f->r.l2);
	if (why) {
		/* not knowing the value, the operation cannot be applied */
		reply_status(&f->r, 503, NULL);
		f->r.kind = REPLY_ERROR;
		f->r.body = why;
		f->r.body_len = strlen(why);
		fwd_answer(sh, f);
		return;
	}
	f->req.op = CACHE_PUT;
	run(sh, f);
}

/* --- gathered commands ----------------------------------------------------------- */

struct fwd *keys_gather_begin(struct conn *c, enum keys_sum sum, bool wide_write)
{
	struct keys_req k;
	struct cache_req none;

	memset(&k, 0, sizeof(k));
	memset(&none, 0, sizeof(none));
	struct pipeline_req q = resp_req(c, &k);
	struct fwd *p = fwd_create(c->sh, c, &none, &q.to);
	if (!p) {
		conn_abort(c);
		return NULL;
	}
	p->wide_write = wide_write;
	p->issuing = true;
	reply_status(&p->r, 200, NULL);
	p->r.kind = sum == KEYS_SUM_COUNT ? REPLY_INT : REPLY_OK;
	conn_wait(c, &p->slot, &q, CONN_ANSWER_HEAD);
	return p;
}

bool keys_gather_part(struct conn *c, struct fwd *p, const struct keys_req *k, int to)
{
	struct shard *sh = c->sh;
	struct keys_req part = *k;
	unsigned owner = to >= 0 ? (unsigned)to : hash_shard(k->req.hash, sh->srv->nshards);

	part.form = RESP_FORM_NONE;
	struct pipeline_req q = resp_req(c, &part);
	struct fwd *f = fwd_create(sh, c, &part.req, &q.to);
	if (!f) {
		conn_abort(c);
		return false;
	}
	f->conn = NULL;         /* it answers its parent, never the connection */
	f->parent = p;
	f->kv = part.kv;
	f->owner = (uint16_t)owner;
	f->room = CONN_ROOM;
	p->pending++;
	/* Counted against c until it is home (keys_part_home): it never enters
	 * the pipeline, and behind a slow write (Redis) the parts of every
	 * MSET a client pipelines would otherwise pile up, their values
	 * counted nowhere per connection (conn.h's bound B) */
	pipeline_hold(&c->pipe, &p->slot, f->size);
	c->resp->parts_out++;
	if (owner != sh->id) {
		f->remote = true;
		fwd_send(sh, owner, f);
	} else {
		route_exec_forwarded(sh, f);
	}
	return true;
}

bool keys_gather_busy(const struct conn *c)
{
	return c->resp->parts_out >= KEYS_PARTS_MAX;
}

/* The parts are all home: p's answer goes to its connection. */
static void gather_done(struct fwd *p)
{
	struct conn *c = p->conn;

	if (!c) {
		fwd_destroy(p);         /* its connection has ended */
		return;
	}
	if (p->r.kind == REPLY_INT)
		p->r.num = p->sum;
	pipeline_render(&p->slot, &p->r, &p->to);
	conn_complete(c, &p->slot);
}

void keys_gather_end(struct fwd *p)
{
	p->issuing = false;
	if (!p->pending)
		gather_done(p);
}

void keys_gather_abandon(struct fwd *p)
{
	p->issuing = false;
	if (!p->pending)
		fwd_destroy(p);
}

/* What one part adds to its parent: 1 for a key found or deleted, a count,
 * or the first error (its text is static: the executor's or kv.c's). */
static void part_add(struct fwd *p, const struct fwd *f)
{
	const struct reply *r = &f->r;

	if (r->kind == REPLY_INT) {
		p->sum += r->num;
	} else if (r->kind == REPLY_ERROR ||
		   (r->kind == REPLY_REPR && r->status >= 400 && r->status != 404)) {
		if (p->r.kind != REPLY_ERROR && p->r.status < 400) {
			p->r = *r;
			p->r.body_store = NULL;
		}
	} else if (r->kind == REPLY_REPR &&
		   (r->status == 200 || r->status == 304 ||
		    (r->status == 204 && f->req.op == CACHE_DELETE))) {
		p->sum++;
	}
}

void keys_part_home(struct fwd *f)
{
	struct fwd *p = f->parent;
	struct conn *c = p->conn;       /* NULL: it has ended, its counts with it */

	part_add(p, f);
	if (c) {
		pipeline_unhold(&c->pipe, &p->slot, f->size);
		c->resp->parts_out--;
	}
	fwd_destroy(f);
	p->pending--;
	if (!p->issuing && !p->pending)
		gather_done(p);
	else if (c && !(c->flags & C_CLOSED))
		conn_maybe_resume(c);   /* it may send more parts, or read, now */
}
