/*
 * l2.c - a shard's side of the Redis L2 (l2.h).
 *
 * An L1 miss is read from Redis on the shard's own read connection
 * (l2read.c, the protocol in src/coherence/read.c) when it can be, else
 * through the coherence thread, which is always right but costs two
 * hand-offs between threads.  Writes always go through the coherence thread
 * (write-through, PUBLISH, replay).
 *
 *   miss ──▶ read of the key in flight? ──yes──▶ wait behind it
 *                 │ no
 *                 ▼
 *            breaker open? ──yes──▶ answered at once, X-L2: skipped
 *                 │ no
 *                 ▼
 *            a write of the key in flight from here, the read connection
 *            not ready, or writes of this shard unsettled? ──yes──▶ COH_GET
 *                 │ no                                 to the coherence thread
 *                 ▼
 *            GET + PTTL on the shard's read connection
 *
 * Why reads of a key wait for its writes: a write travels to Redis on the
 * coherence thread's connection, a read on ours, and Redis orders only the
 * commands of one connection.  A DELETE followed by a GET of the same key
 * (pipelined, or from two clients) must not read back what was deleted, so
 * while this shard has a SET or DEL of a key in flight, reads of it go
 * through the coherence thread, behind the write.  Once the write's answer
 * is back here it is in Redis (OK), was refused (ERROR), or the coherence
 * thread keeps it (TIMEOUT, SKIPPED: counted as unsettled by coh_read_get).
 *
 * Coalescing: the owner shard is the only one that asks Redis about a key,
 * so it keeps its outstanding reads in a small table (struct l2_key ->
 * struct l2_get).  A miss for a key already being read waits behind that
 * read instead of sending another: 75 concurrent misses make one Redis GET,
 * and all 75 answers say HIT-L2.  (The coherence thread coalesces too, but
 * a second miss that reaches it after Redis answered and before this shard
 * stored the value would start a new read; only the owner can close that
 * window.)
 *
 * No stale value: a read overtaken on this shard by a write or an
 * invalidation of its key is detached (later misses start a new read) and
 * its value is answered but not kept in L1, as is one the coherence module
 * marks COH_F_NOCACHE (the subscription was lost meanwhile).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fill.h"
#include "fwd.h"
#include "l2.h"
#include "l2read.h"
#include "route.h"
#include "shard.h"
#include "ringcache/coherence.h"
#include "ringcache/stats.h"
#include "ringcache/store.h"

struct l2_key;

/* One Redis read in flight for a key, and the requests waiting for it. */
struct l2_get {
	struct l2_get *prev, *next;     /* every get alive, for l2_teardown() */
	struct l2_key *key;             /* its key's entry; NULL once detached */
	struct fwd *first;              /* the request that started the read */
	struct fwd *last;               /* waiters chain through fwd->qnext */
	bool nocache;                   /* overtaken by a write or invalidation here */
};

/* A key with a read or writes in flight to Redis. */
struct l2_key {
	struct l2_key *next;            /* bucket chain */
	uint64_t hash;
	struct l2_get *get;             /* the read later misses join, or NULL */
	uint32_t writes;                /* COH_SET/COH_DEL sent, answer not back yet */
	uint32_t key_len;
	uint8_t key[];
};

#define L2_KEY_BUCKETS 1024u            /* power of two */

struct l2_state {
	struct coh *coh;
	struct l2read *rd;              /* the shard's read connection; NULL without memory */
	/* messages for the coherence thread its ring had no room for */
	struct coh_msg **queue;
	uint32_t head, len, cap;
	bool touched;                   /* submitted since the last flush */
	struct l2_get *gets;            /* alive: in flight, or detached and in flight */
	uint64_t gen;                   /* purges and FLUSHes seen: a lease read (which
					 * is not in `gets`) sent before one is not kept */
	struct l2_key *keys[L2_KEY_BUCKETS];
};

static struct l2_key **key_slot(struct l2_state *l2, uint64_t hash, const void *key,
				uint32_t key_len)
{
	struct l2_key **pp = &l2->keys[(hash >> 20) & (L2_KEY_BUCKETS - 1)];

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == hash && (*pp)->key_len == key_len &&
		    memcmp((*pp)->key, key, key_len) == 0)
			break;
	return pp;
}

