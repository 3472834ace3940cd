/*
 * query.c - the two pieces of URL syntax the cache API needs: the key, which
 * is a percent-encoded path segment and may hold any byte, and small numeric
 * query parameters such as ?ttl=SECONDS.  '+' means '+' in both: the key is a
 * path, not a form field, and the API's parameters are plain decimals.
 */
#include <limits.h>
#include <string.h>

#include "ringcache/bytes.h"
#include "ringcache/http.h"

static inline int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int http_decode_key(const char *p, size_t n, uint8_t *out)
{
	const char *e = p + n;
	uint8_t *o = out;

	if (n > INT_MAX)
		return -400;
	while (p < e) {
		const char *pct = memchr(p, '%', (size_t)(e - p));
		size_t run = pct ? (size_t)(pct - p) : (size_t)(e - p);
		memcpy(o, p, run);
		o += run;
		if (!pct)
			break;
		if (e - pct < 3)
			return -400;
		int hi = hexval((uint8_t)pct[1]), lo = hexval((uint8_t)pct[2]);
		if (hi < 0 || lo < 0)
			return -400;
		*o++ = (uint8_t)(hi << 4 | lo);
		p = pct + 3;
	}
	return (int)(o - out);
}

int http_key_view(const char *p, size_t n, uint8_t *scratch, const uint8_t **key)
{
	if (n > INT_MAX)
		return -400;
	if (!bytes_has(p, n, '%')) {
		*key = (const uint8_t *)p;
		return (int)n;
	}
	*key = scratch;
	return http_decode_key(p, n, scratch);
}

int http_query_u32(struct http_str query, const char *name, uint32_t *out)
{
	const char *p = query.p, *e = query.p + query.len;
	size_t nlen = strlen(name);

	while (p < e) {
		const char *amp = memchr(p, '&', (size_t)(e - p));
		const char *pe = amp ? amp : e;
		const char *eq = memchr(p, '=', (size_t)(pe - p));
		const char *ke = eq ? eq : pe;

		if ((size_t)(ke - p) == nlen && memcmp(p, name, nlen) == 0) {
			const char *v = eq ? eq + 1 : pe;
			uint64_t x = 0;
			if (v == pe)
				return -400;
			for (; v < pe; v++) {
				if (*v < '0' || *v > '9')
					return -400;
				x = x * 10 + (uint64_t)(*v - '0');
				if (x > UINT32_MAX)
					return -400;
			}
			*out = (uint32_t)x;
			return 1;
		}
		if (!amp)
			break;
		p = amp + 1;
	}
	return 0;
}
