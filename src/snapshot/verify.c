/*
 * verify.c - with --redis, a loaded item is served only if L2 still holds
 * it (snap_verify).
 *
 * While the daemon was down, other instances and applications went on
 * writing Redis and publishing invalidations; pub/sub kept none of them
 * for us.  So after the load, before the daemon serves, each shard reads
 * every key it loaded from Redis (COH_GET through the coherence thread, as
 * an L1 miss would, up to WINDOW at a time) and drops the item unless
 * Redis answers with the same value bytes and Content-Type, and a TTL no
 * shorter than what L1 would keep.  Whatever a cold daemon would have
 * promoted from Redis at that moment is what a warm one keeps.
 *
 * Why nothing invalidated can slip through.  Every writer (our instances;
 * an application should too) changes Redis first and publishes after, on
 * one connection.  A COH_GET is answered COH_OK only while the breaker is
 * closed, that is after our subscription was confirmed (docs/coherence.md):
 *
 *   - a write published before our subscription: Redis had it before our
 *     read, so the read sees the new value (or none): dropped;
 *   - a write published after it: its invalidation reaches this shard as
 *     COH_INVALIDATE, which this loop (or the serving loop later) applies
 *     to the loaded item, whenever it arrives: the item is in the store
 *     from the load on, and this check only ever deletes;
 *   - a read overtaken by a write or an invalidation of its key comes back
 *     with COH_F_NOCACHE: dropped;
 *   - the subscription lost meanwhile: the coherence thread sends
 *     COH_FLUSH at the resubscription, which drops every item stored
 *     before the loss, loaded ones included.
 *
 * An application that only PUBLISHes an invalidation and leaves Redis
 * unchanged gets, from a warm daemon, the value Redis holds: what a cold
 * one would fetch on the first miss.
 *
 * Redis down or not answering: a read answered SKIPPED, TIMEOUT or ERROR
 * is asked again RETRY_NS later; when no read has been answered for
 * SNAP_VERIFY_STALL_MS the shard stops asking and drops every item not
 * checked (it cannot prove them current): it starts as a cold one would.
 * Nothing is left in flight when it returns.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/repr.h"
#include "ringcache/clock.h"
#include "ringcache/coherence.h"
#include "ringcache/hash.h"
#include "ringcache/store.h"
#include "snap_int.h"

#define WINDOW    256u                  /* reads in flight per shard */
#define RETRY_NS  20000000ull           /* 20 ms */

/* A key to ask again, and not before when. */
struct retry {
	uint64_t at;
	uint32_t key_len;
	uint8_t key[SNAP_KEY_MAX];
};

struct verifier {
	struct snap *s;
	unsigned me;
	struct store *st;
	struct coh *coh;
	struct snap_counts *c;
	struct store_iter *it;
	bool walked;                    /* the iterator is exhausted */
	bool giving_up;
	struct coh_msg *held;           /* created, the ring was full */
	struct retry *retry;            /* WINDOW entries, a FIFO */
	uint32_t rhead, rlen;
	unsigned inflight;
	uint64_t progress_ns;           /* the last answer that decided something */
};

static void drop(struct verifier *v, const void *key, uint32_t len, uint64_t hash,
		 uint64_t *count)
{
	if (store_delete(v->st, key, len, hash) == 0)
		(*count)++;
}

/* Whether the L1 item of m's key is what Redis answered in m. */
static bool same(struct verifier *v, const struct store_item *it, const struct coh_msg *m)
{
	struct repr_view rv;
	const char *type;
	uint32_t type_len;

	if (repr_unpack(it->value, it->value_len, it->flags, it->etag, &rv) != 0)
		return false;
	if (rv.part[REPR_IDENTITY].len != m->value_len ||
	    memcmp(rv.part[REPR_IDENTITY].p, m->value, m->value_len) != 0)
		return false;
	/* the type L1 serves, and the one a promotion of m would give it (an
	 * empty type in Redis: the default, type 0) */
	if (rv.type >= 0) {
		type = repr_type_name((unsigned)rv.type, &type_len);
	} else {
		type = rv.type_str;
		type_len = rv.type_len;
	}
	if (m->ctype_len ? (m->ctype_len != type_len || memcmp(m->ctype, type, type_len))
			 : rv.type != 0)
		return false;
	/* the same stale windows and tags (issue 9): the extension header L1
	 * keeps is the one an RCV2 frame carries, byte for byte */
	if (rv.ext.bits ? m->ext_len != rv.ext.len || memcmp(m->ext, it->value, rv.ext.len)
			: m->ext_len != 0)
		return false;
	/* L1 must not outlive L2: a TTL in Redis shorter than what L1 keeps
	 * (remaining max-age; the second the cache adds is not a promise) */
	if (m->ttl) {
		uint32_t now = store_now(v->st);
		if (!it->expires || (it->expires > now + 1 && it->expires - now - 1 > m->ttl + 1))
			return false;
	}
	return true;
}

static void queue_retry(struct verifier *v, const struct coh_msg *m)
{
	struct retry *r = &v->retry[(v->rhead + v->rlen++) % WINDOW];

	r->at = clock_mono_ns() + RETRY_NS;
	r->key_len = m->key_len;
	memcpy(r->key, m->key, m->key_len);
}

