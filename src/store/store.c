/*
 * store.c - the per-shard store's public calls (see ringcache/store.h).
 *
 * A shard's whole budget is one arena: the index at its start, segments of
 * items after it (store_int.h).  This file sizes the parts, and implements
 * get/set/delete on top of the index (index.c) and the segments (seg.c).
 *
 * Visibility rule, checked on every read: an item is served only if the
 * index points at it, its segment has not been dropped (flush, expiry) and
 * its own expiry is later than the store clock.  Anything else found on the
 * way is removed on the spot, so readers also clean up.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "store_int.h"

#define DEFAULT_MAX_VALUE (16ull << 20)
#define VALUE_LIMIT       UINT32_MAX   /* the item header holds 32 bits */
#define MIN_MEMORY        (1ull << 20)
#define SEG_SHIFT_MIN     16u   /* 64 KiB */
#define SEG_SHIFT_MAX     20u   /* 1 MiB */
#define SEGS_WANTED       64u

const char *store_backing_name(enum store_backing b)
{
	switch (b) {
	case STORE_BACKING_HUGETLB: return "hugetlb";
	case STORE_BACKING_THP: return "thp";
	case STORE_BACKING_NORMAL: return "normal";
	}
	return "?";
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * The key of store_stamp(): from `seed` when one is given (a repeatable
 * run), else from getrandom(), so that a restarted process, or another
 * shard, does not repeat the stamps of this one.  If getrandom() is refused
 * (a seccomp filter), the clocks, the pid and the arena's address stand in:
 * weaker, but they still differ between two runs.
 */
static void stamp_key_init(struct store *st, uint64_t seed)
{
	struct timespec rt, mono;

	if (!seed && getrandom(st->stamp_key, sizeof(st->stamp_key), 0) ==
			     (ssize_t)sizeof(st->stamp_key))
		return;
	if (!seed) {
		clock_gettime(CLOCK_REALTIME, &rt);
		clock_gettime(CLOCK_MONOTONIC, &mono);
		seed = (((uint64_t)rt.tv_sec << 32) ^ (uint64_t)rt.tv_nsec) ^
		       ((uint64_t)mono.tv_nsec << 20) ^ ((uint64_t)getpid() << 40) ^
		       (uint64_t)(uintptr_t)st->arena.base;
	}
	for (int i = 0; i < 4; i++)
		st->stamp_key[i] = splitmix64(&seed);
}

/* The largest segment size (64 KiB..1 MiB) that still gives 64 segments. */
static unsigned pick_seg_shift(uint64_t memory)
{
	unsigned s = SEG_SHIFT_MAX;

	while (s > SEG_SHIFT_MIN && (memory >> s) < SEGS_WANTED)
		s--;
	return s;
}

int store_create(struct store **out, const struct store_config *cfg)
{
	uint64_t max_value = cfg->max_value ? cfg->max_value : DEFAULT_MAX_VALUE;
	uint64_t index_min = (uint64_t)INDEX_BUCKET << INDEX_MIN_LEVEL;
	uint64_t max_buckets;
	struct store *st;
	int r;

	if (cfg->memory < MIN_MEMORY || cfg->memory >= (1ull << INDEX_LOC_BITS) ||
	    max_value > VALUE_LIMIT)
		return -EINVAL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->seg_shift = pick_seg_shift(cfg->memory);
	st->seg_size = 1ull << st->seg_shift;
	r = arena_create(&st->arena, cfg->memory, st->seg_size, cfg);
	if (r < 0) {
		free(st);
		return r;
	}
	st->nsegs = (uint32_t)(st->arena.len >> st->seg_shift);
	st->index_segs = (uint32_t)((index_min + st->seg_size - 1) >> st->seg_shift);
	st->max_value = max_value;
	st->now = 1;
	stamp_key_init(st, cfg->stamp_seed);
	if (st->nsegs < st->index_segs + 4) {
		r = -EINVAL;
		goto fail;
	}
	/* The index may take up to half the arena (tiny items), 2^30 buckets. */
	max_buckets = st->arena.len / 2 / INDEX_BUCKET;
	if (max_buckets > (1ull << 30))
		max_buckets = 1ull << 30;
	r = seg_setup(st);
	if (r < 0)
		goto fail;
	index_init(&st->ix, st->arena.base, max_buckets);
	*out = st;
	return 0;
fail:
	arena_destroy(&st->arena);
	free(st);
	return r;
}

void store_destroy(struct store *st)
{
	if (!st)
		return;
	seg_teardown(st);
	arena_destroy(&st->arena);
	free(st);
}

uint32_t store_now(const struct store *st)
{
	return st->now;
}

void store_prefetch(const struct store *st, uint64_t hash)
{
	index_prefetch(&st->ix, (uint32_t)hash);
}

void store_reserve(struct store *st, uint64_t items)
{
	/* the index `items` entries would have grown by store_set(), grown at
	 * once: splitting buckets that are still empty moves nothing, and the
	 * sets that follow find a lightly loaded index instead of a full one */
	if (items > (1ull << 40))
		items = 1ull << 40;
	while (items * 8 >= st->ix.nbuckets * 57 && st->ix.nbuckets < st->ix.max_buckets &&
	       seg_grow_index(st))
		index_split(&st->ix);
}

void store_tick(struct store *st, uint32_t now)
{
	if (now > st->now)
		st->now = now;
	seg_tick(st);
}

static inline bool key_ok(size_t key_len)
{
	return key_len >= 1 && key_len <= STORE_KEY_MAX;
}

/*
 * Finds the live item of a key.  Ghosts and expired items found on the way
 * are removed.  Returns its slot (and its header in *h), or NULL.
 */
static uint64_t *lookup(struct store *st, const void *key, size_t key_len, uint64_t hash,
			struct item_hdr *h)
{
	uint64_t *slot = index_find(&st->ix, (uint32_t)hash, key, (uint32_t)key_len);
	uint64_t loc;

	if (!slot)
		return NULL;
	loc = index_loc(*slot);
	item_get_hdr(store_ptr(st, loc), h);
	if (seg_is_ghost(st, loc)) {
		index_remove(&st->ix, slot);
		seg_drop_item(st, loc, h);
		return NULL;
	}
	if (store_expired(st, h->expires)) {
		index_remove(&st->ix, slot);
		seg_drop_item(st, loc, h);
		st->expirations++;
		return NULL;
	}
	return slot;
}

int store_get(struct store *st, const void *key, size_t key_len, uint64_t hash,
	      struct store_item *out)
{
	struct item_hdr h;
	uint64_t *slot, loc;

	if (!key_ok(key_len))
		return -EINVAL;
	st->gets++;
	slot = lookup(st, key, key_len, hash, &h);
	if (!slot)
		return -ENOENT;
	*slot |= INDEX_ACCESSED;
	loc = index_loc(*slot);
	out->value = store_ptr(st, loc) + h.hdr_len + h.key_len;
	out->value_len = h.value_len;
	out->expires = h.expires;
	out->etag = h.etag;
	out->stamp = store_stamp(st, loc);
	out->flags = h.flags;
	st->hits++;
	return 0;
}

bool store_contains(struct store *st, const void *key, size_t key_len, uint64_t hash)
{
	struct item_hdr h;

	return key_ok(key_len) && lookup(st, key, key_len, hash, &h) != NULL;
}

/* Removes the key's live item, if any; 0 if there was one. */
static int remove_key(struct store *st, const void *key, size_t key_len, uint64_t hash)
{
	struct item_hdr h;
	uint64_t *slot = lookup(st, key, key_len, hash, &h);
	uint64_t loc;

	if (!slot)
		return -ENOENT;
	loc = index_loc(*slot);
	index_remove(&st->ix, slot);
	seg_drop_item(st, loc, &h);
	return 0;
}

/* Drops the item an index insert displaced. */
static void drop_displaced(struct store *st, uint64_t loc)
{
	struct item_hdr h;

	item_get_hdr(store_ptr(st, loc), &h);
	if (seg_drop_item(st, loc, &h))
		st->evictions++;
}

int store_set(struct store *st, const void *key, size_t key_len, uint64_t hash,
	      const struct iovec *iov, int iovcnt, uint32_t ttl, uint8_t flags,
	      uint32_t etag, struct store_set_info *info)
{
	uint64_t total = 0, size;
	uint32_t expires = 0;
	unsigned cls = store_class(ttl);
	struct item_hdr h;
	uint64_t *slot;
	int64_t loc;
	uint8_t *p;

	if (!key_ok(key_len) || iovcnt < 0)
		return -EINVAL;
	st->sets++;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > st->max_value) {
		remove_key(st, key, key_len, hash);
		return -E2BIG;
	}
	if (ttl)
		expires = st->now + ttl < st->now ? UINT32_MAX : st->now + ttl;
	/* Grow the index first: taking a segment may evict, and it must not
	 * evict the item this call is about to write. */
	while (index_wants_split(&st->ix) && seg_grow_index(st))
		index_split(&st->ix);
	size = item_size((uint32_t)key_len, (uint32_t)total, expires, etag, flags);
	if (size <= st->seg_size)
		loc = seg_alloc(st, cls, size);
	else
		loc = seg_alloc_large(st, cls, size);
	if (loc < 0) {
		remove_key(st, key, key_len, hash);
		return (int)loc;
	}

	p = store_ptr(st, (uint64_t)loc);
	p += item_put_hdr(p, (uint32_t)key_len, (uint32_t)total, expires, etag, flags);
	memcpy(p, key, key_len);
	p += key_len;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	item_get_hdr(store_ptr(st, (uint64_t)loc), &h);
	seg_add_item(st, (uint64_t)loc, &h);

	slot = index_find(&st->ix, (uint32_t)hash, key, (uint32_t)key_len);
	bool replaced = false;
	if (slot) {
		uint64_t old = index_loc(*slot);
		struct item_hdr oh;

		item_get_hdr(store_ptr(st, old), &oh);
		/* live as lookup() sees it: not in a reclaimed segment, not expired */
		replaced = !seg_is_ghost(st, old) && !store_expired(st, oh.expires);
		if (seg_drop_item(st, old, &oh) && store_expired(st, oh.expires))
			st->expirations++;
		index_relocate(slot, (uint64_t)loc);
	} else {
		uint64_t dropped = index_insert(&st->ix, (uint32_t)hash, (uint64_t)loc);
		if (dropped)
			drop_displaced(st, dropped);
	}
	if (info)
		*info = (struct store_set_info){ .stamp = store_stamp(st, (uint64_t)loc),
						 .replaced = replaced };
	return 0;
}

