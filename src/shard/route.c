/*
 * route.c - what a complete request asks for, and where it is answered.
 *
 *   /cache/{key}  key decoding, ?ttl=; then by the key's hash: this shard's
 *                 store (exec_local), another shard's (fwd.h), and with
 *                 --redis the coherence thread after L1 (l2.h)
 *   /tags/{tag}   DELETE: every shard purges its keys carrying the tag, a
 *                 slice per loop iteration (fwd.c); the counts are summed
 *                 here (route_purge_part_home)
 *   /health       always open
 *   /stats, /metrics, /cluster
 *   /dashboard    a page that polls /stats (src/daemon/dashboard.html)
 *
 * The table below is the only list of paths, methods and auth rules: both
 * route_request() and route_refuse_early() check a request against it, in
 * one order (path, then method, then key), so they cannot drift apart.
 * conn.c calls in here once a request is whole; answers go back through
 * conn_answer(), or later through a fwd.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"
#include "fill.h"
#include "fwd.h"
#include "keys.h"
#include "l2.h"
#include "route.h"
#include "shard.h"
#include "daemon/dashboard.h"
#include "ringcache/auth.h"
#include "ringcache/coherence.h"
#include "ringcache/hash.h"
#include "ringcache/stats.h"
#include "ringcache/store.h"

#define M(method) (1u << HTTP_METHOD_##method)

static const char json_type[] = "application/json";

struct route {
	const char *path;
	uint8_t len;
	bool prefix;            /* path is a prefix (the rest is the handler's) */
	bool auth;              /* needs an API key when keys are configured */
	uint8_t methods;        /* bit per enum http_method */
	const char *allow;      /* the 405's Allow header, from `methods` */
	void (*serve)(struct conn *c, const struct http_request *req, const uint8_t *body,
		      size_t body_len);
};

static void serve_cache(struct conn *c, const struct http_request *req, const uint8_t *body,
			size_t body_len);
static void serve_health(struct conn *c, const struct http_request *req, const uint8_t *body,
			 size_t body_len);
static void serve_stats(struct conn *c, const struct http_request *req, const uint8_t *body,
			size_t body_len);
static void serve_cluster(struct conn *c, const struct http_request *req, const uint8_t *body,
			  size_t body_len);
static void serve_dashboard(struct conn *c, const struct http_request *req, const uint8_t *body,
			    size_t body_len);
static void serve_tags(struct conn *c, const struct http_request *req, const uint8_t *body,
		       size_t body_len);

#define ROUTE_READ M(GET) | M(HEAD), "Allow: GET, HEAD\r\n"

static const struct route routes[] = {
	{ "/cache/", 7, true, true,
	  M(GET) | M(HEAD) | M(PUT) | M(POST) | M(DELETE),
	  "Allow: GET, HEAD, PUT, POST, DELETE\r\n", serve_cache },
	/* a purge removes what /cache/ writes: the same key rule */
	{ "/tags/", 6, true, true, M(DELETE), "Allow: DELETE\r\n", serve_tags },
	{ "/health", 7, false, false, ROUTE_READ, serve_health },
	{ "/stats", 6, false, true, ROUTE_READ, serve_stats },
	{ "/metrics", 8, false, true, ROUTE_READ, serve_stats },
	{ "/cluster", 8, false, true, ROUTE_READ, serve_cluster },
	/* open like /health: the page is the same constant bytes for everyone
	 * and holds no secret; the figures it shows come from /stats, which
	 * asks for the key (the page asks the operator for it) */
	{ "/dashboard", 10, false, false, ROUTE_READ, serve_dashboard },
};

static const char www_auth[] = "WWW-Authenticate: Bearer realm=\"ringcache\"\r\n";

static const struct route *route_find(const struct http_str *path)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];
		if ((rt->prefix ? path->len >= rt->len : path->len == rt->len) &&
		    memcmp(path->p, rt->path, rt->len) == 0)
			return rt;
	}
	return NULL;
}

