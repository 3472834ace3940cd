/*
 * hash.h - the one 64-bit hash used for key partitioning, the store index and
 * ETags.  Not cryptographic: the key hash's defence against chosen keys is a
 * secret per-process seed (hash_key_seed).
 */
#ifndef RINGCACHE_HASH_H
#define RINGCACHE_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash_bytes(const void *p, size_t n, uint64_t seed);

/*
 * The key hash: which shard owns a key and where the store indexes it.  Its
 * seed is secret and per process (hash_key_seed_random() at start), so no
 * client can compute keys that all land on one shard and one pair of index
 * buckets.  Nothing outside the process depends on it: the coherence thread
 * and the shards of one process share it, and Redis sees keys, not hashes.
 *
 * Until the daemon seeds it, it is HASH_KEY_SEED_DEFAULT, a public constant
 * that unit tests and benchmarks rely on (and `--hash-seed` can restore, for
 * tests that must predict the owner shard of a key).  Set it only before any
 * other thread starts: it is read without synchronisation afterwards.
 */
#define HASH_KEY_SEED_DEFAULT 0x72696e6763616368ull

extern uint64_t hash_key_seed;

static inline uint64_t hash_key(const void *p, size_t n)
{
	return hash_bytes(p, n, hash_key_seed);
}

/* Draws hash_key_seed from getrandom(); 0 or -errno. */
int hash_key_seed_random(void);

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
