/*
 * seg.c - segments: where items are written, and how space comes back.
 *
 * Items are appended to the open segment ("head") of their TTL class; an
 * overwrite or delete only marks the old copy dead and lowers its segment's
 * live counts.  Space comes back four ways, cheapest first:
 *
 *   - a sealed segment whose last live item dies is freed at once;
 *   - a segment whose items have all expired (its class list is roughly in
 *     expiry order, so only the oldest of each class is checked) is dropped
 *     by store_tick() without waiting for a reader;
 *   - store_flush() drops whole segments;
 *   - when the free list runs low, the oldest sealed segment (FIFO) is
 *     evicted.  Before it goes, its live items get a second chance: if at
 *     most 3/4 of the segment is live (overwrites left it sparse), all of
 *     them are copied to the head of their class (compaction: nothing is
 *     lost), otherwise those read since they were written are copied, up
 *     to 3/4 of a segment; the rest are evicted.  Copying at most 3/4 of a
 *     segment per freed segment guarantees progress.  Under uniform random
 *     overwrites of mixed sizes this keeps nearly every key while they fill
 *     up to ~78% of the arena, and ~80% of the arena live when the key space
 *     is larger than the arena (docs/store.md; with 1/2 instead of 3/4 those
 *     were 68% and 76%).
 *
 * The victim is emptied a slice per write (evict_step) once the free list
 * is down to LOW_WATER, so a write rarely has to empty a whole segment
 * itself.  One free segment is kept back from ordinary writes so that
 * compaction always has somewhere to copy to.
 *
 * Dropped (flushed or expired) segments keep their index entries for a while
 * as ghosts: lookups treat them as misses, and store_tick() removes them a
 * bounded number of items at a time before the segment is freed.  That keeps
 * store_flush() and expiry O(segments) instead of O(items).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/hash.h"
#include "store_int.h"

#define TICK_BUDGET   4096u   /* items visited per store_tick() */
#define FREE_RESERVE  1u      /* segments kept back for compaction */
#define LOW_WATER     (FREE_RESERVE + 1)  /* background eviction starts here */
#define STEP_FACTOR   4u      /* victim bytes looked at per byte written */
#define STEP_MIN      256u
#define COPY_MAX(st)  ((st)->seg_size / 4 * 3)

/* --- lists ------------------------------------------------------------ */

static inline int32_t *l_prev(struct seg *s, bool c) { return c ? &s->cprev : &s->prev; }
static inline int32_t *l_next(struct seg *s, bool c) { return c ? &s->cnext : &s->next; }

static void l_append(struct store *st, struct seg_list *l, int32_t j, bool c)
{
	*l_prev(&st->segs[j], c) = l->tail;
	*l_next(&st->segs[j], c) = SEG_NONE;
	if (l->tail != SEG_NONE)
		*l_next(&st->segs[l->tail], c) = j;
	else
		l->head = j;
	l->tail = j;
	l->n++;
}

static void l_push(struct store *st, struct seg_list *l, int32_t j, bool c)
{
	*l_prev(&st->segs[j], c) = SEG_NONE;
	*l_next(&st->segs[j], c) = l->head;
	if (l->head != SEG_NONE)
		*l_prev(&st->segs[l->head], c) = j;
	else
		l->tail = j;
	l->head = j;
	l->n++;
}

static void l_remove(struct store *st, struct seg_list *l, int32_t j, bool c)
{
	int32_t p = *l_prev(&st->segs[j], c), n = *l_next(&st->segs[j], c);

	if (p != SEG_NONE)
		*l_next(&st->segs[p], c) = n;
	else
		l->head = n;
	if (n != SEG_NONE)
		*l_prev(&st->segs[n], c) = p;
	else
		l->tail = p;
	l->n--;
}

/* --- segment states ----------------------------------------------------- */

