/*
 * l2.c - a shard's side of the Redis L2 (with --redis): what the owner shard
 * of a key does after its L1 store answered, and what it does with the
 * coherence thread's messages.
 *
 * Only the owner shard of a key talks to the coherence thread about it, over
 * that shard's pair of rings (coherence.h).  The request waiting for Redis is
 * a struct fwd: a forwarded one already is; a local one gets a copy made by
 * fwd_create(), queued in its connection's pending FIFO.  When the answer
 * comes back the response is completed and the fwd goes where a forwarded
 * reply goes: to its origin shard, or straight to conn_on_reply().
 *
 *   PUT     L1 set, then COH_SET    -> answered after Redis: X-L2: ok|skipped|...
 *   DELETE  L1 delete, then COH_DEL -> answered after Redis: X-L2: ...
 *   GET     L1 miss, then COH_GET   -> value: stored in L1 (unless COH_F_NOCACHE or
 *                                      L1 got a newer value meanwhile), served with
 *                                      X-Cache: HIT-L2; none: 404 X-Cache: MISS
 *   INVALIDATE / FLUSH from coherence: drop the key / everything older
 *
 * L1 hits never reach this file: they are answered before any Redis work.
 *
 * Coalescing: the owner shard is the only one that asks Redis about a key,
 * so it keeps its outstanding reads in a small table (struct l2_get).  A miss
 * for a key already being read waits behind that read instead of sending
 * another: 75 concurrent misses make one Redis GET, and all 75 answers say
 * HIT-L2.  (The coherence thread coalesces too, but a second miss that
 * reaches it after Redis answered and before this shard stored the value
 * would start a new read; only the owner can close that window.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "ringcache/coherence.h"

/* One Redis read in flight for a key, and the requests waiting for it. */
struct l2_get {
	struct l2_get *next;            /* bucket chain */
	uint64_t hash;
	struct fwd *first;              /* the request that sent COH_GET: its key */
	struct fwd *last;               /* waiters chain through fwd->qnext */
};

#define L2_GET_BUCKETS 1024u            /* power of two */

static struct l2_get **get_slot(struct shard *sh, uint64_t hash, const uint8_t *key,
				uint32_t key_len)
{
	struct l2_get **pp = &sh->l2_gets[(hash >> 20) & (L2_GET_BUCKETS - 1)];

	for (; *pp; pp = &(*pp)->next) {
		const struct cache_req *r = &(*pp)->first->req;
		if ((*pp)->hash == hash && r->key_len == key_len &&
		    memcmp(r->key, key, key_len) == 0)
			break;
	}
	return pp;
}

int l2_setup(struct shard *sh)
{
	if (!sh->srv->coh)
		return 0;
	sh->l2_gets = calloc(L2_GET_BUCKETS, sizeof(*sh->l2_gets));
	return sh->l2_gets ? 0 : -ENOMEM;
}

void l2_teardown(struct shard *sh)
{
	while (sh->l2_len) {
		coh_msg_destroy(sh->l2_queue[sh->l2_head]);
		sh->l2_head = (sh->l2_head + 1) % sh->l2_cap;
		sh->l2_len--;
	}
	free(sh->l2_queue);
	sh->l2_queue = NULL;
	for (unsigned b = 0; sh->l2_gets && b < L2_GET_BUCKETS; b++)
		for (struct l2_get *g = sh->l2_gets[b], *next; g; g = next) {
			next = g->next;
			free(g); /* its waiters belong to their connections (free_shard) */
		}
	free(sh->l2_gets);
	sh->l2_gets = NULL;
}

/*
 * Keys whose Redis name is the registry's (<prefix>instances and
 * <prefix>instance:<id>): with --redis they are refused, or a PUT would
 * overwrite the fleet's registry.
 */
bool l2_key_reserved(const struct shard *sh, const uint8_t *key, size_t len)
{
	if (!sh->srv->coh)
		return false;
	return (len == 9 && memcmp(key, "instances", 9) == 0) ||
	       (len >= 9 && memcmp(key, "instance:", 9) == 0);
}