/* The entry of a key, created if need be; NULL without memory. */
static struct l2_key *key_get(struct l2_state *l2, uint64_t hash, const void *key,
			      uint32_t key_len)
{
	struct l2_key **pp = key_slot(l2, hash, key, key_len);
	struct l2_key *k = *pp;

	if (k)
		return k;
	k = malloc(sizeof(*k) + key_len);
	if (!k)
		return NULL;
	k->next = NULL;
	k->hash = hash;
	k->get = NULL;
	k->writes = 0;
	k->key_len = key_len;
	memcpy(k->key, key, key_len);
	*pp = k;
	return k;
}

/* Frees k once nothing is in flight for it. */
static void key_put(struct l2_state *l2, struct l2_key *k)
{
	if (k->get || k->writes)
		return;
	struct l2_key **pp = key_slot(l2, k->hash, k->key, k->key_len);
	*pp = k->next;
	free(k);
}

/* A write or an invalidation of the key on this shard: the read in flight
 * may predate it.  Its waiters still get its value, which is not kept. */
static void supersede(struct l2_state *l2, uint64_t hash, const void *key, uint32_t key_len)
{
	struct l2_key *k = *key_slot(l2, hash, key, key_len);

	if (k && k->get) {
		k->get->nocache = true;
		k->get->key = NULL;
		k->get = NULL;
		key_put(l2, k);
	}
}

/*
 * A tag purge names no key: every read in flight may be of a key it deleted
 * in Redis after the read took the value, so none is kept in L1 (each is
 * still answered with what it read), and later misses read again.
 */
static void supersede_all(struct l2_state *l2)
{
	for (struct l2_get *g = l2->gets; g; g = g->next) {
		g->nocache = true;
		if (g->key) {
			g->key->get = NULL;
			key_put(l2, g->key);
			g->key = NULL;
		}
	}
	l2->gen++;
}

int l2_setup(struct shard *sh)
{
	struct l2_state *l2 = calloc(1, sizeof(*l2));

	if (!l2)
		return -ENOMEM;
	l2->coh = sh->srv->coh;
	l2->rd = l2read_create(sh);     /* without it, every read goes through the thread */
	sh->l2 = l2;
	return 0;
}

void l2_teardown(struct shard *sh)
{
	struct l2_state *l2 = sh->l2;

	if (!l2)
		return;
	while (l2->len) {
		coh_msg_destroy(l2->queue[l2->head]);
		l2->head = (l2->head + 1) % l2->cap;
		l2->len--;
	}
	free(l2->queue);
	l2read_destroy(l2->rd);
	/* the waiters of a get are fwds, freed by their origin (fwd.h) */
	for (struct l2_get *g = l2->gets, *next; g; g = next) {
		next = g->next;
		free(g);
	}
	for (unsigned b = 0; b < L2_KEY_BUCKETS; b++)
		for (struct l2_key *k = l2->keys[b], *next; k; k = next) {
			next = k->next;
			free(k);
		}
	free(l2);
	sh->l2 = NULL;
}

static enum reply_l2 l2_status(uint8_t status)
{
	switch (status) {
	case COH_OK: return REPLY_L2_OK;
	case COH_MISS: return REPLY_L2_MISS;
	case COH_TIMEOUT: return REPLY_L2_TIMEOUT;
	case COH_SKIPPED: return REPLY_L2_SKIPPED;
	case COH_BAD_DATA: return REPLY_L2_BAD_DATA;
	default: return REPLY_L2_ERROR;
	}
}

bool l2_continues(const struct shard *sh, enum cache_op op, enum cache_outcome oc)
{
	if (!sh->l2)
		return false;
	switch (op) {
	case CACHE_PUT: return oc == CACHE_STORED;
	case CACHE_DELETE: return true;
	case CACHE_GET:
	case CACHE_HEAD: return oc == CACHE_MISS;
	case CACHE_TAG_PURGE: return false;     /* its Redis part: route.c */
	}
	return false;
}

