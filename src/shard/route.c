/*
 * route.c - what a complete request asks for, and where it is answered.
 *
 *   /cache/{key}  auth, key decoding, ?ttl=; then by the key's hash:
 *                 this shard's store (exec_local), another shard's
 *                 (exec_forward, over the rings), and with --redis the
 *                 coherence thread after L1 (l2.c)
 *   /health       always open
 *   /stats, /metrics, /cluster   behind the API key when keys are set
 *
 * conn.c owns the connection and calls in here once a request is whole;
 * answers go back through conn_emit() or into a pending slot.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "ringcache/hash.h"

static void emit_status(struct shard *sh, struct conn *c, int status, uint8_t minor,
			bool keep_alive, const char *extra, const char *body)
{
	conn_emit(sh, c, status, minor, keep_alive, extra, body, false);
}

/*
 * Counts what the store answered (docs/stats.md).  A miss is a 404, so an
 * error too, unless Redis gets asked next: l2.c counts the 404 then.
 */
static void count_outcome(struct shard *sh, enum cache_outcome oc)
{
	struct stats_shard *st = sh->stats;

	switch (oc) {
	case CACHE_HIT: stats_inc(&st->hits); break;
	case CACHE_MISS:
		stats_inc(&st->misses);
		if (!sh->srv->coh)
			stats_inc(&st->errors);
		break;
	case CACHE_NOT_MODIFIED: stats_inc(&st->hits); stats_inc(&st->not_modified); break;
	case CACHE_STORED: stats_inc(&st->sets); break;
	case CACHE_DELETED: stats_inc(&st->deletes); break;
	case CACHE_ABSENT:
		/* with Redis the key may be there: l2.c counts the 404 */
		if (!sh->srv->coh)
			stats_inc(&st->errors);
		break;
	case CACHE_FAILED: stats_inc(&st->errors); break;
	}
}

/* Queues f, an answer that will come later, in c's pending FIFO. */
static void pend_async(struct conn *c, struct fwd *f)
{
	if (c->pend_tail)
		c->pend_tail->pnext = f;
	else
		c->pend_head = f;
	c->pend_tail = f;
	c->npend++;
	c->inflight++;
}

/* Drops the newest pending slot (the one conn_response_buf() just made behind
 * `prev`, never the head: a slot is made only behind an outstanding answer). */
static void unpend_tail(struct conn *c, struct fwd *prev, struct fwd *slot)
{
	prev->pnext = NULL;
	c->pend_tail = prev;
	c->npend--;
	fwd_destroy(slot);
}

/*
 * With --redis, a write, a delete or an L1 miss continues at the coherence
 * thread: the request is copied into a fwd that waits in the pending FIFO
 * until l2.c completes it.
 */
static void exec_local_l2(struct shard *sh, struct conn *c, const struct cache_req *cr)
{
	struct fwd *f = fwd_create(c, sh->id, cr);
	enum cache_outcome oc;

	if (!f) {
		conn_abort(sh, c);
		return;
	}
	f->remote = false;
	f->t0 = sh->now_ns;
	pend_async(c, f);
	oc = fwd_exec(sh, f);
	stats_inc(&sh->stats->local_requests);
	count_outcome(sh, oc);
	if (!l2_begin(sh, f, oc))
		conn_on_reply(sh, f);
}

