/*
 * fill.c - fill leases in the shard (fill.h).
 *
 * Everything here that touches sh->lease runs on the key's owner shard;
 * the notes of a connection (struct fill_note) only on its own shard.  An
 * abandon crosses from one to the other as a fwd without a connection, the
 * way every cross-shard operation travels (fwd.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "fill.h"
#include "fwd.h"
#include "l2.h"
#include "shard.h"
#include "ringcache/coherence.h"
#include "ringcache/hash.h"
#include "ringcache/lease.h"
#include "ringcache/stats.h"

#define MS 1000000ull

/* A lease a connection's client was handed. */
struct fill_note {
	struct fill_note *next;         /* newest first */
	uint64_t hash;
	uint32_t key_len;
	char token[LEASE_TOKEN_LEN + 1];
	uint8_t key[];
};

static const char conflict_text[] = "lease revoked, expired or unknown\n";

int fill_setup(struct shard *sh)
{
	struct lease_limits lim = {
		.ttl_ns = (uint64_t)sh->cfg->lease_ttl * MS,
		.wait_ns = (uint64_t)sh->cfg->lease_wait * MS,
	};
	struct lease_counters cnt = {
#define FILL_COUNTER(name, type, help) .name = &sh->stats->name,
		LEASE_STATS(FILL_COUNTER)
#undef FILL_COUNTER
	};

	return lease_tab_create(&sh->lease, &lim, &cnt, NULL);
}

void fill_teardown(struct shard *sh)
{
	/* the waiters are fwds, freed by their origins (fwd.h) */
	lease_tab_destroy(sh->lease);
	sh->lease = NULL;
}

static struct fwd *fwd_of_waiter(struct lease_waiter *w)
{
	return (struct fwd *)(void *)((char *)w - offsetof(struct fwd, lw));
}

/*
 * Whether f's client's connection has ended (fwd_orphan() sets it on the
 * origin).  Relaxed, a hint on the owner, except after the sweep fwd its
 * origin sent for f (fill_orphaned): that came on the ring after the store,
 * so from then on this shard reads true (ring.h: release/acquire).
 */
static inline bool client_gone(const struct fwd *f)
{
	return atomic_load_explicit(&f->cancelled, memory_order_relaxed);
}

/* f, waiting, is not waited for any more: it leaves its key's queue
 * unanswered and goes home, where its origin frees it (fwd.h). */
static void leave(struct shard *sh, struct fwd *f)
{
	lease_leave(sh->lease, &f->lw);
	fwd_home(sh, f);
}

/* f's answer: its 404 miss with a new lease's token. */
static void grant(struct shard *sh, struct fwd *f, const char *token)
{
	uint8_t l2 = f->r.l2;   /* why Redis did not answer, if it did not */

	memcpy(f->lease_tok, token, LEASE_TOKEN_LEN + 1);
	f->lease_granted = true;
	reply_status(&f->r, 404, NULL);
	f->r.l2 = l2;
	f->r.cache = REPLY_CACHE_MISS;
	f->r.lease = f->lease_tok;
	f->r.lease_len = LEASE_TOKEN_LEN;
	fwd_answer(sh, f);
}

/* With --redis the lease is the fleet's: taken in Redis, one per key. */
static inline bool fleet(const struct shard *sh)
{
	return sh->l2 != NULL;
}

/* The lease `token` (this shard's, for f) is tried in Redis, with the read. */
static void try_fleet(struct shard *sh, struct fwd *f, const char *token)
{
	memcpy(f->lease_tok, token, LEASE_TOKEN_LEN + 1);
	l2_lease_get(sh, f);
}

/*
 * A lease that ended unfilled went to waiter w.  If w's connection is gone
 * (client_gone()), nobody would fill: it ends again and goes on to the next.
 */
