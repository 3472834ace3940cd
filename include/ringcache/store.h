/*
 * store.h - the per-shard L1 store: one instance per shard, owned by that
 * shard's thread alone, so nothing here locks or uses atomics.
 *
 * The store maps a binary key (1..STORE_KEY_MAX bytes) to a value blob.  It
 * does not interpret the blob: the cache layer packs the content type and
 * the pre-compressed variants into it and keeps a few bits of its own in
 * `flags`: 8 bits, opaque to the store, kept in one header byte when
 * non-zero (one byte, not two, keeps every item's metadata within 24 bytes:
 * see src/store/item.h).  Every call takes the key's 64-bit hash
 * (hash_bytes(), computed once by the shard that parsed the request) so the
 * key is hashed only once.
 * The shard selection uses the hash's top bits (see shard_of_hash()), so the
 * store must draw its bucket index and tags from the other bits.
 *
 * Every write gets a 32-bit `stamp` that costs no byte per item: it is
 * derived from where the write landed (segment generation, arena offset)
 * through a hash keyed per store at random, so two writes of a key share a
 * stamp with probability 2^-32 in the same process or across restarts.  The
 * cache folds it into its ETags next to the content hash (`etag`), so a
 * changed value keeps its ETag only if both halves collide.  A copy made by
 * compaction is a new placement and gets a new stamp.  docs/store.md has
 * the argument.
 *
 * Time is given to the store by store_tick() (seconds on the caller's clock,
 * monotonic, never 0); expiry is decided against the last tick, which lets a
 * unit test drive the clock by hand.
 *
 * Errors are -errno: -ENOENT (miss), -E2BIG (value over max_value or larger
 * than the store could ever hold), -EINVAL (bad key length), -ENOMEM (could
 * not make room, for example when everything is pinned).
 */
#ifndef RINGCACHE_STORE_H
#define RINGCACHE_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define STORE_KEY_MAX 1024u

struct store;

enum store_hugepages {
	STORE_HUGEPAGES_AUTO = 0, /* hugetlb, then THP, then normal pages */
	STORE_HUGEPAGES_ON,       /* hugetlb or fail with -ENOMEM */
	STORE_HUGEPAGES_OFF,      /* normal pages */
};

/* What backs the arena, reported by store_stats() and logged at startup. */
enum store_backing {
	STORE_BACKING_HUGETLB = 0,
	STORE_BACKING_THP,
	STORE_BACKING_NORMAL,
};

struct store_config {
	size_t memory;                  /* bytes this shard may use, index included */
	size_t max_value;               /* largest value blob accepted */
	enum store_hugepages hugepages;
	bool prefault;                  /* touch the whole arena at creation */
	int numa_node;                  /* -1: first touch by the calling thread */
	uint64_t stamp_seed;            /* 0: the stamp key comes from getrandom(); tests
					 * and benchmarks set one to repeat a run exactly */
};

/*
 * A read-only view of an item.  The pointers stay valid until the next call
 * that may change the store (set, delete, tick) on the same store.
 */
struct store_item {
	const uint8_t *value;
	uint32_t value_len;
	uint32_t expires;   /* absolute time on the store clock; 0: never */
	uint32_t etag;      /* as given to store_set() */
	uint32_t stamp;     /* this placement's stamp, as store_set() reported it
			     * unless compaction has moved the item since */
	uint8_t flags;      /* as given to store_set(); 8 bits, opaque to the store */
};

struct store_stats {
	uint64_t items;
	uint64_t key_bytes;
	uint64_t value_bytes;
	uint64_t arena_bytes;      /* bytes reserved for items and index */
	uint64_t used_bytes;       /* bytes in segments/slabs holding live or dead items */
	uint64_t evictions;        /* items dropped to make room */
	uint64_t expirations;      /* items dropped because their TTL passed */
	uint64_t sets, gets, hits, deletes; /* calls; deletes: those that removed an item */
	enum store_backing backing;
	/* added by the store engine (issue 3) */
	uint64_t live_bytes;       /* headers + keys + values of live items */
	uint64_t index_bytes;      /* part of arena_bytes the index occupies */
	uint64_t index_slots_used; /* includes entries of dropped segments not yet reclaimed */
	uint64_t compacted;        /* live items copied forward instead of evicted */
	uint64_t flushed;          /* items dropped by store_flush() */
	uint64_t displaced;        /* evictions because both index buckets were full */
	uint64_t segment_size;
	uint64_t segments;         /* segments for items (excluding the index's) */
	uint64_t segments_free;
	uint64_t segments_pinned;  /* released, waiting for sends that read them */
	uint64_t pins_refused;     /* store_pin() calls refused at its bound */
	uint64_t page_size;        /* of the backing */
};

/* Creates a store with its arena; call it from the owning (pinned) thread. */
int store_create(struct store **out, const struct store_config *cfg);
void store_destroy(struct store *st);

