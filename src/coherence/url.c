/*
 * url.c - the redis:// URL of --redis.  Kept apart from the connection code
 * so that it can be fuzzed alone (tests/fuzz/fuzz_coh_url.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "url.h"

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Copies s[0..n) percent-decoded into out (NUL-terminated). */
static int unescape(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int ch = (unsigned char)s[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return -EINVAL;
			int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			ch = hi * 16 + lo;
			i += 2;
		}
		if (ch == 0 || o + 1 >= cap)
			return -EINVAL;
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return 0;
}

int coh_url_parse(const char *s, struct coh_url *u)
{
	struct coh_url r;
	const char *p, *at, *end, *slash, *colon;

	memset(&r, 0, sizeof(r));
	if (!s || strncasecmp(s, "redis://", 8) != 0)
		return -EINVAL;
	p = s + 8;
	end = p + strlen(p);
	if (memchr(p, '?', (size_t)(end - p)) || memchr(p, '#', (size_t)(end - p)))
		return -EINVAL;

	at = memrchr(p, '@', (size_t)(end - p));
	if (at) {
		const char *sep = memchr(p, ':', (size_t)(at - p));
		if (sep) {
			if (unescape(p, (size_t)(sep - p), r.user, sizeof(r.user)) ||
			    unescape(sep + 1, (size_t)(at - sep - 1), r.password, sizeof(r.password)))
				return -EINVAL;
		} else if (unescape(p, (size_t)(at - p), r.password, sizeof(r.password))) {
			return -EINVAL;
		}
		if (!r.password[0])
			return -EINVAL;
		r.auth = true;
		p = at + 1;
	}

	slash = memchr(p, '/', (size_t)(end - p));
	if (slash && slash + 1 < end) {
		char *dend;
		errno = 0;
		unsigned long db = strtoul(slash + 1, &dend, 10);
		if (errno || *dend || slash[1] < '0' || slash[1] > '9' || db > 1000000)
			return -EINVAL;
		r.db = (unsigned)db;
	}
	if (!slash)
		slash = end;

	const char *host = p, *hend;
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(slash - p));
		if (!rb)
			return -EINVAL;
		host = p + 1;
		hend = rb;
		colon = rb + 1 < slash && rb[1] == ':' ? rb + 1 : NULL;
		if (!colon && rb + 1 != slash)
			return -EINVAL;
	} else {
		colon = memrchr(p, ':', (size_t)(slash - p));
		hend = colon ? colon : slash;
	}
	if (hend == host || (size_t)(hend - host) >= sizeof(r.host))
		return -EINVAL;
	memcpy(r.host, host, (size_t)(hend - host));

	if (colon) {
		size_t plen = (size_t)(slash - colon - 1);
		char *pend;
		char tmp[8];
		if (plen == 0 || plen >= sizeof(tmp))
			return -EINVAL;
		memcpy(tmp, colon + 1, plen);
		tmp[plen] = '\0';
		unsigned long port = strtoul(tmp, &pend, 10);
		if (*pend || tmp[0] < '0' || tmp[0] > '9' || port == 0 || port > 65535)
			return -EINVAL;
		snprintf(r.port, sizeof(r.port), "%lu", port);
	} else {
		strcpy(r.port, "6379");
	}
	*u = r;
	return 0;
}
