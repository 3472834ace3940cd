/*
 * l2read.h - a shard's own read connection to Redis, driven by the shard's
 * io_uring (l2read.c).  The protocol is the coherence module's (struct
 * coh_read, coherence.h); this is the socket: connect, multishot recv into
 * the shard's provided buffers, one send in flight, a timeout SQE for the
 * nearest read deadline, and closing without leaving an operation behind.
 *
 * Only with --redis; one per shard, touched only by its shard.  Reads are
 * started by l2.c (coh_read_get on l2read_conn()); completed reads go back
 * to l2.c through l2_read_done().
 */
#ifndef RINGCACHE_L2READ_H
#define RINGCACHE_L2READ_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct coh_read;
struct l2read;
struct shard;

/* NULL without memory (the shard then reads through the coherence thread). */
struct l2read *l2read_create(struct shard *sh);
/* Closes the socket and frees it with every message it holds.  Main thread,
 * after the shard's thread ended.  Accepts NULL. */
void l2read_destroy(struct l2read *rd);

struct coh_read *l2read_conn(struct l2read *rd);

/* The loop's part, once per iteration: connect when due, deadlines, and
 * at stop, closing (l2_drain); then the send of what was queued (l2_flush). */
void l2read_tick(struct l2read *rd);
void l2read_flush(struct l2read *rd);

/*
 * Whether the shard should keep polling rather than park: a read was sent
 * less than L2READ_SPIN_NS ago and is still in flight.  Waking a parked
 * shard costs about as much as the Redis round trip itself on the
 * development VM, so a shard waiting for a reply spins for it, as it does
 * for --spin-us after any work; never longer, so a slow or hung Redis costs
 * no more than that per read, and an idle shard nothing.
 */
#define L2READ_SPIN_NS 250000ull
bool l2read_waiting(const struct l2read *rd, uint64_t now);

/* A completion of one of its SQEs (shard.h: OP_L2; p is the user_data's
 * pointer). */
void l2read_on_cqe(void *p, const struct io_uring_cqe *cqe);

#endif