/* Hands m to the coherence thread now, or queues it behind the ones the
 * ring had no room for.  False only when there is no memory to queue it. */
static bool submit(struct l2_state *l2, unsigned shard, struct coh_msg *m)
{
	if (l2->len == 0 && coh_submit(l2->coh, shard, m)) {
		l2->touched = true;
		return true;
	}
	if (l2->len == l2->cap) {
		uint32_t cap = l2->cap ? l2->cap * 2 : 64;
		struct coh_msg **q = malloc(cap * sizeof(*q));
		if (!q)
			return false;
		for (uint32_t i = 0; i < l2->len; i++)
			q[i] = l2->queue[(l2->head + i) % l2->cap];
		free(l2->queue);
		l2->queue = q;
		l2->head = 0;
		l2->cap = cap;
	}
	l2->queue[(l2->head + l2->len++) % l2->cap] = m;
	return true;
}

void l2_flush(struct shard *sh)
{
	struct l2_state *l2 = sh->l2;

	if (!l2)
		return;
	while (l2->len && coh_submit(l2->coh, sh->id, l2->queue[l2->head])) {
		l2->head = (l2->head + 1) % l2->cap;
		l2->len--;
		l2->touched = true;
	}
	if (l2->touched) {
		l2->touched = false;
		coh_flush(l2->coh, sh->id);
	}
	if (l2->rd)
		l2read_flush(l2->rd);
}

bool l2_pending(struct shard *sh)
{
	return sh->l2 && coh_pending(sh->l2->coh, sh->id);
}

bool l2_waiting(const struct shard *sh)
{
	return sh->l2 && sh->l2->rd && l2read_waiting(sh->l2->rd, sh->now_ns);
}

bool l2_backlogged(const struct shard *sh)
{
	return sh->l2 && sh->l2->len;
}

/* Redis was not asked: the L1 reply goes out, saying why (SKIPPED: breaker
 * open; ERROR: no memory). */
static void answer_unread(struct shard *sh, struct fwd *f, uint8_t status)
{
	f->r.l2 = l2_status(status);
	fwd_answer(sh, f);
}

static uint32_t remaining_ttl(struct shard *sh, const struct cache_req *r)
{
	struct store_item it;

	if (store_get(sh->store, r->key, r->key_len, r->hash, &it) || !it.expires)
		return 0;
	/* what the client asked for: put_ttl() in exec.c added one second */
	return it.expires > sh->now_s + 1 ? it.expires - sh->now_s - 1 : 1;
}

/* An L1 miss: join the read of this key in flight, or start one (on the
 * shard's read connection, or through the coherence thread). */
static void begin_get(struct shard *sh, struct fwd *f)
{
	struct l2_state *l2 = sh->l2;
	const struct cache_req *r = &f->req;
	struct l2_key *k = *key_slot(l2, r->hash, r->key, r->key_len);
	struct l2_get *g;
	struct coh_msg *m;
	int rc = -EAGAIN;

	f->qnext = NULL;
	if (k && k->get) {
		k->get->last->qnext = f;
		k->get->last = f;
		return;
	}
	m = coh_msg_create(COH_GET, sh->id, r->hash, r->key, r->key_len, NULL, 0, 0);
	g = calloc(1, sizeof(*g));
	if (!k)
		k = key_get(l2, r->hash, r->key, r->key_len);
	if (!m || !g || !k) {
		free(g);
		coh_msg_destroy(m);
		if (k)
			key_put(l2, k);
		answer_unread(sh, f, COH_ERROR);
		return;
	}
	m->cookie = g;
	if (l2->rd && !k->writes)
		rc = coh_read_get(l2read_conn(l2->rd), m, sh->now_ns);
	if (rc == -ECANCELED || (rc && !submit(l2, sh->id, m))) {
		uint8_t status = rc == -ECANCELED ? m->status : COH_ERROR;
		free(g);
		coh_msg_destroy(m);
		key_put(l2, k);
		answer_unread(sh, f, status);
		return;
	}
	g->key = k;
	g->first = g->last = f;
	g->next = l2->gets;
	if (g->next)
		g->next->prev = g;
	l2->gets = g;
	k->get = g;
}

