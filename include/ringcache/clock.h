/*
 * clock.h - the daemon's clocks.  The store clock is CLOCK_MONOTONIC in whole
 * seconds plus one (never 0, so 0 can mean "no expiry"); every thread of the
 * process reads the same clock, so a time taken by the coherence thread can
 * be compared with an item's time in a shard's store.
 */
#ifndef RINGCACHE_CLOCK_H
#define RINGCACHE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint32_t clock_store_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)ts.tv_sec + 1;
}

#endif
