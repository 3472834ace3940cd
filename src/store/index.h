/*
 * index.h - the store's hash index: 64-byte buckets of eight 8-byte slots,
 * two bucket choices per key, grown one bucket at a time by linear hashing.
 * Internal to the store; owned by one shard, so no locks.
 *
 * Slot (64 bits, 0 = empty):
 *
 *   63            42 41  40 39                                 0
 *  +----------------+---+---+------------------------------------+
 *  | tag (22 bits)  | A | C | item location: byte offset in arena |
 *  +----------------+---+---+------------------------------------+
 *
 *   C: which of the key's two hashes chose this bucket
 *   A: accessed since written or last moved (second chance on eviction)
 *   tag: the chosen hash shifted right by the bucket's level, so the bucket
 *        index (its low `level` bits) and the tag together hold the whole
 *        32-bit hash: a bucket splits and an entry moves to its other choice
 *        without reading the key.  This needs level >= 10 (1024 buckets).
 *
 * The bucket array sits at the start of the arena and grows in place into
 * it: linear hashing adds bucket 2^level + split by splitting bucket `split`
 * on the next hash bit, so the index grows by 64 bytes at a time and the
 * average load stays at the split threshold (7.125 of 8 slots, so 8.98
 * bytes of index per item) instead
 * of halving at each doubling.  Two choices (the low 32 bits of the key hash
 * and a bijective remix of them) with a one-step cuckoo move keep the
 * not-yet-split buckets, which draw from twice the hash space, from
 * overflowing.  When both buckets and every one-step move are full, the
 * insert displaces an entry, which the caller drops (a cache may forget).
 */
#ifndef RINGCACHE_STORE_INDEX_H
#define RINGCACHE_STORE_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INDEX_SLOTS      8u
#define INDEX_BUCKET     64u
#define INDEX_MIN_LEVEL  10u
#define INDEX_LOC_BITS   40u
#define INDEX_LOC_MASK   ((1ull << INDEX_LOC_BITS) - 1)
#define INDEX_CHOICE     (1ull << 40)
#define INDEX_ACCESSED   (1ull << 41)
#define INDEX_TAG_SHIFT  42u

struct index {
	uint64_t *b;        /* buckets, at the start of the arena */
	const uint8_t *base; /* arena base: locations are offsets from it */
	uint64_t nbuckets;  /* 2^level + split */
	uint64_t max_buckets;
	uint64_t used;      /* occupied slots */
	uint64_t displaced; /* entries dropped because both buckets were full */
	uint64_t kick_seed;
	uint32_t split;
	uint32_t level;
};

/* Sets up an empty index of 2^INDEX_MIN_LEVEL buckets at `base`, whose
 * memory the caller has made writable and zero. */
void index_init(struct index *ix, uint8_t *base, uint64_t max_buckets);

static inline uint64_t index_loc(uint64_t slot)
{
	return slot & INDEX_LOC_MASK;
}

/* The slot holding the item with this key, or NULL. */
uint64_t *index_find(struct index *ix, uint32_t h, const void *key, uint32_t key_len);

/* Starts loading both candidate buckets of hash h into the cache. */
void index_prefetch(const struct index *ix, uint32_t h);

/* The slot holding location `loc` for a key of hash h, or NULL: used by
 * segment scans, which know where the item is and only ask if it is live. */
uint64_t *index_find_loc(struct index *ix, uint32_t h, uint64_t loc);

/*
 * Adds an entry for a key known to be absent.  Returns 0, or the location
 * of the entry it displaced to make room (the caller drops that item).
 */
uint64_t index_insert(struct index *ix, uint32_t h, uint64_t loc);

static inline void index_remove(struct index *ix, uint64_t *slot)
{
	*slot = 0;
	ix->used--;
}

/* Points a slot at a moved item and clears its accessed bit. */
static inline void index_relocate(uint64_t *slot, uint64_t loc)
{
	*slot = (*slot & ~(INDEX_LOC_MASK | INDEX_ACCESSED)) | loc;
}

/* Whether the load asks for one more bucket (and the cap allows it).  The
 * threshold, 7.125 entries per bucket (89%), displaced nothing in 8M random
 * inserts; 7.2 (90%) displaced 2 in 3M. */
static inline bool index_wants_split(const struct index *ix)
{
	return ix->nbuckets < ix->max_buckets && ix->used * 8 >= ix->nbuckets * 57;
}

/* Bytes the index needs for one more bucket: the caller makes them usable
 * before index_split(). */
static inline uint64_t index_next_end(const struct index *ix)
{
	return (ix->nbuckets + 1) * INDEX_BUCKET;
}

/* Adds bucket nbuckets by splitting bucket `split`. */
void index_split(struct index *ix);

static inline uint64_t index_bytes(const struct index *ix)
{
	return ix->nbuckets * INDEX_BUCKET;
}

#endif