static void exec_local(struct shard *sh, struct conn *c, const struct cache_req *cr)
{
	bool l2 = sh->srv->coh != NULL;
	struct fwd *prev = c->pend_tail, *slot;
	struct buf *b;
	enum cache_outcome oc;
	size_t start;

	if (l2 && cr->op != CACHE_GET && cr->op != CACHE_HEAD) {
		exec_local_l2(sh, c, cr);
		return;
	}
	b = conn_response_buf(c, &slot);
	if (!b) {
		conn_abort(sh, c);
		return;
	}
	start = b->len;
	if (cache_exec(sh->cache, cr, b, &oc)) {
		/* out of memory for the response: say so, then close */
		b->len = start;
		if (cache_respond_status(b, 500, cr->minor, false, NULL, NULL)) {
			conn_abort(sh, c);
			return;
		}
		oc = CACHE_FAILED;
		c->flags |= C_CLOSE_AFTER;
	}
	if (oc == CACHE_MISS && l2) {
		/* take the 404 back: Redis may have the key */
		b->len = start;
		if (slot)
			unpend_tail(c, prev, slot);
		exec_local_l2(sh, c, cr);
		return;
	}
	conn_slot_filled(c, slot);
	stats_inc(&sh->stats->local_requests);
	count_outcome(sh, oc);
	if (slot) {
		/* behind an answer still out: timed when conn_on_reply releases it */
		slot->t0 = sh->now_ns;
		slot->outcome = (uint8_t)oc;
	} else {
		if (c->local_reqs++ == 0)
			c->t_local = sh->now_ns;
		if (oc == CACHE_HIT || oc == CACHE_NOT_MODIFIED)
			c->local_hits++;
	}
	shard_mark_dirty(sh, c);
}

static void exec_forward(struct shard *sh, struct conn *c, const struct cache_req *cr,
			 unsigned owner)
{
	struct fwd *f = fwd_create(c, sh->id, cr);

	if (!f) {
		conn_abort(sh, c);
		return;
	}
	f->t0 = sh->now_ns;
	pend_async(c, f);
	fwd_send(sh, owner, f);
}

/* Runs on the owner shard for a request another shard forwarded.  True when
 * the answer now waits for Redis (l2.c sends it back later). */
bool conn_exec_forwarded(struct shard *sh, struct fwd *f)
{
	enum cache_outcome oc = fwd_exec(sh, f);

	stats_inc(&sh->stats->forwarded_requests);
	count_outcome(sh, oc);
	return l2_begin(sh, f, oc);
}

/* GET /cluster: the live instances, from the coherence thread's registry. */
static void serve_cluster(struct shard *sh, struct conn *c, const struct http_request *req)
{
	struct cache_req cr;
	struct fwd *f;

	if (!sh->srv->coh) {
		emit_status(sh, c, 404, req->minor, req->keep_alive, NULL,
			    "no --redis: this instance runs L1 only\n");
		return;
	}
	memset(&cr, 0, sizeof(cr));
	cr.minor = req->minor;
	cr.keep_alive = req->keep_alive;
	f = fwd_create(c, sh->id, &cr);
	if (!f) {
		conn_abort(sh, c);
		return;
	}
	f->remote = false;
	pend_async(c, f);
	if (!l2_cluster(sh, f)) {
		cache_respond_status(&f->resp, 503, req->minor, req->keep_alive, NULL,
				     "redis unavailable\n");
		conn_on_reply(sh, f);
	}
}

static bool path_is(const struct http_str *p, const char *lit, size_t n)
{
	return p->len == n && memcmp(p->p, lit, n) == 0;
}

static bool authorized(struct shard *sh, const struct http_request *req)
{
	const struct auth *a = sh->srv->auth;

	return !a || auth_check(a, req->x_api_key.p, req->x_api_key.len, req->authorization.p,
				req->authorization.len);
}

/*
 * The coherence thread's counters (coherence.h: COH_STATS), after the
 * shards': a "l2" object closing the /stats JSON, or ringcached_l2_* samples
 * in /metrics.
 */
