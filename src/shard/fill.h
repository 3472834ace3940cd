/*
 * fill.h - fill leases in the shard: where the lease table (lease.h) meets
 * requests, connections and the loop (docs/cache-aside.md).
 *
 * The owner shard of a key keeps its lease (sh->lease) and its waiters.  A
 * waiter is the request's struct fwd, parked in the table through f->lw: its
 * slot WAITS in its connection's pipeline as an L2 miss does, so the shard
 * goes on serving and requests pipelined behind it keep their order.  It is
 * answered by fwd_answer(), the one way a fwd's answer goes home:
 *
 *   GET + X-Cache-Fill: lease, missed (L1, and L2 when asked) -> fill_missed
 *       no lease: GRANTED -> 404 MISS + X-Cache-Lease: <token>
 *       leased:   WAIT    -> parked on the owner
 *       over a limit: 404 MISS, no token, no wait
 *   PUT stored (with the token or without)     -> fill_after: every waiter
 *       gets the value, X-Cache: HIT-FILL; the lease ends
 *   PUT/DELETE with a token that is not the lease -> fill_refuses: 409
 *   DELETE, an invalidation -> fill_after/fill_invalidated: lease revoked,
 *       the oldest waiter handed a new one (404 + token)
 *   time (fill_tick, every loop iteration): waiters past --lease-wait get
 *       404 without token; leases past --lease-ttl go to the oldest waiter
 *
 * A waiter whose client's connection ends leaves at once (fill_orphaned):
 * parked on its own shard, it is taken out and freed there; parked on
 * another, that shard is sent a "sweep" fwd for its key, behind the waiter
 * on the same ring, and sends home every waiter of the key it finds
 * cancelled.  Otherwise its copy of the request would stay counted in its
 * origin's conn_memory for up to --lease-wait (10 minutes at most): a
 * client resetting connections full of lease GETs could hold a shard's
 * --conn-memory share, and so pause every connection of that shard.
 *
 * A connection remembers the leases its client was handed (at most
 * FILL_NOTES_MAX, oldest forgotten first: those end by --lease-ttl), so that
 * when it ends its leases end at once: fill_conn_gone() sends each to its
 * owner as an "abandon" fwd that carries no answer and is freed where it
 * comes home.
 */
#ifndef RINGCACHE_SHARD_FILL_H
#define RINGCACHE_SHARD_FILL_H

#include <stdbool.h>

#include "ringcache/cache.h"
#include "ringcache/lease.h"
#include "ringcache/reply.h"

struct conn;
struct fwd;
struct shard;

#define FILL_NOTES_MAX 16u      /* leases a connection remembers */

/* Per-shard table (sh->lease), with --lease-ttl and --lease-wait. */
int fill_setup(struct shard *sh);
void fill_teardown(struct shard *sh);

/* Whether a request that L1 answered `oc` continues at fill_missed(). */
static inline bool fill_wants(const struct cache_req *cr, enum cache_outcome oc)
{
	return cr->fill_lease && oc == CACHE_MISS;
}

/*
 * Whether a stale answer (X-Cache: STALE) to a lease GET should try to carry
 * a lease: the first such GET gets one, to refresh the value, without
 * waiting (fill_try); the others get the stale value alone (issue 9).
 */
static inline bool fill_stale_wants(const struct cache_req *cr, enum cache_outcome oc)
{
	return cr->fill_lease && oc == CACHE_STALE;
}

/*
 * Owner, before executing a PUT or DELETE that carries X-Cache-Lease: true,
 * and a 409 in *r, when that token is not the key's lease (nothing must
 * change then).  A PUT whose lease is this instance's alone (taken while
 * Redis was unreachable, or without --redis) loses its token here: it
 * writes through as a plain PUT, not as a fill that Redis would refuse (a
 * forwarded one tells its origin, f->lease_dropped, which must still forget
 * the lease it filled: fill_answered()).
 */
bool fill_refuses(struct shard *sh, struct cache_req *cr, struct reply *r);

/*
 * Owner, after executing cr with outcome oc (its reply in *r): a stored
 * write fills the key's lease and answers its waiters; a DELETE ends it
 * (given up with the token: the reply is 204) and hands it on.
 */
