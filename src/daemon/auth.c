/*
 * auth.c - loading API keys and checking a presented key against them.
 *
 * Each key is stored zero-padded to AUTH_KEY_MAX bytes, as 16-byte chunks
 * (GCC/clang vector extension: one SSE2 or NEON register), beside its
 * length.  A check pads the presented key the same way and, for every
 * configured key, ORs together the XOR of the lengths and the XOR of the
 * first `chunks` chunks (`chunks` covers the longest configured key), then
 * folds "difference == 0" into the answer without branching.  There is no
 * early exit anywhere, so the work done depends on the number of keys and
 * the longest key only; neither the bytes of a key nor the position of a
 * near match shows in the timing.  The presented key's own length may show
 * (copying it), which tells the client nothing it did not know.
 *
 * Comparing equal-length padded buffers plus the lengths is exact: two keys
 * are equal iff their lengths and their zero-padded bytes are.
 *
 * Keys are wiped (explicit_bzero) from every buffer that held them before it
 * is freed, so they do not linger in the heap.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ringcache/auth.h"

#define CHUNK 16u
#define KEY_CHUNKS (AUTH_KEY_MAX / CHUNK)

typedef uint64_t chunk_t __attribute__((vector_size(CHUNK)));

struct auth_key {
	chunk_t c[KEY_CHUNKS];
	uint64_t len;
};

struct auth {
	unsigned n;
	unsigned chunks;  /* chunks compared: ceil(longest key / CHUNK) */
	unsigned cap;     /* slots allocated in keys; those past n are zero */
	struct auth_key *keys;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static bool is_visible(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return false;
	return true;
}

static void free_keys(struct auth_key *keys, unsigned cap)
{
	if (!keys)
		return;
	explicit_bzero(keys, (size_t)cap * sizeof(*keys));
	free(keys);
}

/* Grows the key array by copying, so the old copy can be wiped. */
static int grow(struct auth_key **keys, unsigned *cap, unsigned n)
{
	unsigned ncap = *cap ? *cap * 2 : 4;
	if (ncap > AUTH_KEYS_MAX)
		ncap = AUTH_KEYS_MAX;
	struct auth_key *k = calloc(ncap, sizeof(*k));
	if (!k)
		return -ENOMEM;
	if (n)
		memcpy(k, *keys, (size_t)n * sizeof(*k));
	free_keys(*keys, *cap);
	*keys = k;
	*cap = ncap;
	return 0;
}

/* Reads the key lines of `f`; on -EINVAL, *line is the offending line. */
static int load(FILE *f, struct auth *a, unsigned *line)
{
	char *text = NULL;
	size_t text_cap = 0;
	ssize_t got;
	int err = 0;

	*line = 0;
	errno = 0;
	while ((got = getline(&text, &text_cap, f)) != -1) {
		size_t len = (size_t)got;
		(*line)++;
		while (len && is_space(text[len - 1]))
			len--;
		if (len == 0 || text[0] == '#')
			continue;
		if (len > AUTH_KEY_MAX || !is_visible(text, len)) {
			err = -EINVAL;
			break;
		}
		if (a->n == AUTH_KEYS_MAX) {
			err = -E2BIG;
			break;
		}
		if (a->n == a->cap && (err = grow(&a->keys, &a->cap, a->n)) != 0)
			break;
		struct auth_key *k = &a->keys[a->n++];
		memcpy(k->c, text, len);
		k->len = len;
		unsigned chunks = (unsigned)((len + CHUNK - 1) / CHUNK);
		if (chunks > a->chunks)
			a->chunks = chunks;
		errno = 0;
	}
	if (!err && ferror(f))
		err = errno ? -errno : -EIO;
	if (!err)
		*line = 0;
	if (text) {
		explicit_bzero(text, text_cap);
		free(text);
	}
	return err;
}

int auth_create(struct auth **out, const char *path, struct auth_info *info)
{
	struct auth_info tmp;
	struct auth *a;
	struct stat st;
	FILE *f;
	int err;

	if (!info)
		info = &tmp;
	memset(info, 0, sizeof(*info));

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	if (fstat(fd, &st) == -1) {
		err = -errno;
		close(fd);
		return err;
	}
	info->other_readable = (st.st_mode & S_IROTH) != 0;
	f = fdopen(fd, "r");
	if (!f) {
		err = -errno;
		close(fd);
		return err;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		fclose(f);
		return -ENOMEM;
	}
	err = load(f, a, &info->line);
	fclose(f);
	if (!err && a->n == 0)
		err = -EINVAL;
	if (err) {
		free_keys(a->keys, a->cap);
		free(a);
		return err;
	}
	info->keys = a->n;
	*out = a;
	return 0;
}

const char *auth_strerror(int rc, const struct auth_info *info, char *buf, size_t len)
{
	if (rc == -EINVAL && info && info->line)
		snprintf(buf, len, "line %u is not a valid key", info->line);
	else if (rc == -EINVAL)
		snprintf(buf, len, "no keys in the file");
	else if (rc == -E2BIG)
		snprintf(buf, len, "more than %u keys", AUTH_KEYS_MAX);
	else
		snprintf(buf, len, "%s", strerror(-rc));
	return buf;
}

void auth_destroy(struct auth *a)
{
	if (!a)
		return;
	free_keys(a->keys, a->cap);
	free(a);
}

/* 1 if the padded candidate equals some key, else 0; see the top comment. */
static uint64_t match_any(const struct auth *a, const chunk_t *cand, uint64_t clen)
{
	uint64_t found = 0;

	for (unsigned k = 0; k < a->n; k++) {
		const struct auth_key *key = &a->keys[k];
		chunk_t v = { key->len ^ clen, 0 };
		for (unsigned i = 0; i < a->chunks; i++)
			v |= key->c[i] ^ cand[i];
		uint64_t d = v[0] | v[1];
		/* Hide d from the optimiser so it cannot turn the fold into a
		 * branch or stop the loop at the first match. */
		__asm__ volatile("" : "+r"(d));
		found |= ((d | (0 - d)) >> 63) ^ 1;
	}
	return found;
}

static void trim(const char **p, size_t *n)
{
	while (*n && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

static uint64_t check_one(const struct auth *a, const char *p, size_t n)
{
	chunk_t cand[KEY_CHUNKS];
	size_t room = (size_t)a->chunks * CHUNK;

	/* Longer than `room`: the length differs from every key anyway.
	 * cand is not wiped: the request buffer holds the same bytes. */
	memset(cand, 0, room);
	memcpy(cand, p, n < room ? n : room);
	return match_any(a, cand, n);
}

bool auth_check(const struct auth *a, const char *x_api_key, size_t x_len,
		const char *authorization, size_t a_len)
{
	uint64_t found = 0;

	if (x_api_key) {
		trim(&x_api_key, &x_len);
		found |= check_one(a, x_api_key, x_len);
	}
	if (authorization) {
		trim(&authorization, &a_len);
		if (a_len > 7 && strncasecmp(authorization, "Bearer", 6) == 0 &&
		    authorization[6] == ' ') {
			const char *tok = authorization + 7;
			size_t n = a_len - 7;
			while (n && *tok == ' ') {
				tok++;
				n--;
			}
			found |= check_one(a, tok, n);
		}
	}
	return found != 0;
}
