/*
 * store_int.h - the store's internal state, shared by store.c (the public
 * calls) and seg.c (segments: allocation, eviction, expiry, reclamation).
 *
 * Arena layout (one mapping, `nsegs` segments of `seg_size` bytes):
 *
 *   0                    index_segs * seg_size                   arena end
 *   +-------------------+-----+-----+-----+-----+-----+-----+-----+
 *   | index buckets --> | seg | seg | seg | seg | seg | seg | seg |
 *   +-------------------+-----+-----+-----+-----+-----+-----+-----+
 *     grows upward,       free segments are handed out from the top,
 *     one segment at a    so the index rarely has to take one that
 *     time                holds items
 *
 * A segment is written front to back by one TTL class (items whose TTLs are
 * within a factor of two share segments, so a segment expires as a whole at
 * about the time its items do).  A value that does not fit a segment takes a
 * run of contiguous segments (a "large" group) of its own.
 *
 * Segment states:
 *   FREE      on the free list
 *   INDEX     owned by the index
 *   HEAD      open for writes of its class (st->head[cls])
 *   SEALED    full; on the FIFO and its class list
 *   LARGE     first segment of a large group; on the FIFO and class list
 *   TAIL      the rest of a large group (cprev names the group's first)
 *   RECLAIM   dropped (flushed or expired) but its index entries are still
 *             there: items in it are "ghosts", never served, and the
 *             reclaim pass removes them before freeing the segment
 *   VICTIM    being emptied (st->bg, or a drop in progress): its items
 *             are still served until the scan reaches them
 *   PINNED    released while a send still reads a value in it (store_pin):
 *             on the `pinned` list until its pin count is back to 0, then
 *             FREE.  Its items are gone from the index; their bytes stay.
 *
 * Stamps: each segment has a generation, `gen`, bumped every time it is
 * opened for items (a head, or the first segment of a large group) and
 * never reset, not even when the segment is freed.  Items are written only
 * at a head's write_off or at the start of a large group, and write_off only
 * grows while the segment stays open, so a (generation, arena offset) pair
 * names one placement for the store's life (until one segment is reopened
 * 2^32 times).  store_stamp() hashes that pair with the store's random key.
 */
#ifndef RINGCACHE_STORE_INT_H
#define RINGCACHE_STORE_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "index.h"
#include "item.h"
#include "ringcache/store.h"

enum seg_state {
	SEG_FREE = 0,
	SEG_INDEX,
	SEG_HEAD,
	SEG_SEALED,
	SEG_LARGE,
	SEG_TAIL,
	SEG_RECLAIM,
	SEG_VICTIM,
	SEG_PINNED,
};

#define SEG_NONE      (-1)
#define STORE_CLASSES 33   /* 0: no TTL; c >= 1: TTL in [2^(c-1), 2^c) */

struct seg {
	uint64_t write_off;  /* bytes written from the segment's start */
	uint32_t live_items;
	uint32_t live_hdr;   /* header bytes of live items */
	uint32_t live_key;
	uint32_t live_val;
	uint32_t created;    /* store time the segment was opened */
	uint32_t stored_min; /* oldest store time of anything in it (flush) */
	uint32_t max_exp;    /* latest expiry of its items; 0 for class 0 */
	uint32_t nsegs;      /* segments in this group (1 unless large) */
	int32_t prev, next;   /* free list, FIFO or reclaim list */
	int32_t cprev, cnext; /* class list; cprev: group head for TAIL */
	uint32_t gen;         /* bumped each time the segment is opened; see stamps */
	uint8_t state;
	uint8_t cls;
	uint8_t pin_counted;  /* group head: its nsegs are in pinned_segs (store_pin) */
};

/* One segment, one 64-byte line: the stamp's `gen` is read beside `state`,
 * which every lookup reads anyway.  The table is allocated 64-byte aligned. */
_Static_assert(sizeof(struct seg) == 64, "struct seg is one cache line");

struct seg_list {
	int32_t head, tail;
	uint32_t n;
};

/* A segment being emptied, with where the scan is. */
struct victim {
	int32_t seg;      /* SEG_NONE when there is none */
	bool compact;     /* give live items their second chance */
	bool sparse;      /* at most 3/4 live when chosen: copy every live item */
	uint64_t off;     /* next item to look at */
	uint64_t copied;  /* bytes copied forward so far */
};

struct store {
	struct arena arena;
	struct index ix;
	struct seg *segs;
	uint32_t nsegs;
	uint32_t seg_shift;
	uint64_t seg_size;
	uint32_t index_segs;   /* segments [0, index_segs) belong to the index */
	uint32_t now;
	uint64_t max_value;
	uint64_t stamp_key[4]; /* random per store: see store_stamp() */