/* A SET or DEL of the key goes to the coherence thread: reads of it wait
 * for its answer (the file's comment), and one in flight is overtaken. */
static bool begin_write(struct shard *sh, struct coh_msg *m)
{
	struct l2_state *l2 = sh->l2;
	struct l2_key *k = key_get(l2, m->hash, m->key, m->key_len);

	if (!k || !submit(l2, sh->id, m)) {
		if (k)
			key_put(l2, k);
		return false;
	}
	k->writes++;    /* first: supersede() frees an entry nothing holds */
	supersede(l2, m->hash, m->key, m->key_len);
	return true;
}

void l2_begin(struct shard *sh, struct fwd *f)
{
	const struct cache_req *r = &f->req;
	struct coh_msg *m = NULL;

	switch (r->op) {
	case CACHE_GET:
	case CACHE_HEAD:
		begin_get(sh, f);
		return;
	case CACHE_PUT: {
		/* the item's stale windows and tags travel with it (RCV2) */
		_Static_assert(CACHE_EXT_MAX <= COH_EXT_MAX, "an L1 extension fits an RCV2 frame");
		uint8_t ext[CACHE_EXT_MAX];
		struct cache_ext_tags tags;
		int ext_len = cache_item_ext(sh->store, r, ext, &tags);
		if (ext_len < 0)
			ext_len = 0;
		m = coh_msg_create(COH_SET, sh->id, r->hash, r->key, r->key_len, r->content_type.p,
				   r->content_type.len, (size_t)ext_len + r->body_len);
		if (m) {
			memcpy(m->value, ext, (size_t)ext_len);
			if (r->body_len)
				memcpy(m->value + ext_len, r->body, r->body_len);
			if (ext_len) {
				coh_msg_split_ext(m, (uint32_t)ext_len);
				m->tags_off = tags.off;     /* its key joins each tag's set */
				m->ntags = tags.n;
			}
			/* with windows: the whole expiry, PX = TTL + S + E */
			m->ttl = remaining_ttl(sh, r);
			if (r->lease_token.len && r->lease_token.len <= COH_LEASE_MAX) {
				/* a fill with the fleet's lease: stored only if still it */
				memcpy(m->lease, r->lease_token.p, r->lease_token.len);
				m->lease_len = (uint8_t)r->lease_token.len;
			}
		}
		break;
	}
	case CACHE_DELETE:
		m = coh_msg_create(COH_DEL, sh->id, r->hash, r->key, r->key_len, NULL, 0, 0);
		break;
	}
	if (!m || (m->cookie = f, !begin_write(sh, m))) {
		coh_msg_destroy(m);
		answer_unread(sh, f, COH_ERROR);
	}
}

static bool store_from_l2(struct shard *sh, const struct fwd *f, const struct coh_msg *m);

/*
 * Whether the value Redis returned (m) goes into L1, for the requests that
 * wait for it (first and those behind it on qnext; a lease GET alone).
 * Always when L1 has no copy.  Over L1's copy only when that copy misses
 * every one of them and Redis's would answer one: L1's clock counts whole
 * seconds from the write, Redis's PX milliseconds from the write-through,
 * so for a moment L1 may call a value past its TTL (or its
 * stale-while-revalidate window) that Redis does not, and then Redis's
 * expiry wins (else a GET would miss a value the fleet still serves, and a
 * lease GET would get neither it nor a lease).  Otherwise L1's copy stays:
 * one that answers may be a newer write still on its way to Redis, and
 * rewriting one as stale as Redis's would change its ETag for nothing.
 * Nor over a copy when the read was overtaken (nocache): the value is
 * removed again after the answers, and L1's copy, which a stale-if-error
 * GET may still want, would go with it.
 */