int store_delete(struct store *st, const void *key, size_t key_len, uint64_t hash)
{
	int r;

	if (!key_ok(key_len))
		return -EINVAL;
	r = remove_key(st, key, key_len, hash);
	if (r == 0)
		st->deletes++;
	return r;
}

uint64_t store_flush(struct store *st, uint32_t older_than)
{
	return seg_flush(st, older_than);
}

void store_stats(const struct store *st, struct store_stats *out)
{
	uint64_t used = 0, nfree = 0;

	for (uint32_t j = st->index_segs; j < st->nsegs; j++) {
		const struct seg *s = &st->segs[j];
		if (s->state == SEG_FREE)
			nfree++;
		else if (s->state != SEG_TAIL && s->state != SEG_INDEX)
			used += s->write_off;
	}
	memset(out, 0, sizeof(*out));
	out->items = st->items;
	out->key_bytes = st->key_bytes;
	out->value_bytes = st->value_bytes;
	out->arena_bytes = st->arena.len;
	out->used_bytes = used;
	out->evictions = st->evictions;
	out->expirations = st->expirations;
	out->sets = st->sets;
	out->gets = st->gets;
	out->hits = st->hits;
	out->deletes = st->deletes;
	out->backing = st->arena.backing;
	out->live_bytes = st->hdr_bytes + st->key_bytes + st->value_bytes;
	out->index_bytes = index_bytes(&st->ix);
	out->index_slots_used = st->ix.used;
	out->compacted = st->compacted;
	out->flushed = st->flushed;
	out->displaced = st->ix.displaced;
	out->segment_size = st->seg_size;
	out->segments = st->nsegs - st->index_segs;
	out->segments_free = nfree;
	out->segments_pinned = st->pinned.n;
	out->pins_refused = st->pins_refused;
	out->page_size = st->arena.page_size;
}

