/*
 * hash.h - the one 64-bit hash used for key partitioning, the store index and
 * ETags.  Not cryptographic; seeded so a fleet can choose a secret seed.
 */
#ifndef RINGCACHE_HASH_H
#define RINGCACHE_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash_bytes(const void *p, size_t n, uint64_t seed);

/* Seed of the key hash.  Fixed, so every instance of a fleet and every run
 * map a key to the same hash (ETags built from it stay stable too). */
#define HASH_KEY_SEED 0x72696e6763616368ull

/*
 * The shard that owns a key: the hash's top 32 bits scaled into [0, n)
 * (multiply-shift, no division).  The store draws its bucket index and tags
 * from the low 32 bits, so the two choices stay independent.
 */
static inline unsigned hash_shard(uint64_t h, unsigned n)
{
	return (unsigned)(((h >> 32) * (uint64_t)n) >> 32);
}

#endif
