/*
 * fuzz_negotiate.c - libFuzzer target for the cache executor's parsers of
 * client input (Accept-Encoding, If-None-Match, Cache-Control) and for
 * repr_unpack() on arbitrary blobs and flags.
 *
 * The first byte picks the parser, the second is its parameter (the stored
 * codings, or the flags of a blob), the rest is the field value or blob,
 * parsed from an exact-size copy so a read past its end is caught by ASan.
 * Properties checked (abort on failure):
 *  - negotiate_encoding() returns a stored coding or NONE, and the same as
 *    negotiate_pick(negotiate_weigh()) (so its no-';' shortcut is sound);
 *  - weights stay within 0..1000 and identity is never chosen over a
 *    stored coding of higher weight;
 *  - negotiate_max_age() sets at most 2^31; negotiate_etag_match() finds a
 *    tag that is the whole field;
 *  - a blob repr_unpack() accepts has every representation inside it.
 * tests/fuzz/replay.c runs the saved corpus (corpus/negotiate) through this
 * same function in the normal build.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/negotiate.h"
#include "cache/repr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c)                                                              \
	do {                                                                        \
		if (!(c)) {                                                         \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__,   \
				__LINE__, #c);                                      \
			abort();                                                    \
		}                                                                   \
	} while (0)

static void check_accept_encoding(const char *s, size_t n, unsigned avail)
{
	struct negotiate_weights w;
	int got = negotiate_encoding(s, n, avail);

	FUZZ_ASSERT(got == NEGOTIATE_NONE || (got >= 0 && got <= 2 && (avail & (1u << got))));
	negotiate_weigh(s, n, &w);
	for (int c = 0; c < 3; c++)
		FUZZ_ASSERT(w.q[c] >= 0 && w.q[c] <= 1000);
	FUZZ_ASSERT(got == negotiate_pick(&w, avail));
	if (got == NEGOTIATE_IDENTITY) {
		for (int c = 1; c < 3; c++)
			FUZZ_ASSERT(!(avail & (1u << c)) || w.q[c] <= w.q[NEGOTIATE_IDENTITY]);
	}
}

static void check_if_none_match(const char *s, size_t n)
{
	negotiate_etag_match(s, n, "\"0123abcd\"", 10);
	/* A well-formed tag equal to the whole field always matches itself. */
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"' && !memchr(s + 1, '"', n - 2))
		FUZZ_ASSERT(negotiate_etag_match(s, n, s, n));
}

static void check_max_age(const char *s, size_t n)
{
	uint32_t v = 0;
	if (negotiate_max_age(s, n, &v))
		FUZZ_ASSERT(v <= (1u << 31));
}

static void check_blob(const uint8_t *blob, size_t n, uint8_t flags)
{
	struct repr_view v;
	if (repr_unpack(blob, (uint32_t)n, flags, 0, &v) != 0)
		return;
	FUZZ_ASSERT(v.avail & (1u << REPR_IDENTITY));
	for (unsigned c = 0; c < REPR_NCODINGS; c++) {
		if (!(v.avail & (1u << c)))
			continue;
		FUZZ_ASSERT(v.part[c].p >= blob && v.part[c].p + v.part[c].len <= blob + n);
	}
	if (v.type < 0)
		FUZZ_ASSERT((const uint8_t *)v.type_str >= blob &&
			    (const uint8_t *)v.type_str + v.type_len <= blob + n);
	else
		FUZZ_ASSERT(v.type <= (int)REPR_F_TYPE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t mode = data[0], param = data[1];
	size_t n = size - 2;
	char *copy = malloc(n ? n : 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 2, n);

	switch (mode % 4) {
	case 0:
		check_accept_encoding(copy, n, 1u | ((param & 3u) << 1));
		break;
	case 1:
		check_if_none_match(copy, n);
		break;
	case 2:
		check_max_age(copy, n);
		break;
	default:
		check_blob((const uint8_t *)copy, n,
			   (uint8_t)((param & 0x7fu) | (mode & 0x80u)));
		break;
	}
	free(copy);
	return 0;
}
