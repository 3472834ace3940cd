/*
 * arena.h - the one memory mapping behind a shard's store.  Internal.
 */
#ifndef RINGCACHE_STORE_ARENA_H
#define RINGCACHE_STORE_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/store.h"

struct arena {
	uint8_t *base;
	size_t len;        /* usable bytes, a multiple of `unit` */
	size_t map_len;    /* what munmap() takes */
	size_t page_size;  /* the backing's page size */
	enum store_backing backing;
};

/*
 * Maps about `len` bytes (rounded down to a multiple of `unit`, and of the
 * huge page size when hugetlb pages back it; never more than `len`) as the
 * config asks: hugetlb pages, transparent huge pages or normal pages, bound
 * to `numa_node` when it is >= 0, prefaulted if asked.  Call it from the
 * thread that will use the memory.  -ENOMEM when hugepages are `on` and no
 * hugetlb pages are reserved; -EINVAL for a NUMA node that does not exist.
 */
int arena_create(struct arena *a, size_t len, size_t unit, const struct store_config *cfg);
void arena_destroy(struct arena *a);

#endif
