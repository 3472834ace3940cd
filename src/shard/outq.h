/*
 * outq.h - bytes to send: rendered bytes with values left where they are.
 *
 * An answer's head (and a small value) is rendered into `bytes`; a large
 * value is not copied: a reference to its bytes in the store that holds it
 * goes in the queue instead, pinned there (store_pin) until the kernel no
 * longer reads it.  The queue is the order the bytes go out in:
 *
 *   bytes:  [head 1 ...........][head 2 .....][text answer 3 ....]
 *   refs:                      ^ value 1      ^ value 2
 *           (a ref at `at` goes after bytes[0..at) and before bytes[at..))
 *
 * outq_iov() turns what is left to send into an iovec array for one
 * sendmsg; a queue without refs is sent from `bytes` as one buffer.
 * Only the connection's shard touches a queue; the pins it releases may be
 * another shard's (store_unpin is atomic).
 *
 * Zero-copy sends (--send-zc-min, IORING_OP_SENDMSG_ZC): the kernel puts
 * our pages in the socket by reference and reads them until it posts a
 * notification (IORING_CQE_F_NOTIF), which comes after the send's own
 * completion (flagged IORING_CQE_F_MORE) - for TCP on a NIC once the peer
 * has acknowledged the bytes.  So a queue sent zero-copy gets a hold
 * (struct outq_zc, one per queue, shared by its partial sends): both
 * completions of its sends go to it (shard.h, OP_SEND_ZC).  When the queue
 * is emptied (outq_clear) before the kernel is done, the hold takes the
 * queue's buffer and its pins with it and waits on the `held` list of the
 * queue it came from, which gets a fresh buffer:
 *
 *   sending --zc--> hold (sends in flight)           the queue is being sent
 *   sending.held -> hold -> hold (retired)           buffers and pins the
 *                                                    kernel still reads
 *
 * A retired hold frees its buffer and lets go of its pins at its last
 * notification.  The connection is not freed while its queue is busy
 * (outq_zc_busy); what is held is bounded by the socket's send buffer: a
 * send completes only once its bytes are in it.
 */
#ifndef RINGCACHE_OUTQ_H
#define RINGCACHE_OUTQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <liburing.h>

#include "ringcache/buf.h"

struct stats_shard;
struct outq_zc;

/* Values from this size up are sent from the store, not copied. */
#define OUTQ_REF_MIN (16u << 10)

struct outq_ref {
	size_t at;                      /* bytes of `bytes` that go before it */
	const uint8_t *p;
	size_t len;
	_Atomic uint32_t *pin;          /* store_unpin() once the kernel is done */
};

struct outq {
	struct buf bytes;
	struct outq_ref *refs;
	uint32_t nrefs, cap;
	size_t ref_bytes;               /* sum of the refs' lengths */
	uint32_t released;              /* refs[0..released) sent and unpinned */
	size_t released_bytes;          /* their lengths */
	struct outq_zc *zc;             /* this queue's zero-copy sends; NULL: none */
	/* Stay in place through outq_swap(): they belong to the connection. */
	struct outq_zc *held;           /* emptied queues' memory the kernel still reads */
	size_t held_bytes;              /* the buffers those hold */
	uint64_t acked, acked_ns;       /* outq_stalled(): the peer's progress, and when */
	struct stats_shard *stats;      /* send_pins, sends_zc...; NULL: not counted */
	struct store *store;            /* the shard's own: store_unpin_own(); NULL: none */
};

/* Everything to send: bytes and referenced values. */
static inline size_t outq_len(const struct outq *q)
{
	return q->bytes.len + q->ref_bytes;
}

/* Appends n bytes (copied).  0 or -ENOMEM. */
static inline int outq_append(struct outq *q, const void *p, size_t n)
{
	return buf_append(&q->bytes, p, n) ? -12 : 0;
}

/* Appends a reference to len bytes at p, held by `pin` (taken by the
 * caller; the queue releases it).  0 or -ENOMEM (the pin is then released). */
int outq_add_ref(struct outq *q, const uint8_t *p, size_t len, _Atomic uint32_t *pin);


/*
 * Fills iov[0..max) with what follows the first `off` bytes; returns the
 * count.  What does not fit is left for the next call.
 */
unsigned outq_iov(const struct outq *q, size_t off, struct iovec *iov, unsigned max);