/*
 * The key set is loaded once per check and used only within it, inside one
 * loop iteration: the main thread frees a set swapped out by SIGHUP once
 * every shard's `turns` has moved past the swap (src/main.c).  seq_cst, the
 * reader's half of the store-buffering pair main.c describes.
 */
static bool authorized(const struct shard *sh, const struct http_request *req)
{
	const struct auth *a = atomic_load_explicit(&sh->srv->auth, memory_order_seq_cst);

	return !a || auth_check(a, req->x_api_key.p, req->x_api_key.len, req->authorization.p,
				req->authorization.len);
}

/*
 * The table's verdict on a request: 0 and *rt when it may be served, else
 * the refusal in *r (404 unknown path, 405 method, 401 key).
 */
static inline int route_check(const struct shard *sh, const struct http_request *req,
			      const struct route **rt, struct reply *r)
{
	*rt = route_find(&req->path);
	if (!*rt) {
		reply_status(r, 404, NULL);
	} else if (!((*rt)->methods & (1u << req->method))) {
		reply_status(r, 405, NULL);
		r->headers = (*rt)->allow;
	} else if ((*rt)->auth && !authorized(sh, req)) {
		reply_status(r, 401, NULL);
		r->headers = www_auth;
	} else {
		return 0;
	}
	return r->status;
}

/* How req's answer is written, and from when it is timed (pipeline.h):
 * PIPELINE_UNTIMED for refusals and admin paths. */
static inline void answer_to(struct pipeline_req *q, const struct conn *c,
			     const struct http_request *req, enum pipeline_timing timing)
{
	q->to.proto = PROTO_HTTP;
	q->to.http = (struct http_answer_to){ .minor = req->minor, .keep_alive = req->keep_alive,
					      .head = req->method == HTTP_METHOD_HEAD,
					      .date = c->sh->date };
	q->timing = (uint8_t)timing;
	q->uncounted = false;
	q->t0 = timing == PIPELINE_UNTIMED ? 0 : c->sh->now_ns;
}

static struct pipeline_req untimed(const struct conn *c, const struct http_request *req)
{
	struct pipeline_req q;

	answer_to(&q, c, req, PIPELINE_UNTIMED);
	return q;
}

static void answer_status(struct conn *c, const struct http_request *req, int status,
			  const char *text)
{
	struct pipeline_req q = untimed(c, req);
	struct reply r;

	reply_status(&r, status, text);
	conn_answer(c, &r, &q);
}

void route_request(struct conn *c, const struct http_request *req, const uint8_t *body,
		   size_t body_len)
{
	struct shard *sh = c->sh;
	const struct route *rt;
	struct reply r;

	stats_inc(&sh->stats->requests);
	if (route_check(sh, req, &rt, &r)) {
		struct pipeline_req q = untimed(c, req);
		conn_answer(c, &r, &q);
		return;
	}
	rt->serve(c, req, body, body_len);
}

bool route_refuse_early(struct conn *c, const struct http_request *req)
{
	const struct route *rt;
	struct reply r;

	if (!route_check(c->sh, req, &rt, &r))
		return false;
	struct pipeline_req q = untimed(c, req);
	q.to.http.keep_alive = false; /* the body that follows is not read */
	stats_inc(&c->sh->stats->requests);
	conn_answer(c, &r, &q);
	return true;
}

/* --- /cache/ ------------------------------------------------------------- */

static void count_other(struct shard *sh, enum cache_outcome oc)
{
	struct stats_shard *st = sh->stats;

	switch (oc) {
	case CACHE_HIT: break;  /* count_outcome() counts it */
	case CACHE_MISS: stats_inc(&st->misses); break;
	case CACHE_NOT_MODIFIED: stats_inc(&st->hits); stats_inc(&st->not_modified); break;
	case CACHE_STORED: stats_inc(&st->sets); break;
	case CACHE_DELETED: stats_inc(&st->deletes); break;
	case CACHE_ABSENT: break;
	case CACHE_FAILED: break;
	case CACHE_STALE: stats_inc(&st->stale); break;
	}
	if (oc == CACHE_STORED || oc == CACHE_DELETED || oc == CACHE_FAILED)
		route_count_store(sh);  /* a failed write may have evicted */
}

