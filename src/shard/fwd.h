/*
 * fwd.h - a request that travels: to the shard that owns its key, or to the
 * coherence thread, and back with its answer.
 *
 *   origin: fwd_create (copies key, body, headers into data[]),
 *           its slot waits in the connection's pipeline
 *        -> ring[origin*n+owner] -> owner: route_exec_forwarded, the answer
 *           rendered into the slot (pipeline_render), maybe after Redis (l2.h)
 *        -> ring[owner*n+origin] -> origin: conn_complete, then freed by the
 *           pipeline once its bytes are in `out`
 *
 * Ownership: a fwd belongs to its origin shard from fwd_create() to
 * fwd_destroy(), which only the origin calls; every live fwd is on its
 * origin's list, so nothing leaks when a stop cuts its journey short.  The
 * pipeline frees it after its answer is released.  If the connection ends
 * first, the slot is orphaned (f->conn = NULL) and the fwd is freed where it
 * comes back to the origin; a lease GET waiting for a fill is sent back at
 * once, by its owner when a sweep fwd tells it (fill_orphaned).  The owner reads what the origin wrote before
 * sending (the ring's release/acquire orders it) and writes only the slot's
 * answer, `r` and `outcome`; it never reads `conn`, which the origin may clear
 * meanwhile.
 *
 * A RESP command (keys.h) travels the same way, with what GET, PUT and
 * DELETE cannot say in `kv`; one whose answer is gathered from several
 * shards (MSET, DEL of many keys) is a parent fwd that waits in the pipeline
 * and never leaves its shard, and one part fwd per key, which carries no
 * answer of its own: it comes home to its parent (`parent`).
 */
#ifndef RINGCACHE_FWD_H
#define RINGCACHE_FWD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"
#include "ringcache/cache.h"
#include "ringcache/lease.h"
#include "ringcache/reply.h"

struct conn;
struct fwd_state;
struct shard;

struct fwd {
	struct slot slot;               /* its answer in the connection's pipeline */
	struct fwd *qnext;              /* a backlog FIFO, or a Redis read's waiters */
	struct fwd *prev, *next;        /* the origin's list of live fwds */
	struct fwd_state *home;         /* the origin's state, which holds that list */
	struct conn *conn;              /* origin's; NULL once the connection has ended */
	_Atomic bool cancelled;         /* origin: the connection has ended (relaxed) */
	uint16_t origin;
	uint16_t owner;                 /* the shard that executes it */
	bool reply;                     /* travelling back to the origin */
	bool remote;                    /* executed by another shard than its origin */
	bool bounced;                   /* owner: its answer did not fit `room`, not rendered */
	bool needs_room;                /* origin: came back bounced, waits to be sent again */
	bool resent;                    /* sent again after a bounce */
	bool via_l2;                    /* its L1 miss was answered by promoting from Redis */
	bool via_fill;                  /* it waited for a fill lease and was answered by the fill */
	uint8_t outcome;                /* enum cache_outcome, set by the executor */
	uint8_t stage;                  /* keys.c: a RESP command's steps with Redis */
	bool wide_write;                /* a gathered write of many keys (keys.c) */
	bool issuing;                   /* gather parent: parts are still being sent */
	uint32_t pending;               /* gather parent: parts out */
	int64_t sum;                    /* gather parent: what the parts added up to */
	struct fwd *parent;             /* a part: the gathered command it belongs to */
	size_t room;                    /* origin: bytes its connection holds for the answer */
	size_t needed;                  /* owner, when bounced: the answer's size */
	size_t size;                    /* bytes allocated for it (connection memory) */
	struct answer_to to;            /* how the answer is rendered (its protocol) */
	struct reply r;                 /* the answer while Redis completes it (l2.c) */
	struct lease_waiter lw;         /* owner: waiting for a fill (fill.h) */
	bool lease_granted;             /* its answer carries lease_tok: noted at home */
	bool lease_abandon;             /* not a request: ends lease_tok's lease (fill.h) */
	bool lease_sweep;               /* not a request: its key's waiters whose
					 * connections ended leave (fill_orphaned) */
	bool lease_get;                 /* origin: made from a lease GET (req.fill_lease,
					 * which the owner may clear) */
	bool lease_dropped;             /* owner: fill_refuses() dropped req's token (the
					 * lease was this instance's alone); its origin
					 * gives it back to fill_answered() */
	char lease_tok[LEASE_TOKEN_LEN + 1];
	uint64_t l2_gen;                /* l2.c: its lease read's start (l2_state.gen) */
	struct cache_req req;
	struct cache_kv kv;             /* RESP: what the command does beyond req.op */
	uint8_t data[];
};

