/*
 * fuzz_coh_url.c - libFuzzer target for coh_url_parse(), the parser of
 * --redis (the input, cut at its first NUL, is the URL).
 *
 * Properties (abort on failure): a refused URL leaves the output untouched;
 * an accepted one has a non-empty host, a port of 1..65535 in digits, a DB
 * of at most 1000000, a password whenever auth is set, NUL-terminated
 * fields; and the URL written back from the parsed fields (user and
 * password percent-encoded, an IPv6 host in brackets) parses to the same
 * fields.  tests/fuzz/replay.c runs corpus/coh-url through it.
 */
#include <errno.h>

#include "coherence/url.h"
#include "fuzz.h"

static void put_escaped(char *out, size_t *o, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		out[(*o)++] = '%';
		out[(*o)++] = hex[ch >> 4];
		out[(*o)++] = hex[ch & 15];
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	struct coh_url u, before, again;

	memset(&u, 0xa5, sizeof(u));
	before = u;
	int rc = coh_url_parse(s, &u);
	FUZZ_ASSERT(rc == 0 || rc == -EINVAL);
	if (rc) {
		FUZZ_ASSERT(!memcmp(&u, &before, sizeof(u)));
		free(s);
		return 0;
	}
	FUZZ_ASSERT(memchr(u.host, '\0', sizeof(u.host)) && u.host[0]);
	FUZZ_ASSERT(memchr(u.user, '\0', sizeof(u.user)));
	FUZZ_ASSERT(memchr(u.password, '\0', sizeof(u.password)));
	FUZZ_ASSERT(memchr(u.port, '\0', sizeof(u.port)));
	char *end;
	unsigned long port = strtoul(u.port, &end, 10);
	FUZZ_ASSERT(!*end && u.port[0] >= '1' && u.port[0] <= '9' && port >= 1 && port <= 65535);
	FUZZ_ASSERT(u.db <= 1000000);
	FUZZ_ASSERT(u.auth == (u.password[0] != '\0'));
	FUZZ_ASSERT(u.auth || !u.user[0]);

	/* written back and parsed again */
	char url[8 + 3 * 256 + 1 + 3 * 256 + 1 + 258 + 1 + 6 + 1 + 8 + 1];
	size_t o = 0;
	memcpy(url, "redis://", 8);
	o = 8;
	if (u.auth) {
		put_escaped(url, &o, u.user);
		url[o++] = ':';
		put_escaped(url, &o, u.password);
		url[o++] = '@';
	}
	bool v6 = strchr(u.host, ':') != NULL;
	o += (size_t)sprintf(url + o, v6 ? "[%s]:%s/%u" : "%s:%s/%u", u.host, u.port, u.db);
	FUZZ_ASSERT(o < sizeof(url));
	/* a host that itself holds URL syntax cannot be written back */
	if (!strpbrk(u.host, "@/?#[]")) {
		FUZZ_ASSERT(coh_url_parse(url, &again) == 0);
		FUZZ_ASSERT(!strcmp(u.host, again.host) && !strcmp(u.port, again.port));
		FUZZ_ASSERT(!strcmp(u.user, again.user) && !strcmp(u.password, again.password));
		FUZZ_ASSERT(u.auth == again.auth && u.db == again.db);
	}
	free(s);
	return 0;
}