/* route_count_outcome(), with a hit (most of what a cache does) counted
 * inline on this file's paths */
static inline void count_outcome(struct shard *sh, enum cache_outcome oc)
{
	if (oc == CACHE_HIT)
		stats_inc(&sh->stats->hits);
	else
		count_other(sh, oc);
}

void route_count_outcome(struct shard *sh, enum cache_outcome oc)
{
	count_outcome(sh, oc);
}

void route_count_store(struct shard *sh)
{
	struct store_counts sc;

	store_counts(sh->store, &sc);
	stats_store_counts(sh->stats, &sc);
}

/*
 * With --redis, a write, a delete or an L1 miss continues at the coherence
 * thread; a lease GET's final miss waits for a fill or takes the lease
 * (fill.h): the request is copied into a fwd that waits in the pipeline until
 * l2.c or fill.c answers it.
 */
static void exec_local_wait(struct conn *c, const struct cache_req *cr, const struct reply *r,
			    enum cache_outcome oc, const struct pipeline_req *q)
{
	struct shard *sh = c->sh;
	struct fwd *f = fwd_create(sh, c, cr, &q->to);

	if (!f) {
		conn_abort(c);
		return;
	}
	f->r = *r;
	f->outcome = (uint8_t)oc;
	f->room = CONN_ROOM;
	conn_wait(c, &f->slot, q, CONN_ROOM);
	if (fill_wants(cr, oc))
		fill_missed(sh, f);     /* with --redis: the read and the lease in one step */
	else
		l2_begin(sh, f);
}

/* After cache_exec(): a stale lease GET may carry a refresh lease; a miss
 * that continues at Redis or waits for a fill waits in the pipeline; the
 * rest is answered now. */
static inline void exec_local_finish(struct conn *c, const struct cache_req *cr,
				     struct reply *r, enum cache_outcome oc,
				     const struct pipeline_req *q)
{
	struct shard *sh = c->sh;
	char tok[LEASE_TOKEN_LEN + 1];          /* rendered before it goes (conn_answer) */

	if (fill_stale_wants(cr, oc) && fill_try(sh, cr, tok, r))
		fill_note(c, cr, tok);
	/* a hit never continues (l2_continues, fill_wants): tested first */
	if (oc != CACHE_HIT && (l2_continues(sh, cr->op, oc) || fill_wants(cr, oc)))
		exec_local_wait(c, cr, r, oc, q);
	else
		conn_answer(c, r, q);
}

/* A PUT or DELETE carrying X-Cache-Lease: its token is checked first (409:
 * nothing changes), and fill_refuses() may drop it, so it works on a copy. */
static void exec_local_leased(struct conn *c, const struct cache_req *req,
			      const struct pipeline_req *q)
{
	struct shard *sh = c->sh;
	struct cache_req copy = *req, *cr = &copy;
	struct reply r;
	enum cache_outcome oc;

	if (fill_refuses(sh, cr, &r)) {
		fill_answered(c, req, CACHE_FAILED, r.status);
		conn_answer(c, &r, q);  /* 409: nothing changed */
		return;
	}
	oc = cache_exec(sh->cache, cr, &r);
	count_outcome(sh, oc);
	fill_after(sh, cr, oc, &r);
	fill_answered(c, req, oc, r.status);    /* req: cr may have lost its token */
	exec_local_finish(c, cr, &r, oc, q);
}

/* route_exec_local(), inline in serve_cache(): the path of most requests */
static inline void exec_local(struct conn *c, const struct cache_req *cr,
			      const struct pipeline_req *q)
{
	struct shard *sh = c->sh;
	struct reply r;
	enum cache_outcome oc;

	stats_inc(&sh->stats->local_requests);
	if (cr->lease_token.len) {
		exec_local_leased(c, cr, q);
		return;
	}
	oc = cache_exec(sh->cache, cr, &r);
	count_outcome(sh, oc);
	if (cr->op == CACHE_PUT || cr->op == CACHE_DELETE)
		fill_after(sh, cr, oc, &r);     /* only a write fills or ends a lease */
	exec_local_finish(c, cr, &r, oc, q);
}

