/*
 * index.c - linear-hashing, two-choice bucketed index (layout in index.h).
 *
 * Why this shape: the budget is 24 bytes of metadata per item, and an 8-byte
 * slot at the 50-90% load of a doubling table would cost 9-18 bytes alone.
 * Linear hashing grows one 64-byte bucket at a time, so the slots cost
 * 64 / 7.125 = 8.98 bytes per item at any size.  Its known weakness is that
 * buckets not yet split in the current round get twice the keys of split
 * ones; giving each key two buckets and placing it in the emptier one evens
 * that out (the keys that can only land in unsplit buckets are fewer than
 * their share), and a bounded cuckoo walk handles the rest: 8M random
 * inserts at this load displaced nothing.
 *
 * A lookup touches at most two cache lines of index plus the item of each
 * tag match; a tag has 32 - level bits (22 at 1024 buckets, 11 at 2M).
 */
#include <string.h>

#include "index.h"
#include "item.h"
#include "ringcache/bytes.h"

/* A bijection of 32-bit words (lowbias32), and its inverse: the second
 * choice is mix(h), and a second-choice entry recovers h as unmix(x). */
static inline uint32_t mix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

static inline uint32_t unmix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x43021123u;
	x ^= (x >> 15) ^ (x >> 30);
	x *= 0x1d69e2a5u;
	x ^= x >> 16;
	return x;
}

/* The bucket of hash value x and that bucket's level. */
static inline uint64_t addr(const struct index *ix, uint32_t x, unsigned *lvl)
{
	uint64_t a = x & ((1ull << ix->level) - 1);

	if (a < ix->split) {
		a = x & ((1ull << (ix->level + 1)) - 1);
		*lvl = ix->level + 1;
	} else {
		*lvl = ix->level;
	}
	return a;
}

static inline uint64_t level_of(const struct index *ix, uint64_t bucket)
{
	return (bucket < ix->split || bucket >= (1ull << ix->level)) ? ix->level + 1 : ix->level;
}

static inline uint64_t key_bits(uint32_t x, unsigned lvl, bool choice)
{
	return ((uint64_t)(x >> lvl) << INDEX_TAG_SHIFT) | (choice ? INDEX_CHOICE : 0);
}

#define MAX_KICKS 128

#define KEY_MASK ((~0ull << INDEX_TAG_SHIFT) | INDEX_CHOICE)  /* not the accessed bit */

void index_init(struct index *ix, uint8_t *base, uint64_t max_buckets)
{
	memset(ix, 0, sizeof(*ix));
	ix->b = (uint64_t *)base;
	ix->base = base;
	ix->level = INDEX_MIN_LEVEL;
	ix->nbuckets = 1ull << INDEX_MIN_LEVEL;
	ix->max_buckets = max_buckets;
}

static inline bool key_at(const struct index *ix, uint64_t slot, const void *key,
			  uint32_t key_len)
{
	const uint8_t *it = ix->base + index_loc(slot);

	return item_key_len(it) == key_len && bytes_equal(item_key(it), key, key_len);
}

uint64_t *index_find(struct index *ix, uint32_t h, const void *key, uint32_t key_len)
{
	uint32_t h2 = mix(h);
	unsigned l1, l2;
	uint64_t *b1 = ix->b + addr(ix, h, &l1) * INDEX_SLOTS;
	uint64_t *b2 = ix->b + addr(ix, h2, &l2) * INDEX_SLOTS;
	uint64_t k1 = key_bits(h, l1, false), k2 = key_bits(h2, l2, true);

	__builtin_prefetch(b2);
	for (unsigned i = 0; i < INDEX_SLOTS; i++) {
		uint64_t s = b1[i];
		if (s && (s & KEY_MASK) == k1 && key_at(ix, s, key, key_len))
			return &b1[i];
	}
	for (unsigned i = 0; i < INDEX_SLOTS; i++) {
		uint64_t s = b2[i];
		if (s && (s & KEY_MASK) == k2 && key_at(ix, s, key, key_len))
			return &b2[i];
	}
	return NULL;
}

void index_prefetch(const struct index *ix, uint32_t h)
{
	unsigned l;

	__builtin_prefetch(ix->b + addr(ix, h, &l) * INDEX_SLOTS);
	__builtin_prefetch(ix->b + addr(ix, mix(h), &l) * INDEX_SLOTS);
}

uint64_t *index_find_loc(struct index *ix, uint32_t h, uint64_t loc)
{
	uint32_t h2 = mix(h);
	unsigned l1, l2;
	uint64_t *b1 = ix->b + addr(ix, h, &l1) * INDEX_SLOTS;
	uint64_t *b2 = ix->b + addr(ix, h2, &l2) * INDEX_SLOTS;
	uint64_t k1 = key_bits(h, l1, false) | loc, k2 = key_bits(h2, l2, true) | loc;
	const uint64_t m = KEY_MASK | INDEX_LOC_MASK;

	for (unsigned i = 0; i < INDEX_SLOTS; i++)
		if ((b1[i] & m) == k1)
			return &b1[i];
	for (unsigned i = 0; i < INDEX_SLOTS; i++)
		if ((b2[i] & m) == k2)
			return &b2[i];
	return NULL;
}

