/*
 * keytab.h - the coherence thread's small table of keys (keytab.c): the
 * GET in flight per key (coalescing) and the queued write per key (replay).
 * Intrusive nodes, compared as length-counted bytes.
 */
#ifndef RINGCACHE_COH_KEYTAB_H
#define RINGCACHE_COH_KEYTAB_H

#include <stdint.h>

struct coh_kt_node {
	struct coh_kt_node *next;
	uint64_t hash;
	const char *key;
	uint32_t key_len;
};

struct coh_kt {
	struct coh_kt_node **b;
	uint32_t mask;
	uint32_t count;
};

int coh_kt_init(struct coh_kt *t, uint32_t buckets);
void coh_kt_deinit(struct coh_kt *t);
struct coh_kt_node *coh_kt_find(const struct coh_kt *t, uint64_t hash, const void *key, uint32_t len);
/* The key must not be in the table; never fails (chains grow when it cannot resize). */
void coh_kt_insert(struct coh_kt *t, struct coh_kt_node *n);
void coh_kt_remove(struct coh_kt *t, struct coh_kt_node *n);

#endif
