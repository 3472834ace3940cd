/*
 * ring.h - a bounded lock-free single-producer single-consumer ring of
 * pointers, the only way data moves between shards (and between a shard and
 * the coherence thread).
 *
 *      producer line (128 B)          consumer line (128 B)        slots
 *   +---------------------------+ +---------------------------+ +-------+
 *   | tail (published, atomic)  | | head (published, atomic)  | | void* |
 *   | next    (unpublished tail)| | next   (unconsumed head)  | | ...   |
 *   | head_cache                | | tail_cache                | | size  |
 *   +---------------------------+ +---------------------------+ +-------+
 *
 * The producer fills slots at `next` and publishes them in a batch with
 * ring_flush(): a release store of `tail`, paired with the consumer's acquire
 * load, so the slot contents (and whatever the pointers point at) are visible
 * before the new tail on weakly ordered CPUs (ARM64).  The consumer returns
 * slots with a release store of `head`, paired with the producer's acquire
 * load, so it has finished reading a slot before the producer reuses it.
 * Each side caches the other's index and reloads it only when the ring looks
 * full (producer) or empty (consumer), so a steady stream touches the shared
 * lines once per batch.  The two lines are 128 bytes apart because Neoverse
 * cores prefetch lines in pairs.
 *
 * Parking: a consumer about to sleep stores its `parked` flag and then calls
 * ring_peek_sc() on each of its input rings; a producer stores the tail with
 * ring_flush() (sequentially consistent) and then reads the flag.  With both
 * a store followed by a load in seq_cst order, at least one side sees the
 * other, so a wake-up is never lost (the Dekker pattern; fences alone would
 * not be checked by TSan).
 */
#ifndef RINGCACHE_RING_H
#define RINGCACHE_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RING_LINE 128

struct ring {
	alignas(RING_LINE) _Atomic uint32_t tail;
	uint32_t prod_next;
	uint32_t head_cache;

	alignas(RING_LINE) _Atomic uint32_t head;
	uint32_t cons_next;
	uint32_t tail_cache;

	alignas(RING_LINE) uint32_t mask;
	void *slots[];
};

/* size must be a power of two; returns NULL on bad size or no memory. */
struct ring *ring_create(uint32_t size);
void ring_destroy(struct ring *r);

/* Producer: queue one item, unpublished until ring_flush().  False if full. */
static inline bool ring_push(struct ring *r, void *item)
{
	uint32_t t = r->prod_next;

	if (t - r->head_cache > r->mask) {
		r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
		if (t - r->head_cache > r->mask)
			return false;
	}
	r->slots[t & r->mask] = item;
	r->prod_next = t + 1;
	return true;
}

/* Producer: publish everything pushed so far.  True if anything was new. */
static inline bool ring_flush(struct ring *r)
{
	uint32_t t = r->prod_next;

	if (atomic_load_explicit(&r->tail, memory_order_relaxed) == t)
		return false;
	atomic_store_explicit(&r->tail, t, memory_order_seq_cst);
	return true;
}

/* Consumer: next item or NULL.  Slots are returned by ring_release(). */
static inline void *ring_pop(struct ring *r)
{
	uint32_t h = r->cons_next;

	if (h == r->tail_cache) {
		r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (h == r->tail_cache)
			return (void *)0;
	}
	r->cons_next = h + 1;
	return r->slots[h & r->mask];
}

/* Consumer: hand the slots popped so far back to the producer. */
static inline void ring_release(struct ring *r)
{
	if (atomic_load_explicit(&r->head, memory_order_relaxed) != r->cons_next)
		atomic_store_explicit(&r->head, r->cons_next, memory_order_release);
}

/* Consumer, before parking: is anything published?  (seq_cst, see above) */
static inline bool ring_peek_sc(struct ring *r)
{
	return atomic_load_explicit(&r->tail, memory_order_seq_cst) != r->cons_next;
}

#endif
