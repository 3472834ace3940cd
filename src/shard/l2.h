/*
 * l2.h - a shard's side of the Redis L2 (with --redis): what the owner shard
 * of a key does after its L1 store answered, and what it does with the
 * coherence thread's messages.
 *
 * Only the owner shard of a key talks to Redis about it: over that shard's
 * pair of rings to the coherence thread, or for reads on its own connection
 * (coherence.h).  The request waiting for Redis is
 * a struct fwd (fwd.h) holding the reply L1 gave; when Redis answers, l2.c
 * completes that reply (X-L2, X-Cache: HIT-L2, a 204 for a key only Redis
 * had) and hands the fwd to fwd_answer().
 *
 *   PUT     L1 set, then COH_SET    -> answered after Redis: X-L2: ok|skipped|...
 *   DELETE  L1 delete, then COH_DEL -> answered after Redis: X-L2: ...
 *   GET     L1 miss, then GET+PTTL on the shard's own read connection (l2read.h),
 *           or COH_GET              -> value: stored in L1 (unless it may be stale
 *                                      or L1 got a newer value meanwhile), served
 *                                      with X-Cache: HIT-L2; none: 404 X-Cache: MISS
 *   INVALIDATE / FLUSH from coherence: drop the key / everything older
 *
 * No silent path: every write reaches Redis, is queued there for replay, or
 * is answered with an X-L2 saying why not.  L1 hits never reach this file.
 */
#ifndef RINGCACHE_L2_H
#define RINGCACHE_L2_H

#include <stdbool.h>
#include <stdint.h>

#include "ringcache/cache.h"

struct fwd;
struct shard;

/* Per-shard state (sh->l2), only with --redis. */
int l2_setup(struct shard *sh);
void l2_teardown(struct shard *sh);

/* Whether a request that L1 answered with `oc` continues at Redis. */
bool l2_continues(const struct shard *sh, enum cache_op op, enum cache_outcome oc);

/*
 * Continues f (its L1 reply in f->r, its outcome in f->outcome) at Redis.
 * Always takes f: it is answered later, or at once with an X-L2 saying why
 * Redis was not asked.
 */
void l2_begin(struct shard *sh, struct fwd *f);

/*
 * Fill leases across the fleet (fill.h): f, a lease GET, reads its key and
 * takes the lease f->lease_tok in Redis in one step (COH_LEASE_GET); the
 * answer goes to fill_fleet_done().  l2_lease_release() drops the lease
 * `tok` in Redis if it is still that (and publishes an invalidation, so the
 * other instances' waiters try again).
 */
void l2_lease_get(struct shard *sh, struct fwd *f);
void l2_lease_release(struct shard *sh, const void *key, uint32_t key_len, uint64_t hash,
		      const char *tok);

/* GET /cluster: asks the coherence thread for the live instances. */
void l2_cluster(struct shard *sh, struct fwd *f);

/* The Redis half of DELETE /tags/{tag} (p: the purge's parent, req.key the
 * tag): the tagged keys deleted from Redis in bounded batches and one
 * message that purges the tag from every instance's L1 (docs/coherence.md);
 * answered through route_purge_l2_done(). */
void l2_purge(struct shard *sh, struct fwd *p);

/* A read on the shard's own connection completed (l2read.c): answers its
 * waiters as a COH_GET reply from the coherence thread would, and destroys m. */
struct coh_msg;
void l2_read_done(struct shard *sh, struct coh_msg *m);

/* The loop's part: handle what the coherence thread sent (true if anything),
 * publish what this shard submitted, and the parking checks. */
bool l2_drain(struct shard *sh);
void l2_flush(struct shard *sh);
bool l2_pending(struct shard *sh);
/* Whether a read on the shard's own connection was just sent and is still
 * awaited: the loop polls for its reply instead of parking (l2read.h). */
bool l2_waiting(const struct shard *sh);
bool l2_backlogged(const struct shard *sh);

#endif