static bool l2_copy_wanted(struct shard *sh, const struct fwd *first, bool alone,
			   const struct coh_msg *m, bool nocache)
{
	const struct cache_req *r = &first->req;
	struct store_item it;
	struct reply probe;
	bool answers = false;

	if (store_get(sh->store, r->key, r->key_len, r->hash, &it) != 0)
		return true;
	if (nocache)
		return false;
	for (const struct fwd *f = first; f; f = alone ? NULL : f->qnext) {
		if (cache_exec(sh->cache, &f->req, &probe) != CACHE_MISS)
			return false;
		answers = answers || cache_copy_answers(sh->cache, &f->req, m->ttl,
							(const uint8_t *)m->ext, m->ext_len);
	}
	return answers;
}

void l2_lease_get(struct shard *sh, struct fwd *f)
{
	const struct cache_req *r = &f->req;
	struct coh_msg *m = coh_msg_create(COH_LEASE_GET, sh->id, r->hash, r->key, r->key_len,
					   NULL, 0, 0);

	if (m) {
		memcpy(m->lease, f->lease_tok, LEASE_TOKEN_LEN);
		m->lease_len = LEASE_TOKEN_LEN;
		m->lease_ttl_ms = sh->cfg->lease_ttl;
		m->cookie = f;
		f->l2_gen = sh->l2->gen;
	}
	if (!m || !submit(sh->l2, sh->id, m)) {
		coh_msg_destroy(m);
		fill_fleet_done(sh, f, COH_ERROR, 0);
	}
}

void l2_lease_release(struct shard *sh, const void *key, uint32_t key_len, uint64_t hash,
		      const char *tok)
{
	struct coh_msg *m = coh_msg_create(COH_LEASE_RELEASE, sh->id, hash, key, key_len, NULL,
					   0, 0);

	if (!m)
		return; /* it ends in Redis by its PX */
	memcpy(m->lease, tok, LEASE_TOKEN_LEN);
	m->lease_len = LEASE_TOKEN_LEN;
	if (!submit(sh->l2, sh->id, m))
		coh_msg_destroy(m);
}

/*
 * A COH_LEASE_GET came back.  A value: kept in L1 (as a read's, when
 * l2_copy_wanted()) and served HIT-L2, then fill.c answers the key's other
 * waiters from L1; otherwise fill.c decides (leased, held elsewhere, or
 * Redis unreachable: this instance alone).
 */
static void lease_got(struct shard *sh, struct fwd *f, const struct coh_msg *m)
{
	bool stored = false;

	if (m->status != COH_OK) {
		fill_fleet_done(sh, f, m->status, m->flags);
		return;
	}
	uint8_t keybuf[STORE_KEY_MAX];
	uint32_t key_len = f->req.key_len;
	uint64_t hash = f->req.hash;
	memcpy(keybuf, f->req.key, key_len);
	/* overtaken while in flight: a purge or FLUSH (gen), or a DELETE or an
	 * invalidation of the key, which ended the lease made for f; what the
	 * read took may be what they removed */
	bool overtaken = f->l2_gen != sh->l2->gen ||
			 !lease_holds(sh->lease, keybuf, key_len, hash, f->lease_tok,
				      LEASE_TOKEN_LEN);
	bool nocache = overtaken || (m->flags & COH_F_NOCACHE);

	if (l2_copy_wanted(sh, f, true, m, nocache)) {
		stored = store_from_l2(sh, f, m);
		if (!stored)
			stats_inc(&sh->stats->l2_refused);
	}
	fill_fleet_done(sh, f, COH_OK, m->flags);       /* may free f */
	if (stored && nocache && store_delete(sh->store, keybuf, key_len, hash) == 0)
		route_count_store(sh);
}

void l2_purge(struct shard *sh, struct fwd *p)
{
	struct coh_msg *m = coh_msg_create(COH_PURGE, sh->id, 0, p->req.key, p->req.key_len, NULL,
					   0, 0);

	if (!m || (m->cookie = p, !submit(sh->l2, sh->id, m))) {
		coh_msg_destroy(m);
		route_purge_l2_done(p, REPLY_L2_ERROR, 0);
	}
}

/* Another instance (or an application) purged a tag: this shard's part,
 * in slices like a DELETE /tags/ here, answering nobody. */
