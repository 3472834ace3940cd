/*
 * test_ring.c - the SPSC ring: ordering and fullness in one thread, then a
 * two-thread stress test in which every item must arrive exactly once and in
 * order, with the producer flushing in batches of varying size.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "ringcache/ring.h"

#define STRESS_ITEMS 2000000u

static void single_thread(void)
{
	CHECK(ring_create(3) == NULL);
	CHECK(ring_create(0) == NULL);

	struct ring *r = ring_create(8);
	CHECK(r != NULL);
	CHECK(ring_pop(r) == NULL);
	for (uintptr_t i = 1; i <= 8; i++)
		CHECK(ring_push(r, (void *)i));
	CHECK(!ring_push(r, (void *)9));           /* full */
	CHECK(ring_pop(r) == NULL);                /* nothing published yet */
	CHECK(!ring_peek_sc(r));
	CHECK(ring_flush(r));
	CHECK(!ring_flush(r));                     /* nothing new */
	CHECK(ring_peek_sc(r));
	for (uintptr_t i = 1; i <= 4; i++)
		CHECK_EQ((uintptr_t)ring_pop(r), i);
	CHECK(!ring_push(r, (void *)9));           /* slots not released yet */
	ring_release(r);
	CHECK(ring_push(r, (void *)9));
	ring_flush(r);
	for (uintptr_t i = 5; i <= 9; i++)
		CHECK_EQ((uintptr_t)ring_pop(r), i);
	CHECK(ring_pop(r) == NULL);
	ring_release(r);
	ring_destroy(r);
	ring_destroy(NULL);
}

struct stress {
	struct ring *r;
	uint64_t bad_order;
	uint64_t received;
};

static void *producer(void *arg)
{
	struct stress *s = arg;
	uint32_t batch = 0, limit = 1;

	for (uintptr_t i = 1; i <= STRESS_ITEMS; i++) {
		while (!ring_push(s->r, (void *)i)) {
			ring_flush(s->r);
			sched_yield();  /* full: let the consumer run (2 CPUs, shared) */
		}
		if (++batch >= limit) {
			ring_flush(s->r);
			batch = 0;
			limit = limit % 31 + 1;       /* batches of 1..31 */
		}
	}
	ring_flush(s->r);
	return NULL;
}

static void *consumer(void *arg)
{
	struct stress *s = arg;
	uintptr_t expect = 1;

	while (expect <= STRESS_ITEMS) {
		void *p;
		unsigned n = 0;
		while ((p = ring_pop(s->r)) != NULL) {
			if ((uintptr_t)p != expect)
				s->bad_order++;
			expect = (uintptr_t)p + 1;
			s->received++;
			if (++n == 16)
				break;
		}
		ring_release(s->r);
		if (!n)
			sched_yield();  /* empty: let the producer run */
	}
	return NULL;
}

static void two_threads(uint32_t size)
{
	struct stress s = { .r = ring_create(size) };
	pthread_t p, c;

	CHECK(s.r != NULL);
	pthread_create(&c, NULL, consumer, &s);
	pthread_create(&p, NULL, producer, &s);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	CHECK_EQ(s.bad_order, 0);
	CHECK_EQ(s.received, STRESS_ITEMS);
	CHECK(ring_pop(s.r) == NULL);
	ring_destroy(s.r);
}

int main(void)
{
	single_thread();
	two_threads(2);
	two_threads(128);
	return check_done("ring");
}