void route_exec_local(struct conn *c, const struct cache_req *cr, const struct pipeline_req *q)
{
	exec_local(c, cr, q);
}

void route_exec_forwarded(struct shard *sh, struct fwd *f)
{
	if (f->lease_abandon) {
		fill_exec_abandon(sh, f);       /* its client's connection ended */
		return;
	}
	if (f->lease_sweep) {
		fill_exec_sweep(sh, f);         /* a waiter's connection ended */
		return;
	}
	if (atomic_load_explicit(&f->cancelled, memory_order_relaxed)) {
		/* nobody waits for it: not executed (its client never learns
		 * whether a write of it was applied, and now it was not) */
		fwd_home(sh, f);
		return;
	}
	if (f->kv.op) {
		keys_exec_owner(sh, f); /* a RESP operation beyond GET/PUT/DELETE */
		return;
	}
	if (f->req.op == CACHE_TAG_PURGE) {
		fwd_purge_begin(sh, f); /* this shard's part of DELETE /tags/ */
		return;
	}
	uint32_t tok_len = f->req.lease_token.len;
	if (fill_refuses(sh, &f->req, &f->r)) {
		f->outcome = CACHE_FAILED;
		fwd_answer(sh, f);      /* 409: nothing changed */
		return;
	}
	f->lease_dropped = tok_len && !f->req.lease_token.len;
	enum cache_outcome oc = cache_exec(sh->cache, &f->req, &f->r);

	f->outcome = (uint8_t)oc;
	fill_after(sh, &f->req, oc, &f->r);
	if (fill_stale_wants(&f->req, oc))
		fill_try_fwd(sh, f);    /* noted on its connection at home */
	if (f->via_l2 && f->r.cache == REPLY_CACHE_HIT)
		f->r.cache = REPLY_CACHE_HIT_L2;   /* made again for room: still Redis' answer */
	if (f->via_fill && f->r.cache == REPLY_CACHE_HIT)
		f->r.cache = REPLY_CACHE_HIT_FILL; /* made again for room: still the fill's */
	if (!f->resent) {
		/* counted once, not again when it comes back for room (fwd.h) */
		stats_inc(f->remote ? &sh->stats->forwarded_requests : &sh->stats->local_requests);
		count_outcome(sh, oc);
	}
	if (fill_wants(&f->req, oc))
		fill_missed(sh, f);     /* with --redis: the read and the lease in one step */
	else if (l2_continues(sh, f->req.op, oc))
		l2_begin(sh, f);
	else
		fwd_answer(sh, f);
}

/*
 * X-Cache-Fill and X-Cache-Lease (docs/cache-aside.md) into cr.  True when
 * the request was answered here: 400 for an X-Cache-Fill other than
 * "lease"; 409 for a token that cannot be one (no owner need look).
 */
static bool fill_headers(struct conn *c, const struct http_request *req, struct cache_req *cr)
{
	const struct http_str *fill = &req->x_cache_fill, *tok = &req->x_cache_lease;

	if (fill->p) {          /* present, even empty */
		if (fill->len != 5 || strncasecmp(fill->p, "lease", 5) != 0) {
			answer_status(c, req, 400, "bad X-Cache-Fill: only \"lease\" is known\n");
			return true;
		}
		cr->fill_lease = cr->op == CACHE_GET || cr->op == CACHE_HEAD;
	}
	/* a token header present but empty is malformed, not absent: 409 */
	if (!tok->p || cr->op == CACHE_GET || cr->op == CACHE_HEAD)
		return false;
	if (!lease_token_valid(tok->p, tok->len)) {
		stats_inc(&c->sh->stats->lease_conflicts);
		answer_status(c, req, 409, "lease revoked, expired or unknown\n");
		return true;
	}
	cr->lease_token = *tok;
	return false;
}

/* The store operation of each method the route table lets into
 * serve_cache(): POST is a PUT. */