/* Per-shard state (sh->fwd). */
int fwd_setup(struct shard *sh);
/* Frees every fwd this shard still owns (stop).  Call after conn_destroy of
 * every connection, with no thread running. */
void fwd_teardown(struct shard *sh);

/*
 * A copy of r (with everything it points at) for connection c of shard sh,
 * on sh's list of live fwds.  NULL without memory.
 */
struct fwd *fwd_create(struct shard *sh, struct conn *c, const struct cache_req *r,
		       const struct answer_to *to);
/* Origin shard only.  Accepts NULL. */
void fwd_destroy(struct fwd *f);

/* The pipeline's hooks (pipeline_init): free a released slot; a connection
 * gave up on a waiting one (the owner skips its work if it has not begun). */
void fwd_release(struct slot *s);
void fwd_orphan(struct slot *s);

static inline struct fwd *fwd_of_slot(struct slot *s)
{
	return (struct fwd *)(void *)((char *)s - offsetof(struct fwd, slot));
}

/*
 * Bounce: an answer larger than the room its connection reserved
 * (f->room) is not rendered; f goes home with f->bounced and f->needed
 * (written by the owner before it pushes f home, read by the origin only
 * after it popped it: then f->needs_room), and its connection sends it again
 * (fwd_resend) with room for it once that room is free (conn.c).  A read's answer cannot run into memory its
 * connection did not reserve: the per-connection bound B of conn.h holds.
 */
void fwd_resend(struct shard *sh, struct fwd *f, size_t room);

/* Whether a request after f on its connection, already sent on, writes f's
 * key: then f cannot be made again as it would have been answered. */
bool fwd_conflicts(const struct fwd *f);

/* Sends f to shard `to` (its owner, or back to its origin). */
void fwd_send(struct shard *sh, unsigned to, struct fwd *f);

/*
 * f's answer is in f->r: renders it into f's slot (or bounces it, below),
 * then sends f home: back to its origin shard, or to its connection when
 * that is on this shard.
 */
void fwd_answer(struct shard *sh, struct fwd *f);

/* Sends f home as it is (answered, bounced, or skipped: cancelled). */
void fwd_home(struct shard *sh, struct fwd *f);

/*
 * A connection accepted on a shared socket, passed to shard `to` (shard.c
 * spreads them): `token` (odd, so never a fwd's address) travels the same
 * ring as fwds and is handed to shard_adopt() there.  False when the ring
 * is full: the caller keeps the connection.
 */
bool fwd_send_conn(struct shard *sh, unsigned to, uintptr_t token);

/* The loop's part: publish what was pushed (true while a backlog remains),
 * handle what peers published (true if anything), the parking checks. */
bool fwd_flush(struct shard *sh);
bool fwd_drain(struct shard *sh);
bool fwd_pending(struct shard *sh);
bool fwd_backlogged(const struct shard *sh);

/*
 * The owner's part of DELETE /tags/{tag} (issue 9): f (req.key the tag) is
 * queued and purged a slice per loop iteration (fwd_drain), at most
 * FWD_PURGE_SLICE_NS at a time, so the shard keeps serving meanwhile; then
 * it goes home with the keys it removed in f->sum.
 */
void fwd_purge_begin(struct shard *sh, struct fwd *f);
#define FWD_PURGE_SLICE_NS 100000u      /* 100 us of purge per loop iteration */

/* Fwds this shard created that are not freed yet (stop waits for 0). */
uint64_t fwd_alive(const struct shard *sh);

#endif