static int format_l2_stats(struct coh *coh, bool metrics, struct buf *out)
{
	struct coh_stats cs;
	char line[256];
	int n, rc = 0;

	coh_stats(coh, &cs);
	if (!metrics) {
		while (out->len && out->data[out->len - 1] == '\n')
			out->len--;
		if (!out->len || out->data[out->len - 1] != '}')
			return -EINVAL;
		out->len--;
		rc |= buf_append(out, ",\"l2\":{", 7);
	}
	bool first = true;
#define L2_FORMAT(name, kind, help)                                                          \
	if (metrics)                                                                         \
		n = snprintf(line, sizeof(line),                                             \
			     "# HELP ringcached_l2_" #name "%s " help "\n"                      \
			     "# TYPE ringcached_l2_" #name "%s %s\n"                            \
			     "ringcached_l2_" #name "%s %llu\n",                                \
			     #kind[0] == 'C' ? "_total" : "", #kind[0] == 'C' ? "_total" : "", \
			     #kind[0] == 'C' ? "counter" : "gauge",                           \
			     #kind[0] == 'C' ? "_total" : "", (unsigned long long)cs.name);   \
	else                                                                                 \
		n = snprintf(line, sizeof(line), "%s\"" #name "\":%llu", first ? "" : ",",     \
			     (unsigned long long)cs.name);                                    \
	first = false;                                                                       \
	rc |= buf_append(out, line, (size_t)n);
	COH_STATS(L2_FORMAT)
#undef L2_FORMAT
	if (!metrics)
		rc |= buf_append(out, "}}\n", 3);
	return rc ? -ENOMEM : 0;
}

static void serve_admin(struct shard *sh, struct conn *c, const struct http_request *req,
			bool metrics)
{
	struct buf body = { 0 };
	int rc;

	if (metrics)
		rc = stats_format_prometheus(sh->srv->stats, sh->srv->nshards, &body);
	else
		rc = stats_format_json(sh->srv->stats, sh->srv->nshards, &body);
	if (!rc && sh->srv->coh)
		rc = format_l2_stats(sh->srv->coh, metrics, &body);
	if (rc || buf_append(&body, "", 1)) {
		buf_deinit(&body);
		emit_status(sh, c, 500, req->minor, req->keep_alive, NULL, NULL);
		return;
	}
	conn_emit(sh, c, 200, req->minor, req->keep_alive,
		      metrics ? "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
			      : "Content-Type: application/json\r\n",
		      body.data, req->method == HTTP_METHOD_HEAD);
	buf_deinit(&body);
}

static const char allow_cache[] = "Allow: GET, HEAD, PUT, POST, DELETE\r\n";
static const char allow_read[] = "Allow: GET, HEAD\r\n";
static const char www_auth[] = "WWW-Authenticate: Bearer realm=\"ringcache\"\r\n";

/* One complete request: route it, then answer it here or forward it. */
void route_request(struct shard *sh, struct conn *c, const struct http_request *req,
		   const uint8_t *body, size_t body_len)
{
	const struct http_str *path = &req->path;
	uint8_t m = req->method;

	stats_inc(&sh->stats->requests);
	if (!req->keep_alive)
		c->flags |= C_CLOSE_AFTER;

	if (path->len >= 7 && memcmp(path->p, "/cache/", 7) == 0) {
		struct cache_req cr;
		uint32_t ttl;
		int klen, q;

		if (m == HTTP_METHOD_OTHER) {
			emit_status(sh, c, 405, req->minor, req->keep_alive, allow_cache, NULL);
			return;
		}
		if (!authorized(sh, req)) {
			emit_status(sh, c, 401, req->minor, req->keep_alive, www_auth, NULL);
			return;
		}
		klen = http_decode_key(path->p + 7, path->len - 7, sh->key_scratch);
		if (klen <= 0) {
			emit_status(sh, c, 400, req->minor, req->keep_alive, NULL, "bad key\n");
			return;
		}
		if ((unsigned)klen > STORE_KEY_MAX) {
			emit_status(sh, c, 414, req->minor, req->keep_alive, NULL, "key too long\n");
			return;
		}
		if (l2_key_reserved(sh, sh->key_scratch, (size_t)klen)) {
			emit_status(sh, c, 400, req->minor, req->keep_alive, NULL,
				    "key reserved for the instance registry in Redis\n");
			return;
		}
		q = http_query_u32(req->query, "ttl", &ttl);
		if (q < 0) {
			emit_status(sh, c, 400, req->minor, req->keep_alive, NULL, "bad ttl\n");
			return;
		}
		memset(&cr, 0, sizeof(cr));
		switch (m) {
		case HTTP_METHOD_GET: cr.op = CACHE_GET; break;
		case HTTP_METHOD_HEAD: cr.op = CACHE_HEAD; break;
		case HTTP_METHOD_DELETE: cr.op = CACHE_DELETE; break;
		default: cr.op = CACHE_PUT; break;
		}
		cr.minor = req->minor;
		cr.keep_alive = req->keep_alive;
		cr.key = sh->key_scratch;
		cr.key_len = (uint32_t)klen;
		cr.hash = hash_key(cr.key, cr.key_len);
		cr.body = body;
		cr.body_len = (uint32_t)body_len;
		cr.ttl = q == 1 ? (int64_t)ttl : -1;
		cr.content_type = req->content_type;
		cr.accept_encoding = req->accept_encoding;
		cr.if_none_match = req->if_none_match;
		cr.cache_control = req->cache_control;

		unsigned owner = hash_shard(cr.hash, sh->srv->nshards);
		if (owner == sh->id)
			exec_local(sh, c, &cr);
		else
			exec_forward(sh, c, &cr, owner);
		return;
	}
	if (path_is(path, "/health", 7)) {
		if (m != HTTP_METHOD_GET && m != HTTP_METHOD_HEAD)
			emit_status(sh, c, 405, req->minor, req->keep_alive, allow_read, NULL);
		else
			conn_emit(sh, c, 200, req->minor, req->keep_alive, NULL, "OK\n",
				      m == HTTP_METHOD_HEAD);
		return;
	}
	if (path_is(path, "/cluster", 8)) {
		if (m != HTTP_METHOD_GET && m != HTTP_METHOD_HEAD)
			emit_status(sh, c, 405, req->minor, req->keep_alive, allow_read, NULL);
		else if (!authorized(sh, req))
			emit_status(sh, c, 401, req->minor, req->keep_alive, www_auth, NULL);
		else
			serve_cluster(sh, c, req);
		return;
	}
	if (path_is(path, "/stats", 6) || path_is(path, "/metrics", 8)) {
		if (m != HTTP_METHOD_GET && m != HTTP_METHOD_HEAD)
			emit_status(sh, c, 405, req->minor, req->keep_alive, allow_read, NULL);
		else if (!authorized(sh, req))
			emit_status(sh, c, 401, req->minor, req->keep_alive, www_auth, NULL);
		else
			serve_admin(sh, c, req, path->len == 8);
		return;
	}
	emit_status(sh, c, 404, req->minor, req->keep_alive, NULL, NULL);
}

/*
 * A request whose body has not all arrived yet: when its answer cannot
 * depend on the body (405 for the method, 401 without a key), answer now
 * and close, rather than wait for a body of up to --max-value, or send it
 * "100 Continue".  True when the request was refused.
 */
bool route_refuse_early(struct shard *sh, struct conn *c, const struct http_request *req)
{
	const struct http_str *p = &req->path;
	uint8_t m = req->method;
	bool cache = p->len >= 7 && memcmp(p->p, "/cache/", 7) == 0;
	bool admin = path_is(p, "/stats", 6) || path_is(p, "/metrics", 8) ||
		     path_is(p, "/cluster", 8);
	bool read_only = admin || path_is(p, "/health", 7);

	/* the checks of route_request(), in its order */
	if (cache && m == HTTP_METHOD_OTHER)
		emit_status(sh, c, 405, req->minor, false, allow_cache, NULL);
	else if (read_only && m != HTTP_METHOD_GET && m != HTTP_METHOD_HEAD)
		emit_status(sh, c, 405, req->minor, false, allow_read, NULL);
	else if ((cache || admin) && !authorized(sh, req))
		emit_status(sh, c, 401, req->minor, false, www_auth, NULL);
	else
		return false;
	stats_inc(&sh->stats->requests);
	return true;
}