static void purge_from_l2(struct shard *sh, const struct coh_msg *m)
{
	struct cache_req cr;
	struct answer_to to;

	memset(&cr, 0, sizeof(cr));
	memset(&to, 0, sizeof(to));
	cr.op = CACHE_TAG_PURGE;
	cr.key = (const uint8_t *)m->key;
	cr.key_len = m->key_len;
	struct fwd *f = fwd_create(sh, NULL, &cr, &to);
	if (f)
		fwd_purge_begin(sh, f);
	/* without memory the keys stay until their TTL: as a lost message */
}

void l2_cluster(struct shard *sh, struct fwd *f)
{
	struct coh_msg *m = coh_msg_create(COH_CLUSTER, sh->id, 0, NULL, 0, NULL, 0, 0);

	if (!m || (m->cookie = f, !submit(sh->l2, sh->id, m))) {
		coh_msg_destroy(m);
		reply_status(&f->r, 503, "redis unavailable\n");
		f->r.l2 = REPLY_L2_UNAVAILABLE;
		fwd_answer(sh, f);
	}
}

/* Stores the value Redis returned in L1; false if L1 would not take it. */
static bool store_from_l2(struct shard *sh, const struct fwd *f, const struct coh_msg *m)
{
	struct cache_req put = f->req;
	struct reply ignored;

	put.op = CACHE_PUT;
	put.body = (const uint8_t *)m->value;
	put.body_len = (uint32_t)m->value_len;
	put.ttl = m->ttl;   /* 0: none in Redis, so none here */
	put.content_type.p = m->ctype;
	put.content_type.len = m->ctype_len;
	put.ext = (const uint8_t *)m->ext;     /* checked by the executor */
	put.ext_len = m->ext_len;
	put.swr = put.sie = 0;                  /* the GET's query is not a write's */
	put.cache_control.len = 0;
	put.if_none_match.len = 0;
	if (m->value_len > UINT32_MAX || cache_exec(sh->cache, &put, &ignored) != CACHE_STORED)
		return false;
	route_count_store(sh);
	return true;
}

/*
 * The read of g's key came back: store the value in L1 (when
 * l2_copy_wanted(): not over a newer copy L1 got meanwhile), answer every
 * waiter from L1, then forget the read; a value that may be stale
 * (overtaken here, or COH_F_NOCACHE) is removed again once the waiters are
 * answered.  A value L1 refuses (larger than --max-value, a Content-Type it
 * cannot keep) is bad data to this instance: counted in l2_refused,
 * answered 404 with X-L2: bad-data.
 */
static void finish_get(struct shard *sh, struct l2_get *g, const struct coh_msg *m)
{
	struct l2_state *l2 = sh->l2;
	const struct cache_req *key = &g->first->req;
	enum reply_l2 status = l2_status(m->status);
	bool nocache = g->nocache || (m->flags & COH_F_NOCACHE);
	bool served_l2 = false;

	if (g->key) {
		g->key->get = NULL;
		key_put(l2, g->key);
	}
	if (g->prev)
		g->prev->next = g->next;
	else
		l2->gets = g->next;
	if (g->next)
		g->next->prev = g->prev;
	if (m->status == COH_OK)
		stats_inc(&sh->stats->l2_hits);
	else if (m->status == COH_MISS)
		stats_inc(&sh->stats->l2_misses);
	if (m->status == COH_OK && l2_copy_wanted(sh, g->first, false, m, nocache)) {
		served_l2 = store_from_l2(sh, g->first, m);
		if (!served_l2) {
			stats_inc(&sh->stats->l2_refused);
			status = REPLY_L2_BAD_DATA;
		}
	}

	/* the key's bytes live in g->first, which fwd_answer() may free: copy */
	uint8_t keybuf[STORE_KEY_MAX];
	uint32_t key_len = key->key_len;
	uint64_t hash = key->hash;
	memcpy(keybuf, key->key, key_len);

	for (struct fwd *f = g->first, *next; f; f = next) {
		next = f->qnext;
		f->qnext = NULL;
		if (status == REPLY_L2_OK) {
			f->outcome = (uint8_t)cache_exec(sh->cache, &f->req, &f->r);
			f->via_l2 = served_l2;
			if (served_l2 && f->r.cache == REPLY_CACHE_HIT)
				f->r.cache = REPLY_CACHE_HIT_L2;
		} else if (status != REPLY_L2_MISS) {
			f->r.l2 = status;   /* still L1's 404 miss */
		}
		fwd_answer(sh, f);
	}
	if (served_l2 && nocache &&
	    store_delete(sh->store, keybuf, key_len, hash) == 0)
		route_count_store(sh);
	free(g);
}