static const char *l2_status_name(uint8_t status)
{
	switch (status) {
	case COH_OK: return "ok";
	case COH_MISS: return "miss";
	case COH_TIMEOUT: return "timeout";
	case COH_SKIPPED: return "skipped";
	case COH_BAD_DATA: return "bad-data";
	default: return "error";
	}
}

/*
 * Adds a header line to a complete response that has no body (PUT, DELETE
 * and miss responses): before the blank line that ends the head.
 */
static int add_header(struct buf *b, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value), add = nl + 2 + vl + 2;

	if (b->len < 4 || memcmp(b->data + b->len - 4, "\r\n\r\n", 4) != 0)
		return -EINVAL;
	if (buf_reserve(b, add))
		return -ENOMEM;
	char *p = b->data + b->len - 2;
	memcpy(p, name, nl);
	memcpy(p + nl, ": ", 2);
	memcpy(p + nl + 2, value, vl);
	memcpy(p + nl + 2 + vl, "\r\n\r\n", 4);
	b->len += add;
	return 0;
}

/* Turns the executor's "X-Cache: HIT" into "X-Cache: HIT-L2". */
static void mark_hit_l2(struct buf *b)
{
	static const char hit[] = "\r\nX-Cache: HIT\r\n";
	size_t n = sizeof(hit) - 1, scan = b->len < 64 ? b->len : 64;

	for (size_t i = 0; i + n <= scan; i++) {
		if (memcmp(b->data + i, hit, n) == 0 && buf_reserve(b, 3) == 0) {
			char *at = b->data + i + n - 2;
			memmove(at + 3, at, b->len - (size_t)(at - b->data));
			memcpy(at, "-L2", 3);
			b->len += 3;
			return;
		}
	}
}

/* Hands m to the coherence thread now, or queues it behind the ones the
 * ring had no room for.  False only when there is no memory to queue it. */
static bool submit(struct shard *sh, struct coh_msg *m)
{
	if (sh->l2_len == 0 && coh_submit(sh->srv->coh, sh->id, m)) {
		sh->l2_touched = true;
		return true;
	}
	if (sh->l2_len == sh->l2_cap) {
		uint32_t cap = sh->l2_cap ? sh->l2_cap * 2 : 64;
		struct coh_msg **q = malloc(cap * sizeof(*q));
		if (!q)
			return false;
		for (uint32_t i = 0; i < sh->l2_len; i++)
			q[i] = sh->l2_queue[(sh->l2_head + i) % sh->l2_cap];
		free(sh->l2_queue);
		sh->l2_queue = q;
		sh->l2_head = 0;
		sh->l2_cap = cap;
	}
	sh->l2_queue[(sh->l2_head + sh->l2_len++) % sh->l2_cap] = m;
	return true;
}

/* Publishes this iteration's messages to the coherence thread. */
void l2_flush(struct shard *sh)
{
	struct coh *coh = sh->srv->coh;

	if (!coh)
		return;
	while (sh->l2_len && coh_submit(coh, sh->id, sh->l2_queue[sh->l2_head])) {
		sh->l2_head = (sh->l2_head + 1) % sh->l2_cap;
		sh->l2_len--;
		sh->l2_touched = true;
	}
	if (sh->l2_touched) {
		sh->l2_touched = false;
		coh_flush(coh, sh->id);
	}
}

bool l2_pending(struct shard *sh)
{
	return sh->srv->coh && coh_pending(sh->srv->coh, sh->id);
}

static uint32_t remaining_ttl(struct shard *sh, const struct cache_req *r)
{
	struct store_item it;

	if (store_get(sh->store, r->key, r->key_len, r->hash, &it) || !it.expires)
		return 0;
	/* what the client asked for: put_ttl() in exec.c added one second */
	return it.expires > sh->now_s + 1 ? it.expires - sh->now_s - 1 : 1;
}