static void handed(struct shard *sh, struct lease_waiter *w, char *token)
{
	while (w) {
		struct fwd *f = fwd_of_waiter(w);
		if (!client_gone(f)) {
			if (!fleet(sh)) {
				grant(sh, f, token);
				return;
			}
			/*
			 * In Redis after what ended the lease: the DELETE being
			 * executed writes through after this returns, so the try
			 * waits for fill_tick (fill.h), behind it on the same ring.
			 */
			memcpy(f->lease_tok, token, LEASE_TOKEN_LEN + 1);
			f->lw.next = NULL;
			if (sh->lease_last)
				sh->lease_last->next = &f->lw;
			else
				sh->lease_next = &f->lw;
			sh->lease_last = &f->lw;
			return;
		}
		char gone[LEASE_TOKEN_LEN + 1];
		memcpy(gone, token, sizeof(gone));
		int rc = lease_end(sh->lease, f->req.key, f->req.key_len, f->req.hash, gone,
				   LEASE_TOKEN_LEN, LEASE_END_ABANDONED, sh->now_ns, &w, token);
		fwd_answer(sh, f);      /* last: its origin frees it once it is home */
		if (rc)
			return;
	}
}

/* The key's waiters get the value just stored in L1 (HIT-FILL). */
static void answer_waiters(struct shard *sh, struct lease_waiter *w)
{
	while (w) {
		struct fwd *f = fwd_of_waiter(w);
		w = w->next;
		f->lw.next = NULL;
		f->outcome = (uint8_t)cache_exec(sh->cache, &f->req, &f->r);
		if (f->r.cache == REPLY_CACHE_HIT)
			f->r.cache = REPLY_CACHE_HIT_FILL;
		f->via_fill = true;     /* an answer made again for room says so too */
		fwd_answer(sh, f);
	}
}

bool fill_refuses(struct shard *sh, struct cache_req *cr, struct reply *r)
{
	if (!cr->lease_token.len || cr->op == CACHE_GET || cr->op == CACHE_HEAD)
		return false;
	if (lease_holds(sh->lease, cr->key, cr->key_len, cr->hash, cr->lease_token.p,
			cr->lease_token.len)) {
		if (cr->op == CACHE_PUT &&
		    !lease_is_fleet(sh->lease, cr->key, cr->key_len, cr->hash, cr->lease_token.p,
				    cr->lease_token.len))
			cr->lease_token.len = 0;        /* this instance's alone */
		return false;
	}
	stats_inc(&sh->stats->lease_conflicts);
	reply_status(r, 409, conflict_text);
	return true;
}

void fill_after(struct shard *sh, const struct cache_req *cr, enum cache_outcome oc,
		struct reply *r)
{
	struct lease_waiter *w;
	char token[LEASE_TOKEN_LEN + 1];

	if (!sh->lease || !lease_count(sh->lease))
		return;         /* no lease on this shard: nothing to fill or end */
	if (cr->op == CACHE_PUT && oc == CACHE_STORED) {
		answer_waiters(sh, lease_filled(sh->lease, cr->key, cr->key_len, cr->hash));
	} else if (cr->op == CACHE_DELETE) {
		/* refused first (fill_refuses) if its token is not the lease */
		bool mine = cr->lease_token.len > 0;
		if (lease_end(sh->lease, cr->key, cr->key_len, cr->hash, cr->lease_token.p,
			      cr->lease_token.len,
			      mine ? LEASE_END_ABANDONED : LEASE_END_REVOKED, sh->now_ns, &w,
			      token) == 0 && mine && oc == CACHE_ABSENT)
			reply_status(r, 204, NULL);     /* what it asked, to end its lease, is done */
		handed(sh, w, token);
	}
}

void fill_missed(struct shard *sh, struct fwd *f)
{
	char token[LEASE_TOKEN_LEN + 1];

	switch (lease_miss(sh->lease, f->req.key, f->req.key_len, f->req.hash, sh->now_ns,
			   &f->lw, token)) {
	case LEASE_GRANTED:
		if (fleet(sh))
			try_fleet(sh, f, token);
		else
			grant(sh, f, token);
		break;
	case LEASE_WAIT:
		break;  /* answered by a fill, a hand-over or fill_tick */
	case LEASE_REFUSED:
		if (fleet(sh)) {
			f->req.fill_lease = false;      /* over a limit: a plain read */
			l2_begin(sh, f);
		} else {
			fwd_answer(sh, f);      /* its 404, without a token */
		}
		break;
	}
}