int seg_setup(struct store *st)
{
	size_t bytes = (size_t)st->nsegs * sizeof(*st->segs);

	/* One line per segment (store_int.h); a multiple of 64 as asked. */
	st->segs = aligned_alloc(64, bytes);
	st->pins = calloc(st->nsegs, sizeof(*st->pins));
	if (!st->segs || !st->pins)
		return -ENOMEM;
	memset(st->segs, 0, bytes);
	st->free = st->fifo = st->reclaim = st->pinned = (struct seg_list){ SEG_NONE, SEG_NONE, 0 };
	st->bg.seg = SEG_NONE;
	for (unsigned c = 0; c < STORE_CLASSES; c++) {
		st->cls[c] = (struct seg_list){ SEG_NONE, SEG_NONE, 0 };
		st->head[c] = SEG_NONE;
	}
	st->pin_max = (st->nsegs - st->index_segs) / 4;
	for (uint32_t j = 0; j < st->nsegs; j++) {
		st->segs[j].nsegs = 1;
		if (j < st->index_segs) {
			st->segs[j].state = SEG_INDEX;
		} else {
			st->segs[j].state = SEG_FREE;
			l_push(st, &st->free, (int32_t)j, false);
		}
	}
	return 0;
}

void seg_teardown(struct store *st)
{
	free(st->segs);
	free(st->pins);
	st->segs = NULL;
	st->pins = NULL;
}

/* Takes segment j (and its group) off whatever list its state puts it on. */
static void unlink_seg(struct store *st, int32_t j)
{
	struct seg *s = &st->segs[j];

	switch (s->state) {
	case SEG_FREE:
		l_remove(st, &st->free, j, false);
		break;
	case SEG_HEAD:
		st->head[s->cls] = SEG_NONE;
		break;
	case SEG_SEALED:
	case SEG_LARGE:
		l_remove(st, &st->fifo, j, false);
		l_remove(st, &st->cls[s->cls], j, true);
		break;
	case SEG_RECLAIM:
		if (st->reclaim.head == j)
			st->reclaim_off = 0;
		l_remove(st, &st->reclaim, j, false);
		break;
	case SEG_PINNED:
		l_remove(st, &st->pinned, j, false);
		break;
	default:
		break;
	}
}

static inline bool seg_pinned(const struct store *st, int32_t j)
{
	return atomic_load_explicit(&st->pins[j], memory_order_acquire) != 0;
}

/* Clears a segment's state for reuse, all but its generation: stamps rely
 * on it never going back (store_int.h). */
static void seg_reset(struct seg *s, uint8_t state)
{
	uint32_t gen = s->gen;

	memset(s, 0, sizeof(*s));
	s->gen = gen;
	s->nsegs = 1;
	s->state = state;
}

/*
 * Frees segment j and the rest of its group; it must be off every list.
 * While a send still reads a value in it, the group waits on the pinned
 * list instead (its bytes untouched) and is freed by release_unpinned().
 */
static void release(struct store *st, int32_t j)
{
	uint32_t n = st->segs[j].nsegs;

	if (seg_pinned(st, j)) {
		st->segs[j].state = SEG_PINNED;
		l_append(st, &st->pinned, j, false);
		return;
	}
	if (st->segs[j].pin_counted)    /* its last unpin was another thread's */
		st->pinned_segs -= n;
	for (uint32_t k = 0; k < n; k++) {
		seg_reset(&st->segs[j + (int32_t)k], SEG_FREE);
		l_push(st, &st->free, j + (int32_t)k, false);
	}
}

/* Frees the pinned groups whose sends have all completed. */
static void release_unpinned(struct store *st)
{
	for (int32_t j = st->pinned.head, next; j != SEG_NONE; j = next) {
		next = st->segs[j].next;
		if (!seg_pinned(st, j)) {
			l_remove(st, &st->pinned, j, false);
			release(st, j);
		}
	}
}