	struct seg_list free;
	struct seg_list fifo;  /* SEALED and LARGE, oldest first */
	struct seg_list reclaim;
	struct seg_list pinned; /* PINNED, waiting for their sends */
	/* Sends reading a value in the segment (group head), one counter per
	 * segment beside the table: the owner adds (store_pin), any thread takes
	 * away with a release (store_unpin), the owner reads with an acquire
	 * before it reuses the segment. */
	_Atomic uint32_t *pins;
	/* Segments with pins, an upper bound the owner keeps (it sees every
	 * first pin; the last unpin happens elsewhere): recounted each tick.
	 * store_pin() refuses a new segment past pin_max, so a reader that
	 * never reads cannot hold more than that much of the store. */
	uint32_t pinned_segs;
	uint32_t pin_max;
	uint64_t pins_refused;      /* store_stats() */
	struct seg_list cls[STORE_CLASSES];
	int32_t head[STORE_CLASSES];
	uint64_t reclaim_off;  /* scan cursor in reclaim.head */
	struct victim bg;      /* emptied a slice per write, ahead of need */

	/* live totals, and counters for store_stats() */
	uint64_t items, hdr_bytes, key_bytes, value_bytes;
	uint64_t evictions, expirations, compacted, flushed;
	uint64_t sets, gets, hits, deletes;
};

static inline uint8_t *store_ptr(const struct store *st, uint64_t loc)
{
	return st->arena.base + loc;
}

static inline uint32_t store_seg_of(const struct store *st, uint64_t loc)
{
	return (uint32_t)(loc >> st->seg_shift);
}

/*
 * The stamp of the item placed at loc: the top 32 bits of
 * k3 + k0*gen + k1*(loc mod 2^32) + k2*(loc >> 32), mod 2^64, with the key
 * k drawn at random per store.  That is Thorup's multiply-add-shift scheme
 * for a vector of 32-bit words ("High Speed Hashing for Integers and
 * Strings", 2015, sec. 3.3): with 64-bit arithmetic and a 32-bit output it
 * is strongly universal, so two different (gen, loc) pairs get the same
 * stamp with probability exactly 2^-32 over the key, whatever the pairs are.
 * Three multiplies; `gen` sits in the segment's line, which the lookup has
 * already read (seg_is_ghost).
 */
static inline uint32_t store_stamp(const struct store *st, uint64_t loc)
{
	uint64_t gen = st->segs[loc >> st->seg_shift].gen;

	return (uint32_t)((st->stamp_key[3] + st->stamp_key[0] * gen +
			   st->stamp_key[1] * (uint32_t)loc + st->stamp_key[2] * (loc >> 32)) >> 32);
}

static inline bool store_expired(const struct store *st, uint32_t expires)
{
	return expires && expires <= st->now;
}

static inline unsigned store_class(uint32_t ttl)
{
	return ttl ? 32u - (unsigned)__builtin_clz(ttl) : 0;
}

/* seg.c */
int seg_setup(struct store *st);
void seg_teardown(struct store *st);

/* Room for an item of `size` bytes (size <= seg_size) in class `cls`'s head,
 * evicting as needed.  Returns its location, or -errno. */
int64_t seg_alloc(struct store *st, unsigned cls, uint64_t size);

/* A run of segments for an item larger than a segment.  Returns its
 * location, or -E2BIG when the store could never hold it. */
int64_t seg_alloc_large(struct store *st, unsigned cls, uint64_t size);

/* Accounts a newly written item at loc (stats, segment counters, expiry). */
void seg_add_item(struct store *st, uint64_t loc, const struct item_hdr *h);

/* Drops the item at loc, whose index slot the caller has cleared: marks it
 * dead and takes it off the live counts (no-op for a ghost).  Returns false
 * if it was a ghost (its segment already dropped). */
bool seg_drop_item(struct store *st, uint64_t loc, const struct item_hdr *h);

/* Whether the item at loc is a ghost (in a dropped segment). */
static inline bool seg_is_ghost(const struct store *st, uint64_t loc)
{
	return st->segs[store_seg_of(st, loc)].state == SEG_RECLAIM;
}

/* Makes the index able to add one bucket (may take a segment).  false when
 * the index is at its cap. */
bool seg_grow_index(struct store *st);

/* Bounded background work: expired segments, reclamation. */
void seg_tick(struct store *st);

/* Drops every segment holding anything stored before older_than. */
uint64_t seg_flush(struct store *st, uint32_t older_than);

#endif
