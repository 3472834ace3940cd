/*
 * bytes.h - unaligned word loads in memory order (the HTTP parser's word
 * compares use them too), and comparisons of short byte strings (keys: most
 * are 4 to 16 bytes) in two overlapping word loads each, inside [p, p + n)
 * only, where a call to memcmp() or memchr() would cost more than the work;
 * longer or shorter strings go to those.
 */
#ifndef RINGCACHE_BYTES_H
#define RINGCACHE_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t bytes_load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t bytes_load32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static inline uint16_t bytes_load16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

/* Whether a[0..n) and b[0..n) hold the same bytes. */
static inline bool bytes_equal(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;

	if (n >= 8 && n <= 16)
		return ((bytes_load64(x) ^ bytes_load64(y)) |
			(bytes_load64(x + n - 8) ^ bytes_load64(y + n - 8))) == 0;
	if (n >= 4 && n < 8)
		return ((bytes_load32(x) ^ bytes_load32(y)) |
			(bytes_load32(x + n - 4) ^ bytes_load32(y + n - 4))) == 0;
	return memcmp(a, b, n) == 0;
}

/* Whether p[0..n) holds byte c.  A word has a zero byte exactly when
 * (w - 0x01..01) & ~w & 0x80..80 is not 0 (the borrow that could mislead
 * starts at a zero byte, so there is one then anyway). */
static inline bool bytes_has(const void *p, size_t n, uint8_t c)
{
	const uint8_t *x = p;

	if (n >= 8 && n <= 16) {
		const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
		uint64_t a = bytes_load64(x) ^ (c * ones), b = bytes_load64(x + n - 8) ^ (c * ones);
		return (((a - ones) & ~a) | ((b - ones) & ~b)) & highs;
	}
	if (n >= 4 && n < 8) {
		const uint32_t ones = 0x01010101u, highs = 0x80808080u;
		uint32_t a = bytes_load32(x) ^ (c * ones), b = bytes_load32(x + n - 4) ^ (c * ones);
		return (((a - ones) & ~a) | ((b - ones) & ~b)) & highs;
	}
	return n && memchr(p, c, n) != NULL;
}

#endif