static void answer(struct verifier *v, struct coh_msg *m)
{
	struct store_item it;

	v->inflight--;
	switch (m->status) {
	case COH_OK:
	case COH_MISS:
	case COH_BAD_DATA:
		v->progress_ns = clock_mono_ns();
		if (store_get(v->st, m->key, m->key_len, m->hash, &it) != 0)
			break;          /* invalidated meanwhile: already gone */
		if (m->status == COH_OK && !(m->flags & COH_F_NOCACHE) && same(v, &it, m))
			v->c->verified++;
		else
			drop(v, m->key, m->key_len, m->hash, &v->c->stale);
		break;
	default:        /* SKIPPED, TIMEOUT, ERROR: not decided */
		if (v->giving_up)
			drop(v, m->key, m->key_len, m->hash, &v->c->unverified);
		else
			queue_retry(v, m);
		break;
	}
}

/* Applies what the coherence thread sent: answers and invalidations. */
static bool poll_coh(struct verifier *v)
{
	struct coh_msg *m;
	bool any = false;

	while ((m = coh_poll(v->coh, v->me)) != NULL) {
		any = true;
		switch (m->op) {
		case COH_GET:
			answer(v, m);
			break;
		case COH_INVALIDATE:
			drop(v, m->key, m->key_len, m->hash, &v->c->stale);
			break;
		case COH_FLUSH:
			v->c->stale += store_flush(v->st, m->older_than);
			break;
		default:        /* nothing else was asked */
			break;
		}
		coh_msg_destroy(m);
	}
	return any;
}

/*
 * The next key to ask about: a retry that is due, else the next item if
 * `fresh` allows one.  Reads out, retries waiting and a held message never
 * add up to more than WINDOW, so the retry FIFO (WINDOW entries) cannot
 * overflow: every retry was a read out.
 */
static struct coh_msg *next_msg(struct verifier *v, bool fresh)
{
	const void *key;
	uint32_t len;
	struct store_entry e;

	if (v->rlen && v->retry[v->rhead].at <= clock_mono_ns()) {
		struct retry *r = &v->retry[v->rhead];
		key = r->key;
		len = r->key_len;
		v->rhead = (v->rhead + 1) % WINDOW;
		v->rlen--;
	} else if (!fresh || v->walked) {
		return NULL;
	} else if (store_iter_next(v->it, &e) == 0) {
		key = e.key;
		len = e.key_len;
	} else {
		v->walked = true;
		return NULL;
	}
	uint64_t hash = hash_key(key, len);
	struct coh_msg *m = coh_msg_create(COH_GET, v->me, hash, key, len, NULL, 0, 0);

	if (!m)         /* no memory to ask: it cannot be kept unchecked */
		drop(v, key, len, hash, &v->c->unverified);
	return m;
}

/* Sends what it may: retries that are due, and new reads while the window
 * has room. */
static void send_some(struct verifier *v)
{
	bool sent = false;

	for (;;) {
		struct coh_msg *m = v->held;

		if (!m)
			m = next_msg(v, v->inflight + v->rlen < WINDOW);
		if (!m)
			break;
		v->held = NULL;
		if (!coh_submit(v->coh, v->me, m)) {
			v->held = m;    /* the ring is full: after the next poll */
			break;
		}
		v->inflight++;
		sent = true;
	}
	if (sent)
		coh_flush(v->coh, v->me);
}

/* Stops asking: drops everything not checked yet. */
static void give_up(struct verifier *v)
{
	struct store_entry e;

	v->giving_up = true;
	if (v->held) {
		drop(v, v->held->key, v->held->key_len, v->held->hash, &v->c->unverified);
		coh_msg_destroy(v->held);
		v->held = NULL;
	}
	for (; v->rlen; v->rhead = (v->rhead + 1) % WINDOW, v->rlen--) {
		struct retry *r = &v->retry[v->rhead];
		drop(v, r->key, r->key_len, hash_key(r->key, r->key_len), &v->c->unverified);
	}
	while (!v->walked && store_iter_next(v->it, &e) == 0)
		drop(v, e.key, e.key_len, hash_key(e.key, e.key_len), &v->c->unverified);
	v->walked = true;
}

void snap_verify(struct snap *s, unsigned me, struct store *st, struct coh *coh)
{
	struct verifier v = { .s = s, .me = me, .st = st, .coh = coh };
	struct store_counts sc;
	uint64_t start = clock_mono_ns();

	if (!s || s->state != SNAP_READY || !coh)
		return;
	v.c = &s->sh[me].counts;
	store_counts(st, &sc);
	if (sc.items == 0)
		return;
	v.retry = malloc(sizeof(*v.retry) * WINDOW);
	if (!v.retry || store_iter_create(st, &v.it)) {
		/* cannot check them: cannot keep them */
		v.c->unverified += store_flush(st, store_now(st) + 1);
		free(v.retry);
		return;
	}
	v.progress_ns = start;
	for (;;) {
		if (!v.giving_up)
			send_some(&v);
		bool any = poll_coh(&v);
		if (v.walked && !v.held && !v.rlen && !v.inflight)
			break;
		if (!v.giving_up &&
		    clock_mono_ns() - v.progress_ns > SNAP_VERIFY_STALL_MS * 1000000ull)
			give_up(&v);
		if (!any) {
			struct timespec ts = { 0, 50000 };
			nanosleep(&ts, NULL);
		}
	}
	store_iter_destroy(v.it);
	free(v.retry);
	store_counts(st, &sc);
	v.c->held = sc.items;
	s->sh[me].verify_ns = clock_mono_ns() - start;
}