static void open_head(struct store *st, unsigned cls)
{
	int32_t j = st->free.head;
	struct seg *s = &st->segs[j];

	l_remove(st, &st->free, j, false);
	seg_reset(s, SEG_HEAD);
	s->gen++;   /* a new incarnation: offsets from 0 again (stamps) */
	s->cls = (uint8_t)cls;
	s->created = s->stored_min = st->now;
	st->head[cls] = j;
}

static void seal(struct store *st, int32_t j)
{
	struct seg *s = &st->segs[j];

	st->head[s->cls] = SEG_NONE;
	if (s->live_items == 0) {
		s->state = SEG_FREE;
		release(st, j);
		return;
	}
	s->state = SEG_SEALED;
	l_append(st, &st->fifo, j, false);
	l_append(st, &st->cls[s->cls], j, true);
}

/*
 * Drops segment j: its live items stop counting (as expirations or as
 * flushed) and become ghosts until the reclaim pass removes their index
 * entries.  O(1).  Returns how many live items it held.
 */
static uint32_t doom(struct store *st, int32_t j, bool expired)
{
	struct seg *s = &st->segs[j];
	uint32_t n = s->live_items;

	unlink_seg(st, j);
	st->items -= n;
	st->hdr_bytes -= s->live_hdr;
	st->key_bytes -= s->live_key;
	st->value_bytes -= s->live_val;
	if (expired)
		st->expirations += n;
	else
		st->flushed += n;
	s->live_items = s->live_hdr = s->live_key = s->live_val = 0;
	s->state = SEG_RECLAIM;
	l_append(st, &st->reclaim, j, false);
	return n;
}

/* --- items -------------------------------------------------------------- */

void seg_add_item(struct store *st, uint64_t loc, const struct item_hdr *h)
{
	struct seg *s = &st->segs[store_seg_of(st, loc)];

	s->live_items++;
	s->live_hdr += h->hdr_len;
	s->live_key += h->key_len;
	s->live_val += h->value_len;
	if (h->expires > s->max_exp)
		s->max_exp = h->expires;
	st->items++;
	st->hdr_bytes += h->hdr_len;
	st->key_bytes += h->key_len;
	st->value_bytes += h->value_len;
}

bool seg_drop_item(struct store *st, uint64_t loc, const struct item_hdr *h)
{
	int32_t j = (int32_t)store_seg_of(st, loc);
	struct seg *s = &st->segs[j];

	item_mark_dead(store_ptr(st, loc));
	if (s->state == SEG_RECLAIM)
		return false;
	s->live_items--;
	s->live_hdr -= h->hdr_len;
	s->live_key -= h->key_len;
	s->live_val -= h->value_len;
	st->items--;
	st->hdr_bytes -= h->hdr_len;
	st->key_bytes -= h->key_len;
	st->value_bytes -= h->value_len;
	if (s->live_items == 0 && (s->state == SEG_SEALED || s->state == SEG_LARGE)) {
		unlink_seg(st, j);
		release(st, j);
	}
	return true;
}

static inline uint64_t seg_live_bytes(const struct seg *s)
{
	return (uint64_t)s->live_hdr + s->live_key + s->live_val;
}

/* The index slot of the item at loc, or NULL if it is not live. */
static uint64_t *slot_of(struct store *st, uint64_t loc, const struct item_hdr *h)
{
	const uint8_t *p = store_ptr(st, loc);
	uint64_t hash = hash_key(p + h->hdr_len, h->key_len);

	return index_find_loc(&st->ix, (uint32_t)hash, loc);
}

/* --- eviction and compaction ---------------------------------------------- */

/* Room in class cls's head for a copy, without evicting: it may use the
 * reserved free segment.  -1 if there is none. */
