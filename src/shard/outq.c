/*
 * outq.c - bytes to send, values by reference (outq.h).
 */
#include <errno.h>
#include <stdlib.h>

#include "outq.h"
#include "ringcache/store.h"

int outq_add_ref(struct outq *q, const uint8_t *p, size_t len, _Atomic uint32_t *pin)
{
	if (q->nrefs == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 8;
		struct outq_ref *r = realloc(q->refs, cap * sizeof(*r));
		if (!r) {
			store_unpin(pin);
			return -ENOMEM;
		}
		q->refs = r;
		q->cap = cap;
	}
	q->refs[q->nrefs++] = (struct outq_ref){ q->bytes.len, p, len, pin };
	q->ref_bytes += len;
	return 0;
}

/* Adds the part of [p, p+n) after `skip` bytes; updates skip. */
static unsigned add(struct iovec *iov, unsigned k, unsigned max, const void *p, size_t n,
		    size_t *skip)
{
	if (k == max || n == 0)
		return k;
	if (*skip >= n) {
		*skip -= n;
		return k;
	}
	iov[k].iov_base = (char *)p + *skip;
	iov[k].iov_len = n - *skip;
	*skip = 0;
	return k + 1;
}

unsigned outq_iov(const struct outq *q, size_t off, struct iovec *iov, unsigned max)
{
	size_t at = 0, skip = off;
	unsigned k = 0;

	for (uint32_t i = 0; i < q->nrefs && k < max; i++) {
		const struct outq_ref *r = &q->refs[i];
		k = add(iov, k, max, q->bytes.data + at, r->at - at, &skip);
		k = add(iov, k, max, r->p, r->len, &skip);
		at = r->at;
	}
	return add(iov, k, max, q->bytes.data + at, q->bytes.len - at, &skip);
}

void outq_release_sent(struct outq *q, size_t sent)
{
	while (q->released < q->nrefs) {
		const struct outq_ref *r = &q->refs[q->released];
		if (r->at + q->released_bytes + r->len > sent)
			break;
		store_unpin(r->pin);
		q->released_bytes += r->len;
		q->released++;
	}
}

void outq_clear(struct outq *q)
{
	for (uint32_t i = q->released; i < q->nrefs; i++)
		store_unpin(q->refs[i].pin);
	q->nrefs = q->released = 0;
	q->ref_bytes = q->released_bytes = 0;
	q->bytes.len = 0;
}

void outq_deinit(struct outq *q)
{
	outq_clear(q);
	free(q->refs);
	q->refs = NULL;
	q->cap = 0;
	buf_deinit(&q->bytes);
}
