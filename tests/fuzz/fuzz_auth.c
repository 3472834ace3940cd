/*
 * fuzz_auth.c - libFuzzer target for auth_create(), the parser of the
 * --api-keys-file: the input is written to a memfd, which auth_create()
 * opens as /proc/self/fd/N.
 *
 * Property (abort on failure): auth_create() agrees with the format as
 * auth.h documents it, worked out here again line by line (one key per
 * line; empty, all-whitespace and '#' lines skipped; trailing whitespace
 * trimmed; a key is 1..AUTH_KEY_MAX bytes of 0x21..0x7e; at most
 * AUTH_KEYS_MAX keys; at least one): same result, same key count, same bad
 * line; and every key loaded is accepted by auth_check() as X-API-Key and
 * as "Bearer <key>", while a key one byte longer is not (unless it too is
 * a key).  tests/fuzz/replay.c runs corpus/auth through it.
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "ringcache/auth.h"

struct span {
	const char *p;
	size_t n;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* The documented format: returns the expected result, fills keys/line. */
static int expect(const char *s, size_t n, struct span *keys, unsigned *nkeys, unsigned *line)
{
	unsigned ln = 0;

	*nkeys = 0;
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t end = nl ? (size_t)(nl - s) + 1 : n, len = end - i;
		const char *p = s + i;
		ln++;
		i = end;
		while (len && is_space(p[len - 1]))
			len--;
		if (len == 0 || p[0] == '#')
			continue;
		bool visible = len <= AUTH_KEY_MAX;
		for (size_t k = 0; visible && k < len; k++)
			visible = (unsigned char)p[k] >= 0x21 && (unsigned char)p[k] <= 0x7e;
		if (!visible) {
			*line = ln;
			return -EINVAL;
		}
		if (*nkeys == AUTH_KEYS_MAX) {
			*line = ln;
			return -E2BIG;
		}
		keys[(*nkeys)++] = (struct span){ p, len };
	}
	*line = 0;
	return *nkeys ? 0 : -EINVAL;
}

static bool is_key(const struct span *keys, unsigned n, const char *p, size_t len)
{
	for (unsigned i = 0; i < n; i++)
		if (keys[i].n == len && !memcmp(keys[i].p, p, len))
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct span keys[AUTH_KEYS_MAX];
	char path[64], bearer[8 + AUTH_KEY_MAX + 1], longer[AUTH_KEY_MAX + 2];
	struct auth *a = NULL;
	struct auth_info info;
	unsigned nkeys, line;

	int fd = memfd_create("fuzz-auth", MFD_CLOEXEC);
	FUZZ_ASSERT(fd != -1);
	FUZZ_ASSERT(write(fd, data, size) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int rc = auth_create(&a, path, &info);
	int want = expect((const char *)data, size, keys, &nkeys, &line);
	FUZZ_ASSERT(rc == want);
	if (rc == 0) {
		FUZZ_ASSERT(info.keys == nkeys && info.line == 0);
		for (unsigned i = 0; i < nkeys; i++) {
			const struct span *k = &keys[i];
			FUZZ_ASSERT(auth_check(a, k->p, k->n, NULL, 0));
			memcpy(bearer, "Bearer  ", 8);
			memcpy(bearer + 8, k->p, k->n);
			FUZZ_ASSERT(auth_check(a, NULL, 0, bearer, 8 + k->n));
			memcpy(longer, k->p, k->n);
			longer[k->n] = 'x';
			if (!is_key(keys, nkeys, longer, k->n + 1))
				FUZZ_ASSERT(!auth_check(a, longer, k->n + 1, NULL, 0));
		}
		auth_destroy(a);
	} else if (rc == -EINVAL || rc == -E2BIG) {
		FUZZ_ASSERT(info.line == line);
	}
	close(fd);
	return 0;
}