static int64_t copy_alloc(struct store *st, unsigned cls, uint64_t size)
{
	int32_t h = st->head[cls];
	int64_t loc;

	if (h == SEG_NONE || st->seg_size - st->segs[h].write_off < size) {
		if (st->free.n == 0)
			return -1;
		if (h != SEG_NONE)
			seal(st, h);
		open_head(st, cls);
		h = st->head[cls];
	}
	loc = (int64_t)(((uint64_t)h << st->seg_shift) + st->segs[h].write_off);
	st->segs[h].write_off += size;
	return loc;
}

static void victim_begin(struct store *st, struct victim *v, int32_t j, bool compact)
{
	struct seg *s = &st->segs[j];

	unlink_seg(st, j);
	s->state = SEG_VICTIM;
	v->seg = j;
	v->off = 0;
	v->copied = 0;
	v->compact = compact && s->nsegs == 1;
	v->sparse = seg_live_bytes(s) <= COPY_MAX(st);
}

/*
 * Empties victim v until `budget` bytes of it have been looked at; frees
 * the segment and returns true once nothing live is left.  With compaction
 * on, live items get the second chance described at the top of the file;
 * without, every live item is evicted.
 */
static bool victim_work(struct store *st, struct victim *v, uint64_t budget)
{
	int32_t j = v->seg;
	struct seg *s = &st->segs[j];
	uint64_t base = (uint64_t)j << st->seg_shift, scanned = 0;
	struct item_hdr h;

	while (v->off < s->write_off && s->live_items && scanned < budget) {
		uint64_t loc = base + v->off;
		uint8_t *p = store_ptr(st, loc);
		uint64_t *slot, total;
		int64_t dst;

		item_get_hdr(p, &h);
		total = item_total(&h);
		v->off += total;
		scanned += total;
		if (h.dead)
			continue;
		slot = slot_of(st, loc, &h);
		if (!slot) {
			item_mark_dead(p);
			continue;
		}
		if (store_expired(st, h.expires)) {
			index_remove(&st->ix, slot);
			seg_drop_item(st, loc, &h);
			st->expirations++;
			continue;
		}
		if (v->compact && (v->sparse || (*slot & INDEX_ACCESSED)) &&
		    v->copied + total <= COPY_MAX(st) &&
		    (dst = copy_alloc(st, s->cls, total)) >= 0) {
			struct seg *d = &st->segs[store_seg_of(st, (uint64_t)dst)];

			memcpy(store_ptr(st, (uint64_t)dst), p, total);
			index_relocate(slot, (uint64_t)dst);
			seg_add_item(st, (uint64_t)dst, &h);
			if (s->stored_min < d->stored_min)
				d->stored_min = s->stored_min;
			seg_drop_item(st, loc, &h);
			v->copied += total;
			st->compacted++;
			continue;
		}
		index_remove(&st->ix, slot);
		seg_drop_item(st, loc, &h);
		st->evictions++;
	}
	if (v->off < s->write_off && s->live_items)
		return false;
	v->seg = SEG_NONE;
	release(st, j);
	return true;
}

/*
 * Removes up to `budget` ghosts of the dropped segment at the head of the
 * reclaim list, freeing it when done.  Returns the items visited.
 */
static uint32_t reclaim_some(struct store *st, uint32_t budget)
{
	int32_t j = st->reclaim.head;
	struct seg *s = &st->segs[j];
	uint64_t base = (uint64_t)j << st->seg_shift;
	uint32_t visited = 0;
	struct item_hdr h;

	while (st->reclaim_off < s->write_off && visited < budget) {
		uint64_t loc = base + st->reclaim_off;
		uint8_t *p = store_ptr(st, loc);

		item_get_hdr(p, &h);
		st->reclaim_off += item_total(&h);
		visited++;
		if (!h.dead) {
			uint64_t *slot = slot_of(st, loc, &h);
			if (slot)
				index_remove(&st->ix, slot);
			item_mark_dead(p);
		}
	}
	if (st->reclaim_off >= s->write_off) {
		unlink_seg(st, j);
		release(st, j);
	}
	return visited;
}