/* Advances the store clock to `now` and does a bounded slice of background
 * work (reclaiming expired items).  Call it at least once a second. */
void store_tick(struct store *st, uint32_t now);

int store_get(struct store *st, const void *key, size_t key_len, uint64_t hash,
	      struct store_item *out);

/* What a successful store_set() did, for a caller that asks. */
struct store_set_info {
	uint32_t stamp;         /* the write's stamp: what store_get() reports
				 * until the item moves */
	bool replaced;          /* the key had a live item when the write landed
				 * (one evicted to make room for it does not count) */
};

/*
 * Stores the concatenation of iov[0..iovcnt) as the value of `key`, replacing
 * any previous value.  ttl == 0: never expires (until evicted).  On success,
 * *info (unless NULL) says what it did; it is left alone on failure.
 */
int store_set(struct store *st, const void *key, size_t key_len, uint64_t hash,
	      const struct iovec *iov, int iovcnt, uint32_t ttl, uint8_t flags,
	      uint32_t etag, struct store_set_info *info);

/* Whether `key` has a live item.  Unlike store_get() it counts no get or
 * hit and does not mark the item as read (eviction's second chance), so a
 * writer can ask before replacing a value.  (Added by the store engine.) */
bool store_contains(struct store *st, const void *key, size_t key_len, uint64_t hash);

/* 0 if it was there, -ENOENT if not. */
int store_delete(struct store *st, const void *key, size_t key_len, uint64_t hash);

/* Drops every item stored before store time `older_than` (coherence uses it
 * after losing its invalidation feed).  Returns the number dropped. */
uint64_t store_flush(struct store *st, uint32_t older_than);

void store_stats(const struct store *st, struct store_stats *out);

/* The counts a write or a delete changes, cheaply (store_stats() walks
 * the segments): items, bytes of values, evictions so far. */
struct store_counts {
	uint64_t items, value_bytes, evictions;
};
void store_counts(const struct store *st, struct store_counts *out);

/*
 * Pins the segment holding `value` (a pointer store_get() returned, into
 * the item's bytes): until as many store_unpin() calls as pins, those bytes
 * stay where they are, unchanged, even if the item is overwritten, deleted,
 * evicted, expired or flushed meanwhile (its segment is not reused; writes
 * are never blocked by it, they only find less room).  For a send that
 * reads a value after the store has moved on.  Owner thread only; returns
 * the counter to hand to store_unpin(), or NULL when pinning it would put
 * more than a quarter of the store's segments under pins (the caller then
 * copies the value): readers that do not read cannot hold the store.  NULL
 * too for a value whose segment was freed already (its item deleted as its
 * segment's last): pin before deleting, or copy at once.
 */
_Atomic uint32_t *store_pin(struct store *st, const void *value);

/* Any thread, once the bytes are no longer read. */
static inline void store_unpin(_Atomic uint32_t *pin)
{
	atomic_fetch_sub_explicit(pin, 1, memory_order_release);
}

/*
 * store_unpin() by the owner thread of `own`: when `pin` is one of own's and
 * this was its group's last pin, the group leaves the pin bound at once
 * instead of at the next store_tick() (which is when the last unpins of
 * other threads are seen).  Pins of other stores, or own NULL: store_unpin().
 */
void store_unpin_own(struct store *own, _Atomic uint32_t *pin);

/*
 * Grows the index now to what `items` entries will need, as store_set()
 * would one bucket at a time (taking segments from the top of the arena,
 * evicting what they hold, at most half the arena).  For a loader that
 * knows how many items come: on an empty store it moves nothing, and the
 * sets then insert into an index below its usual load.
 */
void store_reserve(struct store *st, uint64_t items);

/* Starts loading the index buckets of a key's hash into the cache: a
 * caller with many keys at hand prefetches a few ahead of its store_set()s
 * so their cache misses overlap. */
void store_prefetch(const struct store *st, uint64_t hash);

/* The store clock: what the last store_tick() gave (1 before any). */
uint32_t store_now(const struct store *st);

/*
 * Walking the live items (src/store/iter.c), for a snapshot: segment by
 * segment, oldest segments first, each segment's items in the order they
 * were written.  Expired items are left out.  Between two calls the owner
 * may call store_get(), store_delete(), store_flush() and store_tick() (an
 * item deleted or dropped meanwhile is not returned), but not store_set()
 * or anything else that writes: a write could reuse space the walk has not
 * reached.  The entry's pointers are valid as store_get()'s are.  Owner
 * thread only.
 */
struct store_iter;

struct store_entry {
	const uint8_t *key;
	uint32_t key_len;
	struct store_item item;
};

/* 0 or -ENOMEM (it holds one int32 per segment). */
int store_iter_create(struct store *st, struct store_iter **out);
/* 0 with the next live item in *out, or -ENOENT at the end. */
int store_iter_next(struct store_iter *it, struct store_entry *out);
void store_iter_destroy(struct store_iter *it);

const char *store_backing_name(enum store_backing b);

#endif