static const uint8_t cache_op_of[] = {
	[HTTP_METHOD_GET] = CACHE_GET, [HTTP_METHOD_HEAD] = CACHE_HEAD,
	[HTTP_METHOD_PUT] = CACHE_PUT, [HTTP_METHOD_POST] = CACHE_PUT,
	[HTTP_METHOD_DELETE] = CACHE_DELETE,
};

/* ?<name>=<seconds> of a /cache/ request into *out (left as is when absent);
 * true when it was answered 400 with `text` (not a number, or above max). */
static bool query_secs(struct conn *c, const struct http_request *req, const char *name,
		       uint32_t max, int64_t *out, const char *text)
{
	uint32_t v;
	int rc = http_query_u32(req->query, name, &v);

	if (rc < 0 || (rc == 1 && v > max)) {
		answer_status(c, req, 400, text);
		return true;
	}
	if (rc == 1)
		*out = v;
	return false;
}

static void serve_cache(struct conn *c, const struct http_request *req, const uint8_t *body,
			size_t body_len)
{
	struct shard *sh = c->sh;
	const struct http_str *path = &req->path;
	struct cache_req cr;
	const uint8_t *key;     /* in the request's bytes, or decoded in key_scratch */
	int klen;

	klen = http_key_view(path->p + 7, path->len - 7, sh->key_scratch, &key);
	if (klen <= 0) {
		answer_status(c, req, 400, "bad key\n");
		return;
	}
	if ((unsigned)klen > STORE_KEY_MAX) {
		answer_status(c, req, 414, "key too long\n");
		return;
	}
	if (coh_key_reserved(sh->srv->coh, key, (size_t)klen)) {
		answer_status(c, req, 400,
			      "key reserved in Redis (instance registry, fill leases, tag sets)\n");
		return;
	}
	cr.ttl = cr.swr = cr.sie = -1;  /* not given */
	/* most requests have no query: the hit path skips these */
	if (req->query.len && query_secs(c, req, "ttl", UINT32_MAX, &cr.ttl, "bad ttl\n"))
		return;
	if (req->tags_repeated) {
		answer_status(c, req, 400, "bad X-Cache-Tags: send one field, tags separated by ','\n");
		return;
	}
	if (req->query.len &&
	    (query_secs(c, req, "swr", CACHE_STALE_MAX, &cr.swr, "bad swr: 0..31536000 seconds\n") ||
	     query_secs(c, req, "sie", CACHE_STALE_MAX, &cr.sie, "bad sie: 0..31536000 seconds\n")))
		return;
	/* every field set once, none zeroed first: most requests are GETs, and
	 * a memset of the whole request would cost them more than the fields */
	cr.op = cache_op_of[req->method];
	cr.stale_ok = true;     /* HTTP serves stale windows; RESP does not (cache.h) */
	cr.fill_lease = false;  /* fill_headers() */
	cr.key = key;
	cr.key_len = (uint32_t)klen;
	cr.hash = hash_key(cr.key, cr.key_len);
	cr.body = body;
	cr.body_len = (uint32_t)body_len;
	cr.ext = NULL;
	cr.ext_len = 0;
	cr.tags = cr.op == CACHE_PUT ? req->x_cache_tags : (struct http_str){ 0 };
	cr.content_type = req->content_type;
	cr.accept_encoding = req->accept_encoding;
	cr.if_none_match = req->if_none_match;
	cr.cache_control = req->cache_control;
	cr.lease_token = (struct http_str){ 0 };        /* fill_headers() */
	if (fill_headers(c, req, &cr))
		return;

	struct pipeline_req q;
	unsigned owner = hash_shard(cr.hash, sh->srv->nshards);
	if (owner == sh->id) {
		answer_to(&q, c, req, PIPELINE_LOCAL);
		exec_local(c, &cr, &q);
		return;
	}
	answer_to(&q, c, req, PIPELINE_REMOTE);
	route_forward(c, &cr, &q, owner);
}