/* An L1 miss: join the read of this key in flight, or start one. */
static bool begin_get(struct shard *sh, struct fwd *f)
{
	const struct cache_req *r = &f->req;
	struct l2_get **pp = get_slot(sh, r->hash, r->key, r->key_len);
	struct l2_get *g = *pp;
	struct coh_msg *m;

	f->qnext = NULL;
	if (g) {
		g->last->qnext = f;
		g->last = f;
		return true;
	}
	g = calloc(1, sizeof(*g));
	m = coh_msg_create(COH_GET, sh->id, r->hash, r->key, r->key_len, NULL, 0, 0);
	if (!g || !m) {
		free(g);
		coh_msg_destroy(m);
		return false;
	}
	g->hash = r->hash;
	g->first = g->last = f;
	m->cookie = g;
	if (!submit(sh, m)) {
		free(g);
		coh_msg_destroy(m);
		add_header(&f->resp, "X-L2", "error");
		return false;
	}
	*pp = g;
	return true;
}

/*
 * Called on the owner shard right after cache_exec() answered `f` into
 * f->resp.  True when the request now waits for Redis (the caller must not
 * complete it); false when the response is final.
 */
bool l2_begin(struct shard *sh, struct fwd *f, enum cache_outcome oc)
{
	const struct cache_req *r = &f->req;
	struct coh_msg *m;

	if (!sh->srv->coh)
		return false;
	switch (r->op) {
	case CACHE_PUT:
		if (oc != CACHE_STORED)
			return false;
		m = coh_msg_create(COH_SET, sh->id, r->hash, r->key, r->key_len, r->content_type.p,
				   r->content_type.len, r->body_len);
		if (!m)
			return false;
		if (r->body_len)
			memcpy(m->value, r->body, r->body_len);
		m->ttl = remaining_ttl(sh, r);
		break;
	case CACHE_DELETE:
		m = coh_msg_create(COH_DEL, sh->id, r->hash, r->key, r->key_len, NULL, 0, 0);
		if (!m && oc == CACHE_ABSENT)
			stats_inc(&sh->stats->errors); /* the 404 goes out now */
		break;
	case CACHE_GET:
	case CACHE_HEAD:
		if (oc != CACHE_MISS)
			return false;
		f->l2 = true; /* an L1 miss: whatever Redis answers, not an L1 hit */
		if (begin_get(sh, f))
			return true;
		stats_inc(&sh->stats->errors); /* the 404 goes out now */
		return false;
	default:
		return false;
	}
	if (!m)
		return false;
	m->cookie = f;
	if (!submit(sh, m)) {
		coh_msg_destroy(m);
		add_header(&f->resp, "X-L2", "error");
		if (oc == CACHE_ABSENT)
			stats_inc(&sh->stats->errors);
		return false;
	}
	return true;
}

/* Asks the coherence thread for the live instances (GET /cluster). */
bool l2_cluster(struct shard *sh, struct fwd *f)
{
	struct coh_msg *m;

	if (!sh->srv->coh)
		return false;
	m = coh_msg_create(COH_CLUSTER, sh->id, 0, NULL, 0, NULL, 0, 0);
	if (!m)
		return false;
	m->cookie = f;
	if (!submit(sh, m)) {
		coh_msg_destroy(m);
		return false;
	}
	return true;
}

/* Sends a completed request on: to its origin shard, or to its connection. */
static void complete(struct shard *sh, struct fwd *f)
{
	if (f->remote) {
		f->reply = true;
		fwd_send(sh, f->origin, f);
	} else {
		conn_on_reply(sh, f);
	}
}

/* Stores the value Redis returned in L1; false if L1 would not take it. */
static bool store_from_l2(struct shard *sh, const struct fwd *f, const struct coh_msg *m)
{
	struct cache_req put = f->req;
	struct buf scratch = { 0 };
	enum cache_outcome oc;
	int rc;

	put.op = CACHE_PUT;
	put.body = (const uint8_t *)m->value;
	put.body_len = (uint32_t)m->value_len;
	put.ttl = m->ttl;   /* 0: none in Redis, so none here */
	put.content_type.p = m->ctype;
	put.content_type.len = m->ctype_len;
	put.cache_control.len = 0;
	put.if_none_match.len = 0;
	rc = cache_exec(sh->cache, &put, &scratch, &oc);
	buf_deinit(&scratch);
	return rc == 0 && oc == CACHE_STORED;
}

/*
 * The read of g's key came back: store the value in L1 (unless L1 got a
 * newer one meanwhile, or the coherence thread says it may be stale), answer
 * every waiter from L1, then forget the read.
 */
