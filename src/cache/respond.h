/*
 * respond.h - the pieces responses are assembled from, shared by exec.c and
 * respond.c.
 *
 * A response is written through a cursor into room reserved beforehand (one
 * buf_reserve() per response, so nothing is half-appended on -ENOMEM).
 * Fixed header pieces are `struct resp_seg`: text padded to RESP_SEG bytes
 * and copied whole, then the cursor advances by the real length.  A copy of a
 * compile-time size is a few vector moves; a copy of a run-time length would
 * be a call into memcpy per piece.  The reservation includes RESP_SEG bytes
 * of slack for that over-copy.
 */
#ifndef RINGCACHE_CACHE_RESPOND_H
#define RINGCACHE_CACHE_RESPOND_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define RESP_SEG 64

struct resp_seg {
	char s[RESP_SEG];
	uint32_t len;
};

#define RESP_SEG_INIT(str) { str, sizeof(str) - 1 }

/* Connection handling, indexed by resp_conn(): the end of the header block. */
extern const struct resp_seg resp_conn_tail[3];

static inline unsigned resp_conn(bool keep_alive, uint8_t minor)
{
	return !keep_alive ? 2 : minor == 0;
}

static inline char *resp_put_seg(char *p, const struct resp_seg *s)
{
	memcpy(p, s->s, RESP_SEG);
	return p + s->len;
}

static inline char *resp_put(char *p, const void *src, size_t n)
{
	memcpy(p, src, n);
	return p + n;
}

/* Decimal, no padding. */
static inline char *resp_put_u32(char *p, uint32_t v)
{
	static const char d2[201] =
		"00010203040506070809101112131415161718192021222324252627282930313233343536"
		"37383940414243444546474849505152535455565758596061626364656667686970717273"
		"7475767778798081828384858687888990919293949596979899";
	unsigned n = v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 10000 ? 4 :
		     v < 100000 ? 5 : v < 1000000 ? 6 : v < 10000000 ? 7 :
		     v < 100000000 ? 8 : v < 1000000000 ? 9 : 10;
	char *q = p + n;
	while (v >= 100) {
		unsigned r = v % 100;
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
