/*
 * decimal.h - unsigned integers written as decimal digits, for the renderers
 * of both protocols (HTTP lengths and ages, RESP lengths and integers): no
 * printf on the answer path.
 */
#ifndef RINGCACHE_DECIMAL_H
#define RINGCACHE_DECIMAL_H

#include <stdint.h>
#include <string.h>

/* 10^n, n <= 19 */
static inline uint64_t decimal_pow10(unsigned n)
{
	uint64_t x = 1;
	while (n--)
		x *= 10;
	return x;
}

/* Writes v in decimal at p (at most 20 bytes, no padding); returns the end. */
static inline char *decimal_put_u64(char *p, uint64_t v)
{
	static const char d2[201] =
		"00010203040506070809101112131415161718192021222324252627282930313233343536"
		"37383940414243444546474849505152535455565758596061626364656667686970717273"
		"7475767778798081828384858687888990919293949596979899";
	unsigned n;

	/* most lengths: up to four digits, one division */
	if (v < 10000) {
		if (v < 10) {
			*p = (char)('0' + v);
			return p + 1;
		}
		if (v < 100) {
			memcpy(p, d2 + 2 * v, 2);
			return p + 2;
		}
		unsigned hi = (unsigned)v / 100, lo = (unsigned)v % 100;
		if (hi < 10) {
			*p = (char)('0' + hi);
			memcpy(p + 1, d2 + 2 * lo, 2);
			return p + 3;
		}
		memcpy(p, d2 + 2 * hi, 2);
		memcpy(p + 2, d2 + 2 * lo, 2);
		return p + 4;
	}
	/* comparisons, not divisions, for the digit count of every real length */
	if (v < 100000)
		n = v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 10000 ? 4 : 5;
	else if (v < 10000000000ull)
		n = v < 1000000 ? 6 : v < 10000000 ? 7 : v < 100000000 ? 8 : v < 1000000000 ? 9 : 10;
	else
		for (n = 11; n < 20 && v >= decimal_pow10(n); n++)
			;
	char *q = p + n;
	while (v >= 100) {
		unsigned r = (unsigned)(v % 100);
		v /= 100;
		q -= 2;
		memcpy(q, d2 + 2 * r, 2);
	}
	if (v >= 10)
		memcpy(q - 2, d2 + 2 * v, 2);
	else
		q[-1] = (char)('0' + v);
	return p + n;
}

#endif
