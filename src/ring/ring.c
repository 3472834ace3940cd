/*
 * ring.c - allocation of SPSC rings; the operations are inline in ring.h.
 */
#include <stdlib.h>
#include <string.h>

#include "ringcache/ring.h"

struct ring *ring_create(uint32_t size)
{
	if (size < 2 || (size & (size - 1)) != 0 || size > (1u << 24))
		return NULL;
	size_t bytes = sizeof(struct ring) + (size_t)size * sizeof(void *);
	bytes = (bytes + RING_LINE - 1) & ~(size_t)(RING_LINE - 1);
	struct ring *r = aligned_alloc(RING_LINE, bytes);
	if (!r)
		return NULL;
	memset(r, 0, bytes);
	atomic_init(&r->tail, 0);
	atomic_init(&r->head, 0);
	r->mask = size - 1;
	return r;
}

void ring_destroy(struct ring *r)
{
	free(r);
}