/* The first `sent` bytes have been sent: the values among them are let go
 * now (not when the whole queue has gone), unless the queue was sent
 * zero-copy (its hold lets them go). */
void outq_release_sent(struct outq *q, size_t sent);

/* Empties the queue, releasing every pin the kernel no longer reads (the
 * others go with the queue's hold); keeps the buffer's memory unless the
 * hold took it. */
void outq_clear(struct outq *q);

/* Empties it and frees its memory, held buffers too: only once the kernel
 * is done (outq_zc_busy() false), or at exit. */
void outq_deinit(struct outq *q);

/* Swaps two queues (the filling one and the one being sent); `held`,
 * `acked`, `stats` and `store` stay where they are. */
static inline void outq_swap(struct outq *a, struct outq *b)
{
	struct outq t = *a;

	a->bytes = b->bytes, b->bytes = t.bytes;
	a->refs = b->refs, b->refs = t.refs;
	a->nrefs = b->nrefs, b->nrefs = t.nrefs;
	a->cap = b->cap, b->cap = t.cap;
	a->ref_bytes = b->ref_bytes, b->ref_bytes = t.ref_bytes;
	a->released = b->released, b->released = t.released;
	a->released_bytes = b->released_bytes, b->released_bytes = t.released_bytes;
	a->zc = b->zc, b->zc = t.zc;
}

/*
 * Zero-copy sends.  Once per shard, on its ring, before any send: `min` is
 * --send-zc-min (0: off).  Probes the kernel for IORING_OP_SENDMSG_ZC;
 * without it sends copy (said once on stderr).  0, or -EOPNOTSUPP.
 */
int outq_zc_setup(struct io_uring *ring, size_t min);

/*
 * Prepares `sqe` with the sendmsg of `msg` (iovecs from outq_iov) on fd:
 * zero-copy when the socket can (`zc_ok`: TCP), the kernel has not refused
 * it, and msg carries at least --send-zc-min bytes.  Returns the hold its
 * completions go to (user_data: shard.h OP_SEND_ZC), or NULL for a copying
 * sendmsg (its one completion is the caller's).  `owner` is what
 * outq_zc_complete() returns for it.
 */
struct outq_zc *outq_prep_sendmsg(struct outq *q, void *owner, struct io_uring_sqe *sqe, int fd,
				  struct msghdr *msg, bool zc_ok);

/*
 * A completion of a zero-copy send; returns the hold's owner.  The send's
 * own completion sets *res to what the send did (bytes or -errno): a send
 * the kernel refused (-EINVAL, -EOPNOTSUPP) reads as 0 bytes sent, to be
 * sent again copying.  A notification (IORING_CQE_F_NOTIF) sets *res to
 * OUTQ_ZC_NOTIF; the hold may be freed then (not the queue it came from).
 */
#define OUTQ_ZC_NOTIF INT32_MIN
void *outq_zc_complete(struct outq_zc *z, const struct io_uring_cqe *cqe, int *res);

/* Whether the kernel may still read memory of q's (sends in flight or
 * notifications to come): its connection must not be freed yet. */
bool outq_zc_busy(const struct outq *q);

/*
 * For a connection already ended whose zero-copy bytes are still in its
 * socket (a peer that stopped reading): drops what the socket holds (a
 * TCP reset), so the kernel lets go of the pages and notifies.  A peer
 * that keeps acknowledging zero-window probes would otherwise hold them as
 * long as it likes.  0 or -errno.
 */
int outq_zc_drop(int fd);

/*
 * Whether the peer on fd (q's, TCP) has acknowledged no byte for more than
 * idle_ns: the time to end a connection whose send waits for room, or to
 * drop what an ended one's socket holds (outq_zc_drop).  A peer still
 * reading, however slowly, is not stalled (the kernel wakes a send blocked
 * for room only once much of the send buffer is free, so send completions
 * alone would cut a steady slow reader off), and what an ended
 * connection's socket holds is delivered, as it is for copying sends.
 * Progress is what TCP_INFO's tcpi_bytes_acked shows between calls, so the
 * clock starts at the first call (a sweep of the ended connection); a
 * socket TCP_INFO fails on counts as making none.  now_ns: the caller's
 * monotonic clock.
 */
bool outq_stalled(struct outq *q, int fd, uint64_t now_ns, uint64_t idle_ns);

#endif
