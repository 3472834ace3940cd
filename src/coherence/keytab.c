/*
 * keytab.c - a small chained hash table of keys, for the two places the
 * coherence thread must find "the thing already pending for this key": the
 * GET in flight that later GETs join (coalescing), and the queued write a
 * later write of the same key replaces (replay).  Nodes are intrusive, so the
 * table never allocates per entry; it doubles its bucket array at load 1 and
 * keeps working with longer chains if that allocation fails.  The bucket
 * index comes from the hash's low bits (the shard choice uses the top ones,
 * which are the same for every key reaching one shard).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "keytab.h"

int coh_kt_init(struct coh_kt *t, uint32_t buckets)
{
	uint32_t n = 16;

	while (n < buckets)
		n *= 2;
	t->b = calloc(n, sizeof(*t->b));
	if (!t->b)
		return -ENOMEM;
	t->mask = n - 1;
	t->count = 0;
	return 0;
}

void coh_kt_deinit(struct coh_kt *t)
{
	free(t->b);
	t->b = NULL;
	t->mask = t->count = 0;
}

struct coh_kt_node *coh_kt_find(const struct coh_kt *t, uint64_t hash, const void *key, uint32_t len)
{
	for (struct coh_kt_node *n = t->b[hash & t->mask]; n; n = n->next)
		if (n->hash == hash && n->key_len == len && !memcmp(n->key, key, len))
			return n;
	return NULL;
}

static void grow(struct coh_kt *t)
{
	uint32_t size = (t->mask + 1) * 2;
	struct coh_kt_node **b;

	if (size == 0 || !(b = calloc(size, sizeof(*b))))
		return;
	for (uint32_t i = 0; i <= t->mask; i++) {
		struct coh_kt_node *n = t->b[i], *next;
		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (size - 1)];
			b[n->hash & (size - 1)] = n;
		}
	}
	free(t->b);
	t->b = b;
	t->mask = size - 1;
}

void coh_kt_insert(struct coh_kt *t, struct coh_kt_node *n)
{
	if (t->count > t->mask)
		grow(t);
	struct coh_kt_node **head = &t->b[n->hash & t->mask];
	n->next = *head;
	*head = n;
	t->count++;
}

void coh_kt_remove(struct coh_kt *t, struct coh_kt_node *n)
{
	for (struct coh_kt_node **pp = &t->b[n->hash & t->mask]; *pp; pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			n->next = NULL;
			t->count--;
			return;
		}
	}
}
