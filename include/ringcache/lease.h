/*
 * lease.h - fill leases: single-flight for cache-aside (issue 9).
 *
 * A client that misses a key asks, with `X-Cache-Fill: lease`, to be the one
 * that fills it: the first gets a token, the others wait on the server for
 * the fill instead of all going to the origin.  This table is one shard's
 * leases, for the keys that shard owns; only that shard calls it.  It is
 * plain memory on a clock the caller passes (nanoseconds, any origin), so
 * tests/unit/test_lease.c drives it on a fake clock.
 *
 * The waiters are the caller's objects, linked in through an embedded
 * struct lease_waiter (the shard embeds it in the waiting request's fwd); the
 * table never frees them and never calls back: every function returns what
 * the caller must answer, so the caller controls when and how.
 *
 *   one entry per leased key (hash table, 1024 buckets, chained)
 *     token (32 hex chars), expiry, waiters FIFO (oldest first)
 *   every entry on one list by expiry       (--lease-ttl is one constant,
 *   every waiter on one list by deadline     so both lists stay sorted by
 *                                            appending: O(1) everything)
 *
 * Life of a key's lease:
 *
 *   miss ──▶ no entry: GRANTED (new token)      entry: the request WAITs
 *   fill (a PUT stored) ──▶ entry gone, its waiters returned: answer the value
 *   end unfilled (revoked, given up, holder gone, --lease-ttl passed)
 *        ──▶ the oldest waiter is handed a new token (it fills next),
 *            or the entry goes when nobody waits
 *   a waiter's --lease-wait passes ──▶ returned by lease_tick: answer 404
 *
 * An entry exists exactly while its key is leased.  Limits: at most
 * `max_leases` entries and `max_waiters` waiters per key; a miss over either
 * is REFUSED (the caller answers 404 without token and does not wait).
 *
 * Tokens: 128 bits of SipHash-2-4 of a counter under a 128-bit key drawn from
 * getrandom() when the table is made, in hex.  Unpredictable to a client that
 * has seen other tokens (SipHash is a PRF), unique per table, and compared in
 * full; a token a client sends is bounded (LEASE_TOKEN_MAX) and compared as
 * bytes, so any other bytes simply do not match.
 */
#ifndef RINGCACHE_LEASE_H
#define RINGCACHE_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEASE_TOKEN_LEN 32u     /* hex characters of a token this table makes */
#define LEASE_TOKEN_MAX 64u     /* longest X-Cache-Lease accepted (visible ASCII) */
#define LEASE_MAX_LEASES 65536u /* leases outstanding per shard */
#define LEASE_MAX_WAITERS 1024u /* requests waiting per key */

/*
 * The counters of fill leases, one table for the shard's /stats and
 * /metrics (stats.h STATS_METRICS includes it) and for the pointers below.
 * X(name, type, help) as in STATS_METRICS.
 */
#define LEASE_STATS(X)                                                              \
	X(lease_granted, COUNTER,                                                   \
	  "Fill leases made: for a lease GET that missed, or for a waiter after a lease ended unfilled (with --redis each is tried in Redis first, and may lose to another instance's).") \
	X(lease_filled, COUNTER, "Leases ended by a write of their key (PUT with or without the token).") \
	X(lease_revoked, COUNTER,                                                   \
	  "Leases ended by a DELETE or an invalidation of their key (the holder's PUT then gets 409).") \
	X(lease_expired, COUNTER, "Leases that passed --lease-ttl unfilled.")      \
	X(lease_abandoned, COUNTER,                                                 \
	  "Leases given up: DELETE with the token, or the holder's connection closed.") \
	X(lease_handed_over, COUNTER,                                               \
	  "Leases that ended unfilled and went to the oldest waiter (counted in lease_granted too).") \
	X(lease_refused, COUNTER,                                                   \
	  "Lease GETs over a limit (leases per shard, waiters per key): 404 without token, no wait.") \
	X(lease_conflicts, COUNTER,                                                 \
	  "Writes or deletes whose X-Cache-Lease was not the key's lease: 409, nothing changed.") \
	X(lease_waiters_answered, COUNTER, "Waiters answered by a fill (X-Cache: HIT-FILL).") \
	X(lease_waiters_timed_out, COUNTER, "Waiters answered 404 after --lease-wait.") \
	X(lease_waiters_gone, COUNTER,                                              \
	  "Waiters taken out unanswered because their client's connection ended.") \
	X(leases, GAUGE, "Leases outstanding on this shard.")                     \
	X(lease_waiters, GAUGE, "Requests waiting for a fill on this shard.")