void fill_fleet_done(struct shard *sh, struct fwd *f, uint8_t status, uint16_t flags)
{
	struct cache_req *r = &f->req;
	char token[LEASE_TOKEN_LEN + 1];

	if (status == COH_OK) {
		f->outcome = (uint8_t)cache_exec(sh->cache, r, &f->r);
		if (f->outcome == CACHE_MISS && (flags & (COH_F_LEASED | COH_F_LEASE_HELD))) {
			/* Redis keeps the value for its stale-if-error window
			 * alone, a miss to this GET: the script took (or found)
			 * the lease, as for an absent key (the value is in L1
			 * now for a GET that asks for stale) */
			status = COH_MISS;
		} else {
			/* someone filled it (maybe on another instance): the
			 * value is in L1 now, for f and every waiter; the lease
			 * this shard made for f was never used, nor the one the
			 * script took (f asked for stale, or L1's second-rounded
			 * clock still calls it fresh or within its swr) */
			if (flags & COH_F_LEASED)
				l2_lease_release(sh, r->key, r->key_len, r->hash, f->lease_tok);
			if (f->r.cache == REPLY_CACHE_HIT)
				f->r.cache = REPLY_CACHE_HIT_L2;
			f->via_l2 = true;       /* an answer made again for room says so too */
			answer_waiters(sh, lease_filled(sh->lease, r->key, r->key_len, r->hash));
			fwd_answer(sh, f);
			return;
		}
	}
	if (status == COH_MISS && (flags & COH_F_LEASED)) {
		if (lease_set_fleet(sh->lease, r->key, r->key_len, r->hash, f->lease_tok) == 0) {
			grant(sh, f, f->lease_tok);
			return;
		}
		/* ended here meanwhile (a DELETE, an invalidation): give it back */
		l2_lease_release(sh, r->key, r->key_len, r->hash, f->lease_tok);
		flags = COH_F_LEASE_HELD;
	}
	if (status == COH_MISS && (flags & COH_F_LEASE_HELD)) {
		if (client_gone(f)) {
			/* its sweep (fill_orphaned) may have come while it was
			 * out at Redis: parked now, it would wait for nobody */
			fwd_home(sh, f);
			return;
		}
		/* another instance fills: wait here for its invalidation (or this
		 * shard's lease expiring, which tries again) */
		switch (lease_miss(sh->lease, r->key, r->key_len, r->hash, sh->now_ns, &f->lw,
				   token)) {
		case LEASE_WAIT:
			return;
		case LEASE_GRANTED:
			try_fleet(sh, f, token);        /* the entry went meanwhile */
			return;
		case LEASE_REFUSED:
			fwd_answer(sh, f);
			return;
		}
	}
	/* Redis did not answer: the lease is this instance's alone (X-L2 says
	 * why), if it is still the one made for f */
	f->r.l2 = (uint8_t)(status == COH_TIMEOUT ? REPLY_L2_TIMEOUT :
			    status == COH_SKIPPED ? REPLY_L2_SKIPPED :
			    status == COH_BAD_DATA ? REPLY_L2_BAD_DATA : REPLY_L2_ERROR);
	/* A script sent may have run all the same (its reply late, or not
	 * understood) and taken the lease in Redis, for nobody: every
	 * instance's next lease GET of the key would wait --lease-ttl for it.
	 * Released if it is that token; the invalidation that follows is our
	 * own, which this instance ignores: the lease made here stands. */
	if (status != COH_SKIPPED)
		l2_lease_release(sh, r->key, r->key_len, r->hash, f->lease_tok);
	if (lease_holds(sh->lease, r->key, r->key_len, r->hash, f->lease_tok, LEASE_TOKEN_LEN))
		grant(sh, f, f->lease_tok);
	else
		fwd_answer(sh, f);
}

void fill_invalidated(struct shard *sh, const void *key, uint32_t key_len, uint64_t hash)
{
	struct lease_waiter *w;
	char token[LEASE_TOKEN_LEN + 1];

	if (lease_end(sh->lease, key, key_len, hash, NULL, 0, LEASE_END_REVOKED, sh->now_ns, &w,
		      token) == 0)
		handed(sh, w, token);
}

void fill_flushed(struct shard *sh)
{
	lease_expire_all(sh->lease);
}