void store_counts(const struct store *st, struct store_counts *out)
{
	out->items = st->items;
	out->value_bytes = st->value_bytes;
	out->evictions = st->evictions;
}

void store_unpin_own(struct store *own, _Atomic uint32_t *pin)
{
	uintptr_t a = (uintptr_t)pin, lo = own ? (uintptr_t)own->pins : 0;

	if (!own || a < lo || a >= lo + own->nsegs * sizeof(*pin)) {
		store_unpin(pin);
		return;
	}
	if (atomic_fetch_sub_explicit(pin, 1, memory_order_release) != 1)
		return;
	/* a pinned group is never reset, so its nsegs are those counted */
	struct seg *s = &own->segs[(a - lo) / sizeof(*pin)];
	if (s->pin_counted) {
		s->pin_counted = 0;
		own->pinned_segs -= s->nsegs;
	}
}

_Atomic uint32_t *store_pin(struct store *st, const void *value)
{
	uint64_t loc = (uint64_t)((const uint8_t *)value - st->arena.base);
	int32_t j = (int32_t)store_seg_of(st, loc);

	if (st->segs[j].state == SEG_TAIL)
		j = st->segs[j].cprev;   /* a large item: its group's first segment */
	struct seg *s = &st->segs[j];
	/*
	 * The item is gone and its segment with it (it was the last live one):
	 * the next write may take these bytes, so they are not pinned.  Its
	 * caller reads them now, copying, or should have pinned before the
	 * delete (kv.c's GETDEL once sent other keys' bytes this way).
	 */
	if (s->state == SEG_FREE)
		return NULL;
	/*
	 * A group is counted once until seg_tick() recounts: its last unpin
	 * may come from another thread, unseen here, so counting again at
	 * every pin from 0 would add the same group up to the bound between
	 * two ticks (it did: under 16 readers of one 1 MB value most answers
	 * were copied).  A group not counted yet: within the bound, or the
	 * caller copies.
	 */
	if (!s->pin_counted) {
		if (st->pinned_segs + s->nsegs > st->pin_max) {
			st->pins_refused++;
			return NULL;
		}
		st->pinned_segs += s->nsegs;
		s->pin_counted = 1;
	}
	atomic_fetch_add_explicit(&st->pins[j], 1, memory_order_relaxed);
	return &st->pins[j];
}