/*
 * Drops segment j's group now, evicting its items without a second chance:
 * no copies, so no segment changes state behind the caller's back.
 */
static void drop_now(struct store *st, int32_t j)
{
	struct victim v;
	struct seg *s;

	if (st->segs[j].state == SEG_TAIL)
		j = st->segs[j].cprev;
	s = &st->segs[j];
	switch (s->state) {
	case SEG_RECLAIM:
		if (st->reclaim.head != j) {
			l_remove(st, &st->reclaim, j, false);
			l_push(st, &st->reclaim, j, false);
			st->reclaim_off = 0;
		}
		while (st->segs[j].state == SEG_RECLAIM)
			reclaim_some(st, UINT32_MAX);
		break;
	case SEG_HEAD:
	case SEG_SEALED:
	case SEG_LARGE:
		victim_begin(st, &v, j, false);
		victim_work(st, &v, UINT64_MAX);
		break;
	case SEG_VICTIM:   /* only st->bg stays a victim between calls */
		st->bg.compact = false;
		victim_work(st, &st->bg, UINT64_MAX);
		break;
	default:
		break;
	}
}

/* Oldest segment of a TTL class whose items have all expired, or NONE. */
static int32_t expired_seg(struct store *st)
{
	for (unsigned c = 1; c < STORE_CLASSES; c++) {
		int32_t j = st->cls[c].head;
		if (j != SEG_NONE && store_expired(st, st->segs[j].max_exp))
			return j;
	}
	return SEG_NONE;
}

/*
 * Frees at least one segment, losing as little as it can (dropped and
 * expired segments first, then the oldest).  Without `compact`, live items
 * of the victim are evicted rather than copied.  false if nothing is left.
 */
static bool evict_one(struct store *st, bool compact)
{
	int32_t j, oldest = SEG_NONE;

	if (st->bg.seg != SEG_NONE) {
		st->bg.compact &= compact;
		victim_work(st, &st->bg, UINT64_MAX);
		return true;
	}
	if (st->reclaim.head != SEG_NONE) {
		drop_now(st, st->reclaim.head);
		return true;
	}
	if ((j = expired_seg(st)) != SEG_NONE) {
		doom(st, j, true);
		drop_now(st, j);
		return true;
	}
	if ((j = st->fifo.head) != SEG_NONE) {
		victim_begin(st, &st->bg, j, compact);
		victim_work(st, &st->bg, UINT64_MAX);
		return true;
	}
	for (unsigned c = 0; c < STORE_CLASSES; c++) {
		int32_t h = st->head[c];
		if (h != SEG_NONE && (oldest == SEG_NONE ||
				      st->segs[h].created < st->segs[oldest].created))
			oldest = h;
	}
	if (oldest == SEG_NONE)
		return false;
	drop_now(st, oldest);
	return true;
}

/*
 * Evicts until more than FREE_RESERVE segments are free.  Compaction can
 * fill a new head as fast as it frees its victim (copies that leave a tail
 * too short for the next item), so after four rounds that gained nothing,
 * victims are evicted without copying: this always ends.
 */
static void make_room(struct store *st)
{
	unsigned stalls = 0;

	if (st->free.n <= FREE_RESERVE)
		release_unpinned(st);
	while (st->free.n <= FREE_RESERVE) {
		uint32_t before = st->free.n;

		if (!evict_one(st, stalls < 4))
			break;
		if (st->free.n <= before)
			stalls++;
	}
}

/*
 * Background eviction, paid for by each write: when the free list is down
 * to LOW_WATER, look at `budget` more bytes of the current victim (starting
 * one if needed).  Writes then rarely find the free list at the reserve and
 * wait for a whole segment to be emptied.
 */
