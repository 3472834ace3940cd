/*
 * route.h - what a request asks for, and where it is answered.
 *
 * One static table (route.c) names every path, the methods it allows,
 * whether it needs an API key, and its handler; the normal path and early
 * refusal both read it.  A /cache/ request is executed by the shard that
 * owns its key: here (route_exec), on another shard (fwd.h), and with
 * --redis continued at the coherence thread (l2.h).
 */
#ifndef RINGCACHE_ROUTE_H
#define RINGCACHE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/cache.h"
#include "ringcache/http.h"

struct conn;
struct fwd;
struct pipeline_req;
struct shard;

/* A request whose head and body arrived: answer it or send it on. */
void route_request(struct conn *c, const struct http_request *req, const uint8_t *body,
		   size_t body_len);

/*
 * A request whose body has not all arrived: when its answer cannot depend on
 * the body (404 for the path, 405 for the method, 401 without a key), answer
 * now and close, rather than wait for up to --max-value bytes or send
 * "100 Continue".  True when the request was refused.
 */
bool route_refuse_early(struct conn *c, const struct http_request *req);

/*
 * The owner shard's side of a forwarded request: executes f against this
 * shard's store, then sends the answer home, or on to Redis first.
 */
void route_exec_forwarded(struct shard *sh, struct fwd *f);

/*
 * A part of DELETE /tags/{tag} came home to the shard of its parent (fwd.c's
 * arrive_home): adds its count; once every part is home, answers
 * {"removed": N}.  f NULL: p has no part out (answer it now).
 */
void route_purge_part_home(struct fwd *f, struct fwd *p);

/* The Redis half of purge p is done (l2_purge): l2 how Redis took it,
 * `count` keys deleted there. */
void route_purge_l2_done(struct fwd *p, enum reply_l2 l2, uint64_t count);

/*
 * A /cache/ request (or a RESP command that is one: keys.h) for a key this
 * shard owns: executed now, and with --redis continued at Redis when L1's
 * answer calls for it.  The answer goes to c's pipeline.
 */
void route_exec_local(struct conn *c, const struct cache_req *cr, const struct pipeline_req *q);

/* The same for a key shard `owner` holds: sent there in a fwd that waits in
 * c's pipeline with CONN_ROOM of room.  The fwd, or NULL (c aborted). */
struct fwd *route_forward(struct conn *c, const struct cache_req *cr,
			  const struct pipeline_req *q, unsigned owner);

/* Counts what this shard's store did (hits, misses, sets, deletes), and
 * after a write or delete, the store's new counts (route_count_store). */
void route_count_outcome(struct shard *sh, enum cache_outcome oc);

/* The store's items, value bytes and evictions into /stats, now. */
void route_count_store(struct shard *sh);

#endif