void l2_read_done(struct shard *sh, struct coh_msg *m)
{
	finish_get(sh, m->cookie, m);
	coh_msg_destroy(m);
}

/* A write, a delete or the cluster list came back: complete f's reply. */
static void finish(struct shard *sh, struct fwd *f, const struct coh_msg *m)
{
	struct l2_key *k;

	if (m->op == COH_SET || m->op == COH_DEL) {
		k = *key_slot(sh->l2, m->hash, m->key, m->key_len);
		if (k) {
			k->writes--;
			key_put(sh->l2, k);
		}
	}
	switch (m->op) {
	case COH_DEL:
		if (f->outcome == CACHE_ABSENT && m->status == COH_OK &&
		    (m->flags & COH_F_EXISTED)) {
			/* not in L1 but in Redis: it was there, and now it is gone */
			reply_status(&f->r, 204, NULL);
			f->outcome = CACHE_DELETED;
		}
		f->r.l2 = l2_status(m->status);
		break;
	case COH_SET:
		f->r.l2 = l2_status(m->status);
		if (m->status == COH_OK && (m->flags & COH_F_LEASE_LOST)) {
			/* the fleet's lease went elsewhere first: nothing in Redis,
			 * so nothing here either (docs/cache-aside.md) */
			if (store_delete(sh->store, m->key, m->key_len, m->hash) == 0)
				route_count_store(sh);
			stats_inc(&sh->stats->lease_conflicts);
			reply_status(&f->r, 409, "lease revoked, expired or unknown\n");
			f->r.l2 = REPLY_L2_OK;
			f->outcome = CACHE_FAILED;
		}
		break;
	case COH_CLUSTER:
		if (m->status == COH_OK) {
			reply_status(&f->r, 200, NULL);
			f->r.type = "application/json";
			f->r.type_len = 16;
			f->r.body = m->value;
			f->r.body_len = m->value_len;
		} else {
			reply_status(&f->r, 503, "redis unavailable\n");
			f->r.l2 = REPLY_L2_UNAVAILABLE;
		}
		break;
	}
}

bool l2_drain(struct shard *sh)
{
	struct coh_msg *m;
	bool any = false;

	if (!sh->l2)
		return false;
	if (sh->l2->rd)
		l2read_tick(sh->l2->rd);
	while ((m = coh_poll(sh->l2->coh, sh->id)) != NULL) {
		any = true;
		switch (m->op) {
		case COH_INVALIDATE:
			if (store_delete(sh->store, m->key, m->key_len, m->hash) == 0)
				route_count_store(sh);
			supersede(sh->l2, m->hash, m->key, m->key_len);
			fill_invalidated(sh, m->key, m->key_len, m->hash);
			break;
		case COH_FLUSH:
			store_flush(sh->store, m->older_than);
			route_count_store(sh);
			fill_flushed(sh);       /* their revokes may be lost too */
			sh->l2->gen++;
			break;
		case COH_PURGE_TAG:
			supersede_all(sh->l2);
			purge_from_l2(sh, m);
			break;
		case COH_PURGE:
			route_purge_l2_done(m->cookie, l2_status(m->status), m->count);
			break;
		case COH_GET:
			finish_get(sh, m->cookie, m);
			break;
		case COH_LEASE_GET:
			lease_got(sh, m->cookie, m);
			break;
		case COH_LEASE_RELEASE:
			break;  /* done, or not the lease any more: nothing to do */
		default:
			finish(sh, m->cookie, m);
			fwd_answer(sh, m->cookie); /* renders before m (the body) goes */
			break;
		}
		coh_msg_destroy(m);
	}
	return any;
}