static void evict_step(struct store *st, uint64_t budget)
{
	int32_t j;

	if (st->free.n > LOW_WATER)
		return;
	if (st->bg.seg == SEG_NONE) {
		if (st->reclaim.head != SEG_NONE) {
			reclaim_some(st, (uint32_t)(budget / 64 + 1));
			return;
		}
		if ((j = expired_seg(st)) != SEG_NONE) {
			doom(st, j, true);
			return;
		}
		if ((j = st->fifo.head) == SEG_NONE)
			return;
		victim_begin(st, &st->bg, j, true);
	}
	victim_work(st, &st->bg, budget);
}

int64_t seg_alloc(struct store *st, unsigned cls, uint64_t size)
{
	int32_t h;
	uint64_t loc;

	/* Before taking space: the step may seal this class's head. */
	evict_step(st, STEP_FACTOR * size + STEP_MIN);
	h = st->head[cls];
	if (h == SEG_NONE || st->seg_size - st->segs[h].write_off < size) {
		if (h != SEG_NONE)
			seal(st, h);
		make_room(st);
		/* Compaction may have opened a head for this class. */
		h = st->head[cls];
		if (h != SEG_NONE && st->seg_size - st->segs[h].write_off < size) {
			seal(st, h);
			h = SEG_NONE;
		}
		if (h == SEG_NONE) {
			if (st->free.n == 0)
				return -ENOMEM;
			open_head(st, cls);
			h = st->head[cls];
		}
	}
	loc = ((uint64_t)h << st->seg_shift) + st->segs[h].write_off;
	st->segs[h].write_off += size;
	return (int64_t)loc;
}

#define SEG_BLOCKED UINT64_MAX   /* clear_cost() of a segment that cannot be cleared */

/* What it costs to clear segment j for a large item: its live bytes, or
 * SEG_BLOCKED. */
static uint64_t clear_cost(const struct store *st, int32_t j)
{
	const struct seg *s = &st->segs[j];

	int32_t g = s->state == SEG_TAIL ? s->cprev : j;

	/* a send reads it: it cannot be cleared now */
	if (s->state != SEG_FREE && s->state != SEG_INDEX &&
	    (st->segs[g].state == SEG_PINNED || seg_pinned(st, g)))
		return SEG_BLOCKED;
	switch (s->state) {
	case SEG_FREE:
		return 0;
	case SEG_TAIL:
		s = &st->segs[s->cprev];
		/* fall through */
	case SEG_LARGE:
		return 1 + seg_live_bytes(s) / s->nsegs;
	case SEG_INDEX:
	case SEG_PINNED:
		return SEG_BLOCKED;
	default:
		return 1 + seg_live_bytes(s);
	}
}

int64_t seg_alloc_large(struct store *st, unsigned cls, uint64_t size)
{
	uint64_t k = (size + st->seg_size - 1) >> st->seg_shift;
	uint64_t cost = 0, best_cost = UINT64_MAX;
	int64_t best = -1;
	struct seg *s;

	if (k + FREE_RESERVE > st->nsegs - st->index_segs)
		return -E2BIG;
	release_unpinned(st);
	/*
	 * Slide a k-segment window down from the top; cheapest (highest) wins.
	 * A segment that cannot be cleared (the index's, or one a send reads)
	 * is counted apart, not added: k of them would overflow any cost.
	 */
	uint64_t blocked = 0;
	bool any = false;
	for (int64_t a = (int64_t)st->nsegs - 1; a >= (int64_t)st->index_segs; a--) {
		uint64_t in = clear_cost(st, (int32_t)a);
		if (in == SEG_BLOCKED)
			blocked++;
		else
			cost += in;
		if ((uint64_t)a + k < st->nsegs) {
			uint64_t out = clear_cost(st, (int32_t)(a + (int64_t)k));
			if (out == SEG_BLOCKED)
				blocked--;
			else
				cost -= out;
		}
		if ((uint64_t)a + k <= st->nsegs) {
			any = true;
			if (!blocked && cost < best_cost) {
				best_cost = cost;
				best = a;
			}
		}
	}
	if (!any)
		return -E2BIG;
	if (best < 0)
		return -ENOMEM;     /* every run holds the index or a pinned value */
	for (uint64_t i = 0; i < k; i++)
		drop_now(st, (int32_t)(best + (int64_t)i));
	for (uint64_t i = 0; i < k; i++) {
		int32_t j = (int32_t)(best + (int64_t)i);

		l_remove(st, &st->free, j, false);
		s = &st->segs[j];
		seg_reset(s, SEG_TAIL);
		s->cprev = (int32_t)best;
	}
	s = &st->segs[best];
	s->gen++;   /* the item goes at offset 0 of this segment (stamps) */
	s->state = SEG_LARGE;
	s->nsegs = (uint32_t)k;
	s->cls = (uint8_t)cls;
	s->write_off = size;
	s->created = s->stored_min = st->now;
	l_append(st, &st->fifo, (int32_t)best, false);
	l_append(st, &st->cls[cls], (int32_t)best, true);
	return best << st->seg_shift;
}

