/*
 * lease.c - one shard's fill leases (lease.h).
 *
 * Entries live in a chained hash table of LEASE_BUCKETS buckets, indexed by
 * the key hash's middle bits (its top bits chose the shard, its low bits the
 * store bucket), and on one doubly-linked list in order of expiry.  Since
 * every lease lasts --lease-ttl and every wait --lease-wait, appending keeps
 * both lists sorted: the heads are always the next to come due.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ringcache/lease.h"

#define LEASE_BUCKETS 1024u     /* power of two */

struct lease_entry {
	struct lease_entry *next;               /* bucket chain */
	struct lease_entry *eprev, *enext;      /* the list by expiry */
	uint64_t hash;
	uint64_t expires;
	struct lease_waiter *head, *tail;       /* waiters, oldest first */
	uint32_t nwait;
	bool fleet;                             /* lease_set_fleet() */
	uint32_t key_len;
	char token[LEASE_TOKEN_LEN + 1];
	uint8_t key[];
};

struct lease_tab {
	struct lease_limits lim;
	struct lease_counters cnt;
	uint64_t sip[2];                        /* the token key */
	uint64_t serial;                        /* tokens made */
	uint32_t nleases, nwaiting;
	struct lease_entry *ehead, *etail;      /* by expiry */
	struct lease_waiter *whead, *wtail;     /* by deadline */
	struct lease_entry *buckets[LEASE_BUCKETS];
};

static inline void count(_Atomic uint64_t *c, int64_t n)
{
	if (c)
		atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) +
				      (uint64_t)n, memory_order_relaxed);
}

static inline void gauge(_Atomic uint64_t *c, uint64_t v)
{
	if (c)
		atomic_store_explicit(c, v, memory_order_relaxed);
}

static void gauges(struct lease_tab *t)
{
	gauge(t->cnt.leases, t->nleases);
	gauge(t->cnt.lease_waiters, t->nwaiting);
}

/* --- tokens: SipHash-2-4 of the serial -------------------------------- */

static inline uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                   \
	do {                                                                       \
		v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);          \
		v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                             \
		v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                             \
		v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);          \
	} while (0)