struct fwd *route_forward(struct conn *c, const struct cache_req *cr,
			  const struct pipeline_req *q, unsigned owner)
{
	struct shard *sh = c->sh;
	struct fwd *f = fwd_create(sh, c, cr, &q->to);

	if (!f) {
		conn_abort(c);
		return NULL;
	}
	f->remote = true;
	f->owner = (uint16_t)owner;
	f->room = CONN_ROOM;
	conn_wait(c, &f->slot, q, CONN_ROOM);
	fwd_send(sh, owner, f);
	return f;
}

/* --- DELETE /tags/{tag} ----------------------------------------------------- */

/*
 * A purge is a parent fwd that waits in the pipeline and never leaves this
 * shard, and one part per shard (this one included), each run by its shard
 * a slice at a time (fwd_purge_begin); the parts come home here with the
 * keys they removed in `sum`.
 */
static void serve_tags(struct conn *c, const struct http_request *req, const uint8_t *body,
		       size_t body_len)
{
	struct shard *sh = c->sh;
	const struct http_str *path = &req->path;
	struct cache_req cr;

	(void)body;
	(void)body_len;
	int tlen = http_decode_key(path->p + 6, path->len - 6, sh->key_scratch);
	if (tlen <= 0 || !cache_tag_valid(sh->key_scratch, (size_t)tlen)) {
		answer_status(c, req, 400, "bad tag: 1..128 bytes of visible ASCII but ','\n");
		return;
	}
	memset(&cr, 0, sizeof(cr));
	cr.op = CACHE_TAG_PURGE;
	cr.key = sh->key_scratch;
	cr.key_len = (uint32_t)tlen;
	struct pipeline_req q = untimed(c, req);
	struct fwd *p = fwd_create(sh, c, &cr, &q.to);
	if (!p) {
		conn_abort(c);
		return;
	}
	conn_wait(c, &p->slot, &q, 0);  /* its answer is a short line: room not counted */
	p->pending = sh->srv->nshards + (sh->l2 ? 1 : 0);
	if (sh->l2)
		l2_purge(sh, p);        /* first: it may answer at once */
	for (unsigned s = 0; s < sh->srv->nshards; s++) {
		struct fwd *f = fwd_create(sh, c, &cr, &q.to);
		if (!f) {
			p->pending -= sh->srv->nshards - s;
			p->sum = -1;    /* answered 500 once the parts sent come home */
			if (!p->pending)
				route_purge_part_home(NULL, p);
			return;
		}
		f->conn = NULL; /* it answers its parent, never the connection */
		f->parent = p;
		f->owner = (uint16_t)s;
		if (s != sh->id) {
			f->remote = true;
			fwd_send(sh, s, f);
		} else {
			fwd_purge_begin(sh, f);
		}
	}
}

void route_purge_l2_done(struct fwd *p, enum reply_l2 l2, uint64_t count)
{
	p->r.l2 = (uint8_t)l2;
	p->kv.num = (int64_t)count;     /* a purge parent's: keys deleted in Redis */
	if (--p->pending == 0)
		route_purge_part_home(NULL, p);
}

void route_purge_part_home(struct fwd *f, struct fwd *p)
{
	if (f) {
		p = f->parent;
		if (p->sum >= 0)
			p->sum += f->sum;
		fwd_destroy(f);
		if (--p->pending)
			return;
	}
	struct conn *c = p->conn;
	if (!c) {
		fwd_destroy(p);         /* its connection has ended */
		return;
	}
	char text[96];
	uint8_t l2 = p->r.l2;
	if (p->sum < 0) {
		reply_status(&p->r, 500, "no memory for the purge\n");
	} else {
		/* removed: from this instance's L1; with --redis, l2_removed:
		 * from Redis (X-L2 says whether Redis was purged) */
		int n = l2 ? snprintf(text, sizeof(text), "{\"removed\": %lld, \"l2_removed\": %lld}\n",
				      (long long)p->sum, (long long)p->kv.num)
			   : snprintf(text, sizeof(text), "{\"removed\": %lld}\n", (long long)p->sum);
		reply_status(&p->r, 200, NULL);
		p->r.l2 = l2;
		p->r.type = json_type;
		p->r.type_len = sizeof(json_type) - 1;
		p->r.body = text;
		p->r.body_len = (size_t)n;
	}
	p->to.http.date = c->sh->date;
	pipeline_render(&p->slot, &p->r, &p->to);      /* copies the text */
	conn_complete(c, &p->slot);
}