/* --- index growth, background work, flush ------------------------------- */

bool seg_grow_index(struct store *st)
{
	int32_t j = (int32_t)st->index_segs;

	if (index_next_end(&st->ix) <= (uint64_t)st->index_segs << st->seg_shift)
		return true;
	if ((uint32_t)j + 2 * FREE_RESERVE + 1 >= st->nsegs)
		return false;
	release_unpinned(st);
	if (st->segs[j].state == SEG_PINNED ||
	    (st->segs[j].state == SEG_TAIL && seg_pinned(st, st->segs[j].cprev)) ||
	    seg_pinned(st, j))
		return false;       /* a send reads it; the index grows later */
	drop_now(st, j);
	l_remove(st, &st->free, j, false);
	st->segs[j].state = SEG_INDEX;
	st->index_segs++;
	return true;
}

/* The pinned segments, counted exactly again (their last unpins happened
 * on other threads since); a group unpinned now is counted again by its
 * next store_pin().  A group reused since it was counted was reset
 * (seg_reset clears pin_counted) and is left out here. */
static void recount_pins(struct store *st)
{
	uint32_t n = 0;

	for (uint32_t j = st->index_segs; j < st->nsegs; j++) {
		struct seg *s = &st->segs[j];
		bool pinned = s->state != SEG_TAIL && seg_pinned(st, (int32_t)j);

		s->pin_counted = pinned;
		n += pinned ? s->nsegs : 0;
	}
	st->pinned_segs = n;
}

void seg_tick(struct store *st)
{
	uint32_t budget = TICK_BUDGET;
	int32_t j;

	release_unpinned(st);
	recount_pins(st);
	while ((j = expired_seg(st)) != SEG_NONE)
		doom(st, j, true);
	for (unsigned c = 1; c < STORE_CLASSES; c++) {
		int32_t h = st->head[c];
		if (h != SEG_NONE && st->segs[h].write_off && store_expired(st, st->segs[h].max_exp))
			doom(st, h, true);
	}
	while (budget && st->reclaim.head != SEG_NONE)
		budget -= reclaim_some(st, budget);
	/* No evict_step() here: eviction happens only for a write that needs
	 * the room.  An idle store keeps what it holds, even at its low-water
	 * mark (a value filling all but the reserve would otherwise be evicted
	 * by the next tick). */
}

uint64_t seg_flush(struct store *st, uint32_t older_than)
{
	uint64_t n = 0;

	for (uint32_t j = st->index_segs; j < st->nsegs; j++) {
		struct seg *s = &st->segs[j];

		if ((s->state == SEG_HEAD || s->state == SEG_SEALED || s->state == SEG_LARGE ||
		     s->state == SEG_VICTIM) && s->stored_min < older_than) {
			if (st->bg.seg == (int32_t)j)
				st->bg.seg = SEG_NONE;
			n += doom(st, (int32_t)j, false);
		}
	}
	return n;
}
