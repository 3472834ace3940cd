/*
 * hash.c - a small multiply-fold hash (the 64x64->128 "fold" that wyhash and
 * mum-hash popularised): two 8-byte lanes per multiply for long inputs, one
 * multiply for the tail, one to finalise.  Short keys (the common case) cost
 * two or three multiplies.  Reads are done with memcpy, so any alignment is
 * fine on x86-64 and ARM64 alike; the result depends on byte order, which is
 * little-endian on every platform we ship.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "ringcache/hash.h"

#define K0 0x9e3779b97f4a7c15ull
#define K1 0xbf58476d1ce4e5b9ull
#define K2 0x94d049bb133111ebull
#define K3 0xd6e8feb86659fd93ull

static inline uint64_t fold(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64_t load32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* The n < 8 bytes at p as a little-endian number, in at most two loads:
 * what memcpy(&t, p, n) into a zeroed t gives, without a call.  The two
 * loads may overlap; their common bytes land in the same places. */
static inline uint64_t load_tail(const uint8_t *p, size_t n)
{
	if (n >= 4)
		return load32(p) | load32(p + n - 4) << (8 * (n - 4));
	return (uint64_t)p[0] | (uint64_t)p[n / 2] << (8 * (n / 2)) |
	       (uint64_t)p[n - 1] << (8 * (n - 1));
}

uint64_t hash_bytes(const void *data, size_t n, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = seed ^ K0 ^ ((uint64_t)n * K1);

	while (n >= 16) {
		h = fold(load64(p) ^ K1, load64(p + 8) ^ h ^ K2);
		p += 16;
		n -= 16;
	}
	if (n >= 8) {
		h = fold(load64(p) ^ K3, h ^ K2);
		p += 8;
		n -= 8;
	}
	if (n > 0)
		h = fold(load_tail(p, n) ^ K1 ^ ((uint64_t)n << 56), h ^ K3);
	return fold(h ^ K0, h ^ K2 ^ (h >> 32));
}

uint64_t hash_key_seed = HASH_KEY_SEED_DEFAULT;

int hash_key_seed_random(void)
{
	uint64_t seed;
	ssize_t n = getrandom(&seed, sizeof(seed), 0);

	if (n != (ssize_t)sizeof(seed))
		return n == -1 ? -errno : -EIO;
	hash_key_seed = seed;
	return 0;
}
