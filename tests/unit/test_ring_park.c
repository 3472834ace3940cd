/*
 * test_ring_park.c - the parking handshake of ring.h as a litmus test, run
 * with the real ring functions by two threads.  It is the store-buffering
 * pattern (Dekker):
 *
 *   producer (a peer shard):   ring_push, ring_flush   store tail (seq_cst)
 *                              then load parked        (seq_cst): ring if 1
 *   consumer (parking shard):  store parked = 1        (seq_cst)
 *                              then ring_peek_sc       load tail (seq_cst): stay if new
 *
 * The forbidden outcome is both loads reading the old value: the producer
 * rings no doorbell and the consumer parks with the item published, a lost
 * wake-up (up to a park's timeout late; for ever for work nothing else
 * revisits).  Release/acquire alone allows it on x86 (the store buffer) and
 * on ARM64 alike (docs/design notes: 5K lost per 2M rounds here), so a
 * weakened ring_flush() or ring_peek_sc() makes this fail; seq_cst on all
 * four accesses forbids it.  shard.c enter()/shard_wake(), zip.c park()/
 * wake_worker() and coh.c/msg.c use this same pairing.
 *
 * A litmus test can only ever show the outcome, not prove its absence: it
 * runs ROUNDS rounds, each started by both threads together (a spin
 * barrier) so that their accesses overlap.  Cross-build it to run it on an
 * ARM64 host.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "ringcache/ring.h"

#define ROUNDS 200000u
#define SPINS_BEFORE_YIELD 1024 /* the machine may be shared: do not hog it */

struct litmus {
	struct ring *r;
	alignas(RING_LINE) _Atomic int parked;
	alignas(RING_LINE) _Atomic unsigned arrived;    /* two-party barrier */
	_Atomic unsigned gen;
	alignas(RING_LINE) int saw_parked;              /* producer's load, this round */
	int saw_item;                                   /* consumer's load, this round */
	unsigned lost, rang, stayed, both, missing;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Both threads leave together; everything before it is visible after it
 * (acq_rel on arrived, release/acquire on gen). */
static void barrier(struct litmus *l)
{
	unsigned g = atomic_load_explicit(&l->gen, memory_order_acquire);

	if (atomic_fetch_add_explicit(&l->arrived, 1, memory_order_acq_rel) == 1) {
		atomic_store_explicit(&l->arrived, 0, memory_order_relaxed);
		atomic_store_explicit(&l->gen, g + 1, memory_order_release);
		return;
	}
	for (unsigned spins = 0; atomic_load_explicit(&l->gen, memory_order_acquire) == g;
	     spins++) {
		if (spins >= SPINS_BEFORE_YIELD)
			sched_yield();
		else
			cpu_relax();
	}
}

static void *producer(void *arg)
{
	struct litmus *l = arg;
	static int item;

	for (unsigned i = 0; i < ROUNDS; i++) {
		barrier(l);
		ring_push(l->r, &item);
		ring_flush(l->r);       /* the peer's fwd_flush() */
		l->saw_parked = atomic_load_explicit(&l->parked, memory_order_seq_cst);
		barrier(l);             /* the consumer judges the round */
		barrier(l);             /* and resets it */
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct litmus *l = arg;

	for (unsigned i = 0; i < ROUNDS; i++) {
		barrier(l);
		atomic_store_explicit(&l->parked, 1, memory_order_seq_cst); /* enter() */
		l->saw_item = ring_peek_sc(l->r);
		barrier(l);
		l->lost += !l->saw_parked && !l->saw_item;
		l->rang += l->saw_parked && !l->saw_item;
		l->stayed += !l->saw_parked && l->saw_item;
		l->both += l->saw_parked && l->saw_item;
		/* what the shard does after the round: takes the item, unparks */
		l->missing += ring_pop(l->r) == NULL;
		ring_release(l->r);
		atomic_store_explicit(&l->parked, 0, memory_order_relaxed);
		barrier(l);
	}
	return NULL;
}

int main(void)
{
	struct litmus *l = aligned_alloc(RING_LINE, sizeof(*l));
	pthread_t p, c;

	if (!l)
		return 1;
	*l = (struct litmus){ .r = ring_create(2) };
	CHECK(l->r != NULL);
	if (!l->r)
		return check_done("test_ring_park");
	CHECK(pthread_create(&c, NULL, consumer, l) == 0);
	CHECK(pthread_create(&p, NULL, producer, l) == 0);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	printf("%u rounds: producer rang %u, consumer stayed up %u, both %u, lost wake-ups %u\n",
	       ROUNDS, l->rang, l->stayed, l->both, l->lost);
	CHECK_EQ(l->lost, 0);
	CHECK_EQ(l->missing, 0);        /* every round's item was there after it */
	CHECK_EQ(l->rang + l->stayed + l->both + l->lost, ROUNDS);
	ring_destroy(l->r);
	free(l);
	return check_done("test_ring_park");
}