static inline int free_slot(const uint64_t *b)
{
	for (unsigned i = 0; i < INDEX_SLOTS; i++)
		if (!b[i])
			return (int)i;
	return -1;
}

static inline unsigned free_count(const uint64_t *b)
{
	unsigned n = 0;

	for (unsigned i = 0; i < INDEX_SLOTS; i++)
		n += !b[i];
	return n;
}

/* Tries to move the entry in slot i of bucket `bucket` to its other choice. */
static bool move_out(struct index *ix, uint64_t bucket, unsigned i)
{
	uint64_t s = ix->b[bucket * INDEX_SLOTS + i];
	unsigned lvl = (unsigned)level_of(ix, bucket), olvl;
	bool choice = s & INDEX_CHOICE;
	uint32_t x = (uint32_t)(((s >> INDEX_TAG_SHIFT) << lvl) | bucket);
	uint32_t other = choice ? unmix(x) : mix(x);
	uint64_t ob = addr(ix, other, &olvl);
	uint64_t *obp = ix->b + ob * INDEX_SLOTS;
	int j;

	if (ob == bucket || (j = free_slot(obp)) < 0)
		return false;
	obp[j] = key_bits(other, olvl, !choice) | (s & (INDEX_ACCESSED | INDEX_LOC_MASK));
	ix->b[bucket * INDEX_SLOTS + i] = 0;
	return true;
}

/*
 * Both buckets of a new entry are full and no entry of theirs can step
 * aside: a cuckoo random walk.  The new entry takes a slot in `bucket`, the
 * entry it pushed out goes to its other bucket, pushing out another if that
 * is full, up to MAX_KICKS times.  Returns 0, or the location of the entry
 * left without a place (the caller drops that item).
 */
static uint64_t kick(struct index *ix, uint64_t bucket, uint64_t e)
{
	for (unsigned n = 0; n < MAX_KICKS; n++) {
		unsigned i;
		uint64_t *b = ix->b + bucket * INDEX_SLOTS;
		unsigned lvl = (unsigned)level_of(ix, bucket), olvl;
		uint64_t out, ob;
		uint32_t x, other;
		bool choice;
		int j;

		ix->kick_seed = ix->kick_seed * 6364136223846793005ull + 1442695040888963407ull;
		i = (unsigned)(ix->kick_seed >> 61);
		out = b[i];
		choice = out & INDEX_CHOICE;
		x = (uint32_t)(((out >> INDEX_TAG_SHIFT) << lvl) | bucket);
		other = choice ? unmix(x) : mix(x);
		ob = addr(ix, other, &olvl);
		b[i] = e;
		e = key_bits(other, olvl, !choice) | (out & (INDEX_ACCESSED | INDEX_LOC_MASK));
		bucket = ob;
		j = free_slot(ix->b + ob * INDEX_SLOTS);
		if (j >= 0) {
			ix->b[ob * INDEX_SLOTS + (unsigned)j] = e;
			return 0;
		}
	}
	ix->used--;
	ix->displaced++;
	return index_loc(e);
}

uint64_t index_insert(struct index *ix, uint32_t h, uint64_t loc)
{
	uint32_t h2 = mix(h);
	unsigned l1, l2;
	uint64_t a1 = addr(ix, h, &l1), a2 = addr(ix, h2, &l2);
	uint64_t *b1 = ix->b + a1 * INDEX_SLOTS, *b2 = ix->b + a2 * INDEX_SLOTS;
	uint64_t e1 = key_bits(h, l1, false) | loc, e2 = key_bits(h2, l2, true) | loc;
	unsigned f1 = free_count(b1), f2 = free_count(b2);

	ix->used++;
	if (f1 && f1 >= f2) {
		b1[free_slot(b1)] = e1;
		return 0;
	}
	if (f2) {
		b2[free_slot(b2)] = e2;
		return 0;
	}
	for (unsigned i = 0; i < INDEX_SLOTS; i++) {
		if (move_out(ix, a1, i)) {
			b1[i] = e1;
			return 0;
		}
	}
	for (unsigned i = 0; i < INDEX_SLOTS; i++) {
		if (move_out(ix, a2, i)) {
			b2[i] = e2;
			return 0;
		}
	}
	return kick(ix, a1, e1);
}

void index_split(struct index *ix)
{
	uint64_t from = ix->split;
	uint64_t to = (1ull << ix->level) + ix->split;
	uint64_t *src = ix->b + from * INDEX_SLOTS, *dst = ix->b + to * INDEX_SLOTS;
	unsigned n = 0;

	for (unsigned i = 0; i < INDEX_SLOTS; i++) {
		uint64_t s = src[i];
		uint64_t tag = s >> INDEX_TAG_SHIFT;

		dst[i] = 0;
		if (!s)
			continue;
		s = ((tag >> 1) << INDEX_TAG_SHIFT) | (s & (INDEX_CHOICE | INDEX_ACCESSED | INDEX_LOC_MASK));
		if (tag & 1) {
			dst[n++] = s;
			src[i] = 0;
		} else {
			src[i] = s;
		}
	}
	ix->nbuckets++;
	if (++ix->split == (1u << ix->level)) {
		ix->split = 0;
		ix->level++;
	}
}
