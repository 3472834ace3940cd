/*
 * outq.h - bytes to send: rendered bytes with values left where they are.
 *
 * An answer's head (and a small value) is rendered into `bytes`; a large
 * value is not copied: a reference to its bytes in the store that holds it
 * goes in the queue instead, pinned there (store_pin) until the send that
 * reads it has completed.  The queue is the order the bytes go out in:
 *
 *   bytes:  [head 1 ...........][head 2 .....][text answer 3 ....]
 *   refs:                      ^ value 1      ^ value 2
 *           (a ref at `at` goes after bytes[0..at) and before bytes[at..))
 *
 * outq_iov() turns what is left to send into an iovec array for one
 * sendmsg; a queue without refs is sent from `bytes` as one buffer.
 * Only the connection's shard touches a queue; the pins it releases may be
 * another shard's (store_unpin is atomic).
 */
#ifndef RINGCACHE_OUTQ_H
#define RINGCACHE_OUTQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ringcache/buf.h"

/* Values from this size up are sent from the store, not copied. */
#define OUTQ_REF_MIN (16u << 10)

struct outq_ref {
	size_t at;                      /* bytes of `bytes` that go before it */
	const uint8_t *p;
	size_t len;
	_Atomic uint32_t *pin;          /* store_unpin() once sent */
};

struct outq {
	struct buf bytes;
	struct outq_ref *refs;
	uint32_t nrefs, cap;
	size_t ref_bytes;               /* sum of the refs' lengths */
	uint32_t released;              /* refs[0..released) sent and unpinned */
	size_t released_bytes;          /* their lengths */
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
 * now (not when the whole queue has gone). */
void outq_release_sent(struct outq *q, size_t sent);

/* Empties the queue, releasing every pin; keeps the buffer's memory. */
void outq_clear(struct outq *q);

/* Empties it and frees its memory. */
void outq_deinit(struct outq *q);

/* Swaps two queues (the filling one and the one being sent). */
static inline void outq_swap(struct outq *a, struct outq *b)
{
	struct outq t = *a;
	*a = *b;
	*b = t;
}

#endif