static void abandon(struct shard *sh, const void *key, uint32_t key_len, uint64_t hash,
		    const char *tok)
{
	struct lease_waiter *w;
	char token[LEASE_TOKEN_LEN + 1];

	bool was_fleet = lease_is_fleet(sh->lease, key, key_len, hash, tok, LEASE_TOKEN_LEN);

	if (lease_end(sh->lease, key, key_len, hash, tok, LEASE_TOKEN_LEN, LEASE_END_ABANDONED,
		      sh->now_ns, &w, token) == 0) {
		if (was_fleet)
			l2_lease_release(sh, key, key_len, hash, tok);
		handed(sh, w, token);
	}
}

void fill_exec_abandon(struct shard *sh, struct fwd *f)
{
	abandon(sh, f->req.key, f->req.key_len, f->req.hash, f->lease_tok);
	fwd_home(sh, f);
}

void fill_tick(struct shard *sh)
{
	struct lease_event ev;
	uint64_t now = sh->stopping ? UINT64_MAX : sh->now_ns;

	if (!sh->lease)
		return;
	/* fleet hand-overs (handed()), in order, each tried in Redis */
	while (sh->lease_next) {
		struct lease_waiter *w = sh->lease_next;
		struct fwd *f = fwd_of_waiter(w);
		sh->lease_next = w->next;
		if (!sh->lease_next)
			sh->lease_last = NULL;
		w->next = NULL;
		if (!client_gone(f)) {
			l2_lease_get(sh, f);
			continue;
		}
		char token[LEASE_TOKEN_LEN + 1];
		struct lease_waiter *next;
		int rc = lease_end(sh->lease, f->req.key, f->req.key_len, f->req.hash, f->lease_tok,
				   LEASE_TOKEN_LEN, LEASE_END_ABANDONED, sh->now_ns, &next, token);
		fwd_answer(sh, f);
		if (rc == 0)
			handed(sh, next, token);        /* queued behind: this loop gets it */
	}
	while (lease_tick(sh->lease, now, &ev)) {
		if (ev.kind == LEASE_EV_HANDED) {
			if (ev.prev_fleet)
				l2_lease_release(sh, ev.key, ev.key_len, ev.hash, ev.prev);
			handed(sh, ev.w, ev.token);
		} else {
			fwd_answer(sh, fwd_of_waiter(ev.w)); /* its 404, without a token */
		}
	}
}

void fill_orphaned(struct shard *sh, struct fwd *f)
{
	if (sh->stopping)
		return;
	if (!f->remote) {
		/* this shard owns its key: a waiter leaves now; one out at Redis
		 * is not parked when it comes back (fill_fleet_done) */
		if (lease_waits(&f->lw))
			leave(sh, f);
		return;
	}
	/*
	 * f is the owner's until it comes home: this shard must not touch
	 * its lease fields.  The sweep follows f on the same ring (or
	 * backlog), so the owner has taken f in by then, and reads f
	 * cancelled; wherever f is, what the sweep finds, it finds gone.
	 */
	struct cache_req cr = { .op = CACHE_GET, .key = f->req.key, .key_len = f->req.key_len,
				.hash = f->req.hash };
	struct answer_to to = { 0 };
	struct fwd *s = fwd_create(sh, NULL, &cr, &to);
	if (!s)
		return; /* f leaves by --lease-wait instead */
	s->lease_sweep = true;
	s->remote = true;
	s->owner = f->owner;
	fwd_send(sh, s->owner, s);
}

void fill_exec_sweep(struct shard *sh, struct fwd *f)
{
	struct lease_waiter *w = lease_waiters_of(sh->lease, f->req.key, f->req.key_len,
						  f->req.hash);

	/* at most LEASE_MAX_WAITERS: the key's whole queue is looked at, since
	 * the waiter the sweep was sent for cannot be named safely (it may be
	 * home and freed already, and its memory another fwd's) */
	while (w) {
		struct lease_waiter *next = w->next;
		struct fwd *g = fwd_of_waiter(w);
		if (client_gone(g))
			leave(sh, g);
		w = next;
	}
	fwd_home(sh, f);
}

/* --- a connection's leases (its own shard) ------------------------------- */