/* SipHash-2-4 of one 8-byte message m under key k. */
static uint64_t siphash_u64(const uint64_t k[2], uint64_t m)
{
	uint64_t v0 = k[0] ^ 0x736f6d6570736575ull, v1 = k[1] ^ 0x646f72616e646f6dull;
	uint64_t v2 = k[0] ^ 0x6c7967656e657261ull, v3 = k[1] ^ 0x7465646279746573ull;
	uint64_t b = 8ull << 56;

	v3 ^= m;
	SIPROUND;
	SIPROUND;
	v0 ^= m;
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static void make_token(struct lease_tab *t, char out[LEASE_TOKEN_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t n = t->serial++;
	uint64_t h[2] = { siphash_u64(t->sip, n << 1), siphash_u64(t->sip, n << 1 | 1) };

	for (unsigned i = 0; i < 2; i++)
		for (unsigned j = 0; j < 16; j++)
			out[i * 16 + j] = hex[(h[i] >> (60 - 4 * j)) & 15];
	out[LEASE_TOKEN_LEN] = '\0';
}

bool lease_token_valid(const char *p, size_t len)
{
	if (len == 0 || len > LEASE_TOKEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return false;
	return true;
}

/* --- the table ---------------------------------------------------------- */

int lease_tab_create(struct lease_tab **out, const struct lease_limits *lim,
		     const struct lease_counters *cnt, const uint8_t *seed)
{
	struct lease_tab *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->lim = *lim;
	if (!t->lim.max_leases)
		t->lim.max_leases = LEASE_MAX_LEASES;
	if (!t->lim.max_waiters)
		t->lim.max_waiters = LEASE_MAX_WAITERS;
	if (cnt)
		t->cnt = *cnt;
	if (seed) {
		memcpy(t->sip, seed, sizeof(t->sip));
	} else if (getrandom(t->sip, sizeof(t->sip), 0) != (ssize_t)sizeof(t->sip)) {
		int rc = errno ? -errno : -EIO;
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void lease_tab_destroy(struct lease_tab *t)
{
	if (!t)
		return;
	for (unsigned b = 0; b < LEASE_BUCKETS; b++)
		for (struct lease_entry *e = t->buckets[b], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	free(t);
}

static struct lease_entry **slot_of(const struct lease_tab *t, uint64_t hash, const void *key,
				    uint32_t key_len)
{
	struct lease_entry *const *pp = &t->buckets[(hash >> 16) & (LEASE_BUCKETS - 1)];

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == hash && (*pp)->key_len == key_len &&
		    memcmp((*pp)->key, key, key_len) == 0)
			break;
	return (struct lease_entry **)pp;
}

static void expiry_unlink(struct lease_tab *t, struct lease_entry *e)
{
	if (e->eprev)
		e->eprev->enext = e->enext;
	else
		t->ehead = e->enext;
	if (e->enext)
		e->enext->eprev = e->eprev;
	else
		t->etail = e->eprev;
	e->eprev = e->enext = NULL;
}

static void expiry_append(struct lease_tab *t, struct lease_entry *e, uint64_t now)
{
	e->expires = now + t->lim.ttl_ns;
	e->eprev = t->etail;
	e->enext = NULL;
	if (t->etail)
		t->etail->enext = e;
	else
		t->ehead = e;
	t->etail = e;
}

static void waiter_unlink(struct lease_tab *t, struct lease_waiter *w)
{
	if (w->tprev)
		w->tprev->tnext = w->tnext;
	else
		t->whead = w->tnext;
	if (w->tnext)
		w->tnext->tprev = w->tprev;
	else
		t->wtail = w->tprev;
	w->tprev = w->tnext = NULL;
	t->nwaiting--;
}

/* Takes w out of its key's FIFO and the deadline list: it waits no more. */
static void waiter_remove(struct lease_tab *t, struct lease_waiter *w)
{
	struct lease_entry *e = w->entry;

	if (w->prev)
		w->prev->next = w->next;
	else
		e->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		e->tail = w->prev;
	e->nwait--;
	w->next = w->prev = NULL;
	w->entry = NULL;
	waiter_unlink(t, w);
}

/* Removes the entry at *pp (no waiters left) and frees it. */
static void entry_free(struct lease_tab *t, struct lease_entry **pp)
{
	struct lease_entry *e = *pp;

	*pp = e->next;
	expiry_unlink(t, e);
	t->nleases--;
	free(e);
	gauges(t);
}

enum lease_verdict lease_miss(struct lease_tab *t, const void *key, uint32_t key_len,
			      uint64_t hash, uint64_t now, struct lease_waiter *w,
			      char token[LEASE_TOKEN_LEN + 1])
{
	struct lease_entry **pp = slot_of(t, hash, key, key_len);
	struct lease_entry *e = *pp;

	if (e) {
		if (!w || e->nwait >= t->lim.max_waiters) {
			if (w)
				count(t->cnt.lease_refused, 1);
			return LEASE_REFUSED;
		}
		w->next = NULL;
		w->prev = e->tail;
		w->entry = e;
		if (e->tail)
			e->tail->next = w;
		else
			e->head = w;
		e->tail = w;
		e->nwait++;
		w->deadline = now + t->lim.wait_ns;
		w->tnext = NULL;
		w->tprev = t->wtail;
		if (t->wtail)
			t->wtail->tnext = w;
		else
			t->whead = w;
		t->wtail = w;
		t->nwaiting++;
		gauges(t);
		return LEASE_WAIT;
	}
	if (t->nleases >= t->lim.max_leases ||
	    !(e = calloc(1, sizeof(*e) + key_len))) {
		count(t->cnt.lease_refused, 1);
		return LEASE_REFUSED;
	}
	e->hash = hash;
	e->key_len = key_len;
	memcpy(e->key, key, key_len);
	make_token(t, e->token);
	memcpy(token, e->token, LEASE_TOKEN_LEN + 1);
	e->next = *pp;
	*pp = e;
	expiry_append(t, e, now);
	t->nleases++;
	count(t->cnt.lease_granted, 1);
	gauges(t);
	return LEASE_GRANTED;
}

static bool token_eq(const struct lease_entry *e, const char *tok, size_t len)
{
	return len == LEASE_TOKEN_LEN && memcmp(e->token, tok, LEASE_TOKEN_LEN) == 0;
}

bool lease_holds(const struct lease_tab *t, const void *key, uint32_t key_len, uint64_t hash,
		 const char *tok, size_t len)
{
	const struct lease_entry *e = *slot_of(t, hash, key, key_len);

	return e && token_eq(e, tok, len);
}

int lease_set_fleet(struct lease_tab *t, const void *key, uint32_t key_len, uint64_t hash,
		    const char *tok)
{
	struct lease_entry *e = *slot_of(t, hash, key, key_len);

	if (!e || !token_eq(e, tok, strlen(tok)))
		return -ENOENT;
	e->fleet = true;
	return 0;
}

bool lease_is_fleet(const struct lease_tab *t, const void *key, uint32_t key_len,
		    uint64_t hash, const char *tok, size_t len)
{
	const struct lease_entry *e = *slot_of(t, hash, key, key_len);

	return e && token_eq(e, tok, len) && e->fleet;
}

/* Takes every waiter of e off the deadline list; returns the FIFO. */
static struct lease_waiter *take_waiters(struct lease_tab *t, struct lease_entry *e)
{
	struct lease_waiter *all = e->head;

	for (struct lease_waiter *w = all; w; w = w->next) {
		w->prev = NULL;
		w->entry = NULL;
		waiter_unlink(t, w);
	}
	e->head = e->tail = NULL;
	e->nwait = 0;
	return all;
}

struct lease_waiter *lease_filled(struct lease_tab *t, const void *key, uint32_t key_len,
				  uint64_t hash)
{
	struct lease_entry **pp = slot_of(t, hash, key, key_len);

	if (!*pp)
		return NULL;
	count(t->cnt.lease_waiters_answered, (*pp)->nwait);
	struct lease_waiter *all = take_waiters(t, *pp);
	count(t->cnt.lease_filled, 1);
	entry_free(t, pp);
	return all;
}

/* e's lease ended unfilled: hand it to the oldest waiter, or free e. */
static struct lease_waiter *hand_over(struct lease_tab *t, struct lease_entry **pp,
				      uint64_t now, char token[LEASE_TOKEN_LEN + 1])
{
	struct lease_entry *e = *pp;
	struct lease_waiter *w = e->head;

	if (!w) {
		entry_free(t, pp);
		return NULL;
	}
	waiter_remove(t, w);
	e->fleet = false;
	make_token(t, e->token);
	memcpy(token, e->token, LEASE_TOKEN_LEN + 1);
	expiry_unlink(t, e);
	expiry_append(t, e, now);
	count(t->cnt.lease_granted, 1);
	count(t->cnt.lease_handed_over, 1);
	gauges(t);
	return w;
}

int lease_end(struct lease_tab *t, const void *key, uint32_t key_len, uint64_t hash,
	      const char *tok, size_t len, enum lease_end why, uint64_t now,
	      struct lease_waiter **handed, char token[LEASE_TOKEN_LEN + 1])
{
	struct lease_entry **pp = slot_of(t, hash, key, key_len);

	*handed = NULL;
	if (!*pp || (len && !token_eq(*pp, tok, len)))
		return -ENOENT;
	count(why == LEASE_END_REVOKED ? t->cnt.lease_revoked : t->cnt.lease_abandoned, 1);
	*handed = hand_over(t, pp, now, token);
	return 0;
}

uint64_t lease_next_due(const struct lease_tab *t)
{
	uint64_t due = UINT64_MAX;

	/* both lists are sorted (one constant each for --lease-wait and
	 * --lease-ttl): their heads are the earliest */
	if (t->whead)
		due = t->whead->deadline;
	if (t->ehead && t->ehead->expires < due)
		due = t->ehead->expires;
	return due;
}

int lease_tick(struct lease_tab *t, uint64_t now, struct lease_event *ev)
{
	struct lease_waiter *w = t->whead;

	if (w && w->deadline <= now) {
		waiter_remove(t, w);
		count(t->cnt.lease_waiters_timed_out, 1);
		gauges(t);
		ev->kind = LEASE_EV_TIMED_OUT;
		ev->w = w;
		return 1;
	}
	while (t->ehead && t->ehead->expires <= now) {
		struct lease_entry *e = t->ehead;
		count(t->cnt.lease_expired, 1);
		memcpy(ev->prev, e->token, sizeof(ev->prev));
		ev->prev_fleet = e->fleet;
		ev->key = e->key;
		ev->key_len = e->key_len;
		ev->hash = e->hash;
		w = hand_over(t, slot_of(t, e->hash, e->key, e->key_len), now, ev->token);
		if (w) {
			ev->kind = LEASE_EV_HANDED;
			ev->w = w;
			return 1;
		}
	}
	return 0;
}

struct lease_waiter *lease_waiters_of(const struct lease_tab *t, const void *key,
				      uint32_t key_len, uint64_t hash)
{
	const struct lease_entry *e = *slot_of(t, hash, key, key_len);

	return e ? e->head : NULL;
}

void lease_leave(struct lease_tab *t, struct lease_waiter *w)
{
	waiter_remove(t, w);
	count(t->cnt.lease_waiters_gone, 1);
	gauges(t);
}

void lease_expire_all(struct lease_tab *t)
{
	/* all equal: the expiry list stays sorted */
	for (struct lease_entry *e = t->ehead; e; e = e->enext)
		e->expires = 0;
}

uint32_t lease_count(const struct lease_tab *t)
{
	return t->nleases;
}

uint32_t lease_waiting(const struct lease_tab *t)
{
	return t->nwaiting;
}
