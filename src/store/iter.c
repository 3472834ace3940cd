/*
 * iter.c - walking a store's live items (store_iter_*, store.h), for the
 * snapshot of a warm restart (src/snapshot/).
 *
 * The walk reads segments front to back, not the index: items are packed in
 * their segments, so a segment's items are read in address order (one
 * sequential pass over the arena) where following index slots would cost a
 * cache miss per item.  A live item is one whose header is not marked dead
 * in a segment that holds items (HEAD, SEALED, LARGE, VICTIM): every path
 * that takes an item off the index marks it dead first (seg_drop_item, the
 * reclaim pass, eviction), and dropped segments (RECLAIM) and released ones
 * (FREE, PINNED) are skipped whole.  tests/unit/test_store_iter.c checks
 * this against a reference model.
 *
 * Order: the segment being evicted first, then the FIFO of sealed segments
 * from the oldest, then the open heads by the time they were opened.  So
 * items come out roughly oldest first, and a loader that writes them in
 * that order into a smaller store keeps the newest.
 *
 * The order is taken when the iterator is created (one int32 per segment).
 * Each segment's state is checked again when the walk reaches it and at
 * every item, so deletes and flushes between steps are safe: a segment
 * freed meanwhile is skipped, an item deleted meanwhile is dead.  A write
 * could reuse a freed segment the walk has not reached yet, hence the rule
 * in store.h: no store_set() while an iterator is in use.
 */
#include <errno.h>
#include <stdlib.h>

#include "store_int.h"

struct store_iter {
	struct store *st;
	int32_t *order;     /* segments to visit, in order */
	uint32_t n;         /* entries in order */
	uint32_t next;      /* next entry of order to start */
	int32_t seg;        /* segment being walked, SEG_NONE between segments */
	uint64_t off;       /* offset of the next item in it */
	uint64_t end;       /* its write_off when the walk entered it */
};

static bool holds_items(uint8_t state)
{
	return state == SEG_HEAD || state == SEG_SEALED || state == SEG_LARGE ||
	       state == SEG_VICTIM;
}

int store_iter_create(struct store *st, struct store_iter **out)
{
	struct store_iter *it = calloc(1, sizeof(*it));
	int32_t heads[STORE_CLASSES];
	uint32_t nh = 0;

	if (!it)
		return -ENOMEM;
	it->order = malloc((size_t)st->nsegs * sizeof(*it->order));
	if (!it->order) {
		free(it);
		return -ENOMEM;
	}
	it->st = st;
	it->seg = SEG_NONE;
	if (st->bg.seg != SEG_NONE)
		it->order[it->n++] = st->bg.seg;
	for (int32_t j = st->fifo.head; j != SEG_NONE; j = st->segs[j].next)
		it->order[it->n++] = j;
	/* the open heads, oldest first (at most STORE_CLASSES: insertion sort) */
	for (unsigned c = 0; c < STORE_CLASSES; c++) {
		int32_t h = st->head[c];
		uint32_t k;

		if (h == SEG_NONE)
			continue;
		for (k = nh++; k > 0 && st->segs[heads[k - 1]].created > st->segs[h].created; k--)
			heads[k] = heads[k - 1];
		heads[k] = h;
	}
	for (uint32_t k = 0; k < nh; k++)
		it->order[it->n++] = heads[k];
	*out = it;
	return 0;
}

void store_iter_destroy(struct store_iter *it)
{
	if (!it)
		return;
	free(it->order);
	free(it);
}

int store_iter_next(struct store_iter *it, struct store_entry *out)
{
	struct store *st = it->st;
	struct item_hdr h;

	for (;;) {
		if (it->seg == SEG_NONE) {
			if (it->next == it->n)
				return -ENOENT;
			it->seg = it->order[it->next++];
			it->off = 0;
			it->end = st->segs[it->seg].write_off;
		}
		const struct seg *s = &st->segs[it->seg];
		if (!holds_items(s->state) || it->off >= it->end) {
			it->seg = SEG_NONE;
			continue;
		}
		uint64_t loc = ((uint64_t)it->seg << st->seg_shift) + it->off;
		const uint8_t *p = store_ptr(st, loc);

		item_get_hdr(p, &h);
		it->off += item_total(&h);
		if (h.dead || store_expired(st, h.expires))
			continue;
		out->key = p + h.hdr_len;
		out->key_len = h.key_len;
		out->item.value = p + h.hdr_len + h.key_len;
		out->item.value_len = h.value_len;
		out->item.expires = h.expires;
		out->item.etag = h.etag;
		out->item.stamp = store_stamp(st, loc);
		out->item.flags = h.flags;
		return 0;
	}
}