/* Sends the end of a lease to its owner (or ends it here). */
static void send_abandon(struct shard *sh, const uint8_t *key, uint32_t key_len, uint64_t hash,
			 const char *tok)
{
	unsigned owner = hash_shard(hash, sh->srv->nshards);

	if (owner == sh->id) {
		abandon(sh, key, key_len, hash, tok);
		return;
	}
	struct cache_req cr = { .op = CACHE_DELETE, .key = key, .key_len = key_len,
				.hash = hash };
	struct answer_to to = { 0 };
	struct fwd *f = fwd_create(sh, NULL, &cr, &to);
	if (!f)
		return; /* the lease ends by --lease-ttl instead */
	f->lease_abandon = true;
	memcpy(f->lease_tok, tok, LEASE_TOKEN_LEN + 1);
	f->remote = true;
	f->owner = (uint16_t)owner;
	fwd_send(sh, owner, f);
}

void fill_home(struct shard *sh, struct fwd *f)
{
	f->lease_granted = false;
	if (!f->conn)
		send_abandon(sh, f->req.key, f->req.key_len, f->req.hash, f->lease_tok);
	else
		fill_note(f->conn, &f->req, f->lease_tok);
}

bool fill_try(struct shard *sh, const struct cache_req *cr, char token[LEASE_TOKEN_LEN + 1],
	      struct reply *r)
{
	if (lease_try(sh->lease, cr->key, cr->key_len, cr->hash, sh->now_ns, token) !=
	    LEASE_GRANTED)
		return false;
	r->lease = token;
	r->lease_len = LEASE_TOKEN_LEN;
	return true;
}

void fill_try_fwd(struct shard *sh, struct fwd *f)
{
	const struct cache_req *cr = &f->req;

	/* an answer too large for its room went home unrendered, its lease
	 * noted there (fwd.h, "bounce"); made again, it finds the lease taken
	 * (its own), and without this the client would never learn the token */
	if (f->resent && lease_holds(sh->lease, cr->key, cr->key_len, cr->hash, f->lease_tok,
				     LEASE_TOKEN_LEN)) {
		f->r.lease = f->lease_tok;
		f->r.lease_len = LEASE_TOKEN_LEN;
		return;
	}
	if (fill_try(sh, cr, f->lease_tok, &f->r))
		f->lease_granted = true;
}

void fill_note(struct conn *c, const struct cache_req *cr, const char *token)
{
	struct fill_note *n = malloc(sizeof(*n) + cr->key_len);

	if (!n)
		return; /* ends by --lease-ttl if the client goes */
	n->hash = cr->hash;
	n->key_len = cr->key_len;
	memcpy(n->key, cr->key, cr->key_len);
	memcpy(n->token, token, LEASE_TOKEN_LEN + 1);
	n->next = c->leases;
	c->leases = n;
	if (++c->nleases > FILL_NOTES_MAX) {
		/* forget the oldest: it ends by --lease-ttl */
		struct fill_note **pp = &c->leases;
		while ((*pp)->next)
			pp = &(*pp)->next;
		free(*pp);
		*pp = NULL;
		c->nleases--;
	}
}

void fill_note_drop(struct conn *c, const struct cache_req *cr)
{
	for (struct fill_note **pp = &c->leases; *pp; pp = &(*pp)->next) {
		struct fill_note *n = *pp;
		if (cr->lease_token.len == LEASE_TOKEN_LEN &&
		    memcmp(n->token, cr->lease_token.p, LEASE_TOKEN_LEN) == 0) {
			*pp = n->next;
			free(n);
			c->nleases--;
			return;
		}
	}
}

void fill_answered(struct conn *c, const struct cache_req *cr, enum cache_outcome oc,
		   int status)
{
	if (!cr->lease_token.len || cr->op == CACHE_GET || cr->op == CACHE_HEAD)
		return;
	if (cr->op == CACHE_PUT && oc == CACHE_FAILED && status != 409)
		return;
	fill_note_drop(c, cr);
}

void fill_conn_gone(struct conn *c)
{
	for (struct fill_note *n = c->leases; n; n = n->next)
		send_abandon(c->sh, n->key, n->key_len, n->hash, n->token);
	fill_conn_free(c);
}

void fill_conn_free(struct conn *c)
{
	for (struct fill_note *n = c->leases, *next; n; n = next) {
		next = n->next;
		free(n);
	}
	c->leases = NULL;
	c->nleases = 0;
}