/* --- the other paths ------------------------------------------------------ */

static void serve_health(struct conn *c, const struct http_request *req, const uint8_t *body,
			 size_t body_len)
{
	(void)body;
	(void)body_len;
	answer_status(c, req, 200, "OK\n");
}

static const char prom_type[] = "text/plain; version=0.0.4; charset=utf-8";

/* GET /stats (JSON) and /metrics (Prometheus): every shard's counters, and
 * the coherence thread's as the table "l2". */
static void serve_stats(struct conn *c, const struct http_request *req, const uint8_t *body,
			size_t body_len)
{
	static const struct stats_field coh_fields[] = { COH_STATS(STATS_FIELD_DESC) };
	struct server *srv = c->sh->srv;
	bool metrics = req->path.len == 8;
	struct stats_table l2 = { "l2", coh_fields, sizeof(coh_fields) / sizeof(coh_fields[0]),
				  NULL };
	uint64_t l2_values[sizeof(coh_fields) / sizeof(coh_fields[0])];
	struct buf out = { 0 };
	int rc;

	(void)body;
	(void)body_len;
	if (srv->coh) {
		struct coh_stats cs;
		coh_stats(srv->coh, &cs);
		unsigned i = 0;
#define COH_VALUE(name, kind, help) l2_values[i++] = cs.name;
		COH_STATS(COH_VALUE)
#undef COH_VALUE
		l2.values = l2_values;
	}
	if (metrics)
		rc = stats_format_prometheus(srv->stats, srv->nshards, &l2, srv->coh ? 1 : 0, &out);
	else
		rc = stats_format_json(srv->stats, srv->nshards, &l2, srv->coh ? 1 : 0, &out);
	struct pipeline_req q = untimed(c, req);
	struct reply r;
	if (rc) {
		reply_status(&r, 500, NULL);
	} else {
		reply_status(&r, 200, NULL);
		r.type = metrics ? prom_type : json_type;
		r.type_len = (uint32_t)strlen(r.type);
		r.body = out.data;
		r.body_len = out.len;
	}
	conn_answer(c, &r, &q);
	buf_deinit(&out);
}

/* GET /cluster: the live instances, from the coherence thread's registry. */
static void serve_cluster(struct conn *c, const struct http_request *req, const uint8_t *body,
			  size_t body_len)
{
	struct shard *sh = c->sh;
	struct cache_req cr;

	(void)body;
	(void)body_len;
	if (!sh->srv->coh) {
		answer_status(c, req, 404, "no --redis: this instance runs L1 only\n");
		return;
	}
	memset(&cr, 0, sizeof(cr));
	struct pipeline_req q = untimed(c, req);
	struct fwd *f = fwd_create(sh, c, &cr, &q.to);
	if (!f) {
		conn_abort(c);
		return;
	}
	/* the registry is anyone's to write: its answer may be as large as
	 * COH_CLUSTER_MAX, and that room is held, so that a client pipelining
	 * /cluster is stopped by CONN_OUT_MAX like any other (conn.h) */
	conn_wait(c, &f->slot, &q, COH_CLUSTER_MAX + CONN_ANSWER_HEAD);
	l2_cluster(sh, f);
}

/* GET /dashboard: the page built into the binary (daemon/dashboard.h). */
static void serve_dashboard(struct conn *c, const struct http_request *req, const uint8_t *body,
			    size_t body_len)
{
	struct pipeline_req q = untimed(c, req);
	struct reply r;

	(void)body;
	(void)body_len;
	reply_status(&r, 200, NULL);
	r.type = DASHBOARD_TYPE;
	r.type_len = sizeof(DASHBOARD_TYPE) - 1;
	r.headers = dashboard_headers;
	r.body = dashboard_html;
	r.body_len = dashboard_html_len;
	conn_answer(c, &r, &q);
}