/* Where the table counts (the owning shard's stats); a NULL field is not
 * counted.  Owner-only updates: relaxed load + store, as stats.h does. */
struct lease_counters {
#define LEASE_COUNTER_PTR(name, type, help) _Atomic uint64_t *name;
	LEASE_STATS(LEASE_COUNTER_PTR)
#undef LEASE_COUNTER_PTR
};

struct lease_limits {
	uint64_t ttl_ns;        /* --lease-ttl: a lease unfilled this long ends */
	uint64_t wait_ns;       /* --lease-wait: a waiter waits at most this long */
	uint32_t max_leases;    /* per table; 0: LEASE_MAX_LEASES */
	uint32_t max_waiters;   /* per key; 0: LEASE_MAX_WAITERS */
};

struct lease_entry;

/* A waiting request, embedded in the caller's object; the table's fields. */
struct lease_waiter {
	struct lease_waiter *next, *prev;       /* its key's FIFO */
	struct lease_entry *entry;              /* its key's entry; NULL once out */
	struct lease_waiter *tprev, *tnext;     /* the table's list by deadline */
	uint64_t deadline;
};

struct lease_tab;

/*
 * A table with these limits, counting into `cnt` (copied; may be NULL).
 * `seed`: the 16-byte token key, NULL to draw it from getrandom() (tests
 * pass one).  0, -ENOMEM, or getrandom()'s -errno.
 */
int lease_tab_create(struct lease_tab **out, const struct lease_limits *lim,
		     const struct lease_counters *cnt, const uint8_t *seed);

/* Frees the entries; the waiters are the caller's.  Accepts NULL. */
void lease_tab_destroy(struct lease_tab *t);

enum lease_verdict {
	LEASE_GRANTED,  /* the caller fills the key: answer 404 with the token */
	LEASE_WAIT,     /* w waits: answered later through lease_filled/end/tick */
	LEASE_REFUSED,  /* over a limit, or (lease_try) leased already: 404, no token */
};

/*
 * A lease GET missed the key: take its lease (GRANTED, token written,
 * NUL-terminated, LEASE_TOKEN_LEN chars) or, when it is leased, queue w
 * (WAIT, deadline now + wait_ns).  REFUSED over a limit.  A w of NULL never
 * waits: REFUSED instead of WAIT (lease_try below).
 */
enum lease_verdict lease_miss(struct lease_tab *t, const void *key, uint32_t key_len,
			      uint64_t hash, uint64_t now, struct lease_waiter *w,
			      char token[LEASE_TOKEN_LEN + 1]);

/* Take the key's lease if nobody holds it, never wait: GRANTED or REFUSED.
 * (For a caller that answers anyway, e.g. with a stale value.) */
static inline enum lease_verdict lease_try(struct lease_tab *t, const void *key,
					   uint32_t key_len, uint64_t hash, uint64_t now,
					   char token[LEASE_TOKEN_LEN + 1])
{
	return lease_miss(t, key, key_len, hash, now, NULL, token);
}

/* Whether tok[0..len) is the key's outstanding lease. */
bool lease_holds(const struct lease_tab *t, const void *key, uint32_t key_len, uint64_t hash,
		 const char *tok, size_t len);

/*
 * With a fleet (--redis): whether the key's lease, tok, is also the fleet's
 * (taken in Redis) rather than this instance's alone.  lease_set_fleet()
 * marks it (0, or -ENOENT when tok is not the lease); a new token (hand-over)
 * starts unmarked.
 */
int lease_set_fleet(struct lease_tab *t, const void *key, uint32_t key_len, uint64_t hash,
		    const char *tok);