static void finish_get(struct shard *sh, struct l2_get *g, const struct coh_msg *m)
{
	const struct cache_req *key = &g->first->req;
	struct store_item it;
	bool served_l2 = false;

	*get_slot(sh, g->hash, key->key, key->key_len) = g->next;
	if (m->status == COH_OK &&
	    store_get(sh->store, key->key, key->key_len, key->hash, &it) != 0)
		served_l2 = store_from_l2(sh, g->first, m);

	/* the key's bytes live in g->first, which complete() may free: copy */
	uint8_t keybuf[STORE_KEY_MAX];
	uint32_t key_len = key->key_len;
	uint64_t hash = key->hash;
	memcpy(keybuf, key->key, key_len);

	for (struct fwd *f = g->first, *next; f; f = next) {
		enum cache_outcome oc;
		next = f->qnext;
		f->qnext = NULL;
		if (m->status == COH_OK) {
			oc = fwd_exec(sh, f);
			if (served_l2 && !f->close)
				mark_hit_l2(&f->resp);
		} else {
			oc = CACHE_MISS;
			if (m->status != COH_MISS)
				add_header(&f->resp, "X-L2", l2_status_name(m->status));
		}
		/* the 404 an L1 miss deferred (conn.c count_outcome) */
		if (oc == CACHE_MISS || oc == CACHE_FAILED)
			stats_inc(&sh->stats->errors);
		complete(sh, f);
	}
	if (served_l2 && (m->flags & COH_F_NOCACHE))
		store_delete(sh->store, keybuf, key_len, hash);
	free(g);
}

/* A write, a delete or the cluster list came back: finish f's response. */
static void finish(struct shard *sh, struct fwd *f, const struct coh_msg *m)
{
	switch (m->op) {
	case COH_DEL:
		if (f->outcome == CACHE_ABSENT && m->status == COH_OK &&
		    (m->flags & COH_F_EXISTED)) {
			/* not in L1 but in Redis: it was there, and now it is gone */
			struct buf b = { 0 };
			if (cache_respond_status(&b, 204, f->req.minor, f->req.keep_alive, NULL,
						 NULL) == 0) {
				buf_deinit(&f->resp);
				f->resp = b;
				f->outcome = CACHE_DELETED;
			} else {
				buf_deinit(&b); /* no memory: the 404 stands */
			}
		}
		if (f->outcome == CACHE_ABSENT)
			stats_inc(&sh->stats->errors); /* the 404 deferred by count_outcome */
		add_header(&f->resp, "X-L2", l2_status_name(m->status));
		break;
	case COH_SET:
		add_header(&f->resp, "X-L2", l2_status_name(m->status));
		break;
	case COH_CLUSTER: {
		struct buf body = { 0 };
		f->resp.len = 0;
		if (m->status == COH_OK && buf_append(&body, m->value, m->value_len) == 0 &&
		    buf_append(&body, "", 1) == 0)
			cache_respond_status(&f->resp, 200, f->req.minor, f->req.keep_alive,
					     "Content-Type: application/json\r\n", body.data);
		else
			cache_respond_status(&f->resp, 503, f->req.minor, f->req.keep_alive,
					     "X-L2: unavailable\r\n", "redis unavailable\n");
		buf_deinit(&body);
		break;
	}
	}
}

/* Handles what the coherence thread sent this shard; true if anything. */
bool l2_drain(struct shard *sh)
{
	struct coh *coh = sh->srv->coh;
	struct coh_msg *m;
	bool any = false;

	if (!coh)
		return false;
	while ((m = coh_poll(coh, sh->id)) != NULL) {
		any = true;
		switch (m->op) {
		case COH_INVALIDATE:
			store_delete(sh->store, m->key, m->key_len, m->hash);
			break;
		case COH_FLUSH:
			store_flush(sh->store, m->older_than);
			break;
		case COH_GET:
			finish_get(sh, m->cookie, m);
			break;
		default:
			finish(sh, m->cookie, m);
			complete(sh, m->cookie);
			break;
		}
		coh_msg_destroy(m);
	}
	return any;
}
