/*
 * fuzz.h - what the fuzz targets share: the property check that aborts (so
 * libFuzzer and the replay driver both report it) and an exact-size copy of
 * the input, so a read one byte past it is caught by ASan.
 */
#ifndef RINGCACHE_FUZZ_H
#define RINGCACHE_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c)                                                              \
	do {                                                                        \
		if (!(c)) {                                                         \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__,   \
				__LINE__, #c);                                      \
			abort();                                                    \
		}                                                                   \
	} while (0)

/* A malloc'd copy of p[0..n) with nothing after it (1 byte for n == 0); the
 * caller frees it.  Aborts when out of memory: a fuzz run has no use for an
 * input it cannot hold. */
static inline char *fuzz_copy(const void *p, size_t n)
{
	char *s = malloc(n ? n : 1);
	FUZZ_ASSERT(s != NULL);
	if (n)
		memcpy(s, p, n);
	return s;
}

/* The same as a NUL-terminated string, cut at the first NUL of p[0..n). */
static inline char *fuzz_cstr(const void *p, size_t n)
{
	const char *nul = memchr(p, '\0', n);
	size_t len = nul ? (size_t)(nul - (const char *)p) : n;
	char *s = malloc(len + 1);
	FUZZ_ASSERT(s != NULL);
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

#endif