void fill_after(struct shard *sh, const struct cache_req *cr, enum cache_outcome oc,
		struct reply *r);

/* Owner: f, a lease GET whose miss is final (f->r), takes the lease, waits,
 * or is answered.  Always takes f. */
void fill_missed(struct shard *sh, struct fwd *f);

/*
 * Owner, with --redis: what Redis said to f's COH_LEASE_GET (l2.c): status
 * COH_OK (the value, in L1 now: f and the key's waiters are answered from
 * it), COH_MISS with COH_F_LEASED (f gets the token) or COH_F_LEASE_HELD
 * (f waits here for the fill's invalidation), anything else (Redis
 * unreachable: the lease is this instance's alone).  Takes f.
 */
void fill_fleet_done(struct shard *sh, struct fwd *f, uint8_t status, uint16_t flags);

/*
 * Owner: takes the key's lease without waiting, if nobody holds it: true,
 * with the token in `token` and in *r (X-Cache-Lease; r->lease points at
 * `token`, which must outlive the rendering).  For an answer that does not
 * wait anyway (a stale value served while it is refreshed).  The lease is
 * this instance's alone, also with --redis (its fill writes through as a
 * plain PUT).  The caller makes the connection remember it: fill_note() on
 * the connection's shard, or for a fwd, f->lease_granted and f->lease_tok
 * (fill_home() then notes it when f comes home).
 */
bool fill_try(struct shard *sh, const struct cache_req *cr, char token[LEASE_TOKEN_LEN + 1],
	      struct reply *r);

/*
 * Owner: fill_try() for f, a forwarded lease GET answered stale (f->r):
 * f->lease_granted when it took the lease.  f made again for room
 * (fwd_resend) took its lease the first time, noted at home already: its
 * answer carries that token again.
 */
void fill_try_fwd(struct shard *sh, struct fwd *f);

/* Connection's shard: c's client was handed the lease `token` of cr's key. */
void fill_note(struct conn *c, const struct cache_req *cr, const char *token);

/* Owner: another instance (or a PUBLISH) invalidated the key. */
void fill_invalidated(struct shard *sh, const void *key, uint32_t key_len, uint64_t hash);

/* The invalidation feed broke (COH_FLUSH): any lease may have missed its
 * revoke, so every one ends at the next fill_tick() (a holder's fill: 409). */
void fill_flushed(struct shard *sh);

/* Owner: an abandon fwd arrived (fill_conn_gone on its origin). */
void fill_exec_abandon(struct shard *sh, struct fwd *f);

/*
 * Origin: f, a lease GET whose connection ended while it waited for its
 * answer (fwd_orphan(), f->cancelled just set): if it waits for a fill
 * here it leaves and is freed now; if it went to another shard, that shard
 * is told to look (fill_exec_sweep).  Not at stop: every waiter is answered
 * then (fill_tick), and after it no ring may be used.  f may be freed.
 */
void fill_orphaned(struct shard *sh, struct fwd *f);

/* Owner: a sweep fwd arrived (fill_orphaned on its origin): the waiters of
 * its key whose connections ended leave, and go home to be freed. */
void fill_exec_sweep(struct shard *sh, struct fwd *f);

/* The loop, every iteration: what --lease-wait and --lease-ttl did; at stop
 * every waiter is answered. */
void fill_tick(struct shard *sh);

/* Origin: f came home with a lease handed to its client: remembered on its
 * connection, or, the connection gone, given up. */
void fill_home(struct shard *sh, struct fwd *f);

/* Origin: the lease noted for a key may end by this request (its token). */
void fill_note_drop(struct conn *c, const struct cache_req *cr);

/*
 * Origin, once cr (a request of c's client) is executed with outcome oc and
 * answer status: forgets the lease cr's token ended (a stored PUT, a
 * DELETE, a 409).  A PUT refused for its own sake (400, 413, 507) leaves
 * the lease with its holder, who may try again: still ended if c closes.
 */
void fill_answered(struct conn *c, const struct cache_req *cr, enum cache_outcome oc,
		   int status);

/* Origin: c is ending: its leases end now.  Then fill_conn_free(). */
void fill_conn_gone(struct conn *c);
/* Frees c's notes (also at stop, with no thread running: sends nothing). */
void fill_conn_free(struct conn *c);

#endif