bool lease_is_fleet(const struct lease_tab *t, const void *key, uint32_t key_len,
		    uint64_t hash, const char *tok, size_t len);

/*
 * The key was written: its lease (if any) ends as filled, and its waiters,
 * oldest first (chained through next), are returned for the caller to answer
 * with the value.  NULL when the key had no lease.
 */
struct lease_waiter *lease_filled(struct lease_tab *t, const void *key, uint32_t key_len,
				  uint64_t hash);

enum lease_end {
	LEASE_END_REVOKED,      /* DELETE of the key, an invalidation */
	LEASE_END_ABANDONED,    /* its holder gave up (DELETE with it) or is gone */
};

/*
 * The key's lease ends unfilled.  With tok (len > 0), only if tok is that
 * lease (else -ENOENT and nothing changes); without, whatever it is.  If a
 * waiter is waiting, the oldest is handed a new lease: *handed = it, its
 * token written to `token`; else *handed = NULL and the entry goes.
 * 0, or -ENOENT when the key had no (such) lease.
 */
int lease_end(struct lease_tab *t, const void *key, uint32_t key_len, uint64_t hash,
	      const char *tok, size_t len, enum lease_end why, uint64_t now,
	      struct lease_waiter **handed, char token[LEASE_TOKEN_LEN + 1]);

/* Whether w waits in a table: queued by lease_miss() (WAIT) and not
 * returned by any call since (w zeroed before its first lease_miss()). */
static inline bool lease_waits(const struct lease_waiter *w)
{
	return w->entry != NULL;
}

/*
 * The key's waiters, oldest first (chained through next), or NULL: for a
 * caller that looks for ones to take out with lease_leave() (reading next
 * before it does).
 */
struct lease_waiter *lease_waiters_of(const struct lease_tab *t, const void *key,
				      uint32_t key_len, uint64_t hash);

/*
 * w, waiting (lease_waits()), leaves its key's FIFO without an answer: the
 * request is gone (its client's connection ended).  O(1); the key's lease
 * stays as it is.  Counted in lease_waiters_gone.
 */
void lease_leave(struct lease_tab *t, struct lease_waiter *w);

/* What time did (lease_tick). */
enum lease_event_kind {
	LEASE_EV_TIMED_OUT,     /* w's wait passed: answer 404 without token */
	LEASE_EV_HANDED,        /* a lease expired; w was handed a new one, `token` */
};

struct lease_event {
	uint8_t kind;           /* enum lease_event_kind */
	bool prev_fleet;        /* HANDED: the expired lease was the fleet's */
	struct lease_waiter *w;
	char token[LEASE_TOKEN_LEN + 1];
	char prev[LEASE_TOKEN_LEN + 1];         /* HANDED: the expired lease */
	const void *key;        /* HANDED: the key (valid until the table changes) */
	uint32_t key_len;
	uint64_t hash;
};

/*
 * One thing time did by `now`: 1 and *ev, or 0 when nothing is due.  Call
 * until 0.  Waiters time out before leases expire, so a `now` of UINT64_MAX
 * (stop) returns every waiter as timed out and clears the table.  A lease
 * that expires with nobody waiting just goes (counted, no event).
 */
int lease_tick(struct lease_tab *t, uint64_t now, struct lease_event *ev);

/*
 * Every lease outstanding is due now: the next lease_tick() ends each as
 * expired (handed to its oldest waiter, if any).  For when revokes may have
 * been lost (the invalidation feed broke): a holder's fill is then refused.
 */
void lease_expire_all(struct lease_tab *t);

/* Leases outstanding, and waiters, now. */
/* The earliest time lease_tick() has something to do (a waiter's deadline, a
 * lease's expiry), or UINT64_MAX: how long a loop may sleep. */
uint64_t lease_next_due(const struct lease_tab *t);

uint32_t lease_count(const struct lease_tab *t);
uint32_t lease_waiting(const struct lease_tab *t);

/* Whether p[0..len) can be a token: 1..LEASE_TOKEN_MAX visible ASCII chars. */
bool lease_token_valid(const char *p, size_t len);

#endif
