/*
 * test_repr.c - the value blob (pack and unpack, the zero-byte case, damaged
 * blobs), ETag formatting, and the write-time compressors with the list of
 * already-compressed types.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/decode.h>
#include <libdeflate.h>

#include "check.h"
#include "cache/compress.h"
#include "cache/repr.h"

/* Concatenates a blob's iovecs, as the store does. */
static uint8_t *flatten(const struct repr_blob *b, uint32_t *len)
{
	size_t n = 0;
	for (int i = 0; i < b->iovcnt; i++)
		n += b->iov[i].iov_len;
	uint8_t *p = malloc(n + 1), *q = p;
	for (int i = 0; i < b->iovcnt; i++) {
		memcpy(q, b->iov[i].iov_base, b->iov[i].iov_len);
		q += b->iov[i].iov_len;
	}
	*len = (uint32_t)n;
	return p;
}

static bool part_is(const struct repr_part *p, const void *want, size_t n)
{
	return p->len == n && memcmp(p->p, want, n) == 0;
}

static void test_plain(void)
{
	struct repr_blob b;
	struct repr_view v;
	uint32_t len;

	repr_build(&b, "hello", 5, NULL, 0, NULL, 0, NULL, 0, 0);
	CHECK_EQ(b.flags, 0);
	CHECK_EQ(b.iovcnt, 1);
	uint8_t *blob = flatten(&b, &len);
	CHECK_EQ(len, 5);
	CHECK_EQ(repr_unpack(blob, len, b.flags, b.etag, &v), 0);
	CHECK_EQ(v.avail, 1u << REPR_IDENTITY);
	CHECK_EQ(v.type, 0);
	CHECK(part_is(&v.part[REPR_IDENTITY], "hello", 5));
	CHECK_EQ(v.part[REPR_IDENTITY].etag, b.etag);
	free(blob);

	/* Every well-known type rides in flags; the blob is still the value. */
	for (unsigned i = 0; i <= REPR_F_TYPE; i++) {
		uint32_t tl;
		const char *t = repr_type_name(i, &tl);
		CHECK_EQ(repr_type_index(t, tl), (int)i);
		repr_build(&b, "x", 1, t, tl, NULL, 0, NULL, 0, 0);
		CHECK_EQ(b.flags, i);
		CHECK_EQ(b.iovcnt, 1);
		CHECK_EQ(repr_unpack((const uint8_t *)"x", 1, b.flags, b.etag, &v), 0);
		CHECK_EQ(v.type, (int)i);
	}
	/* The default type named explicitly is the same representation. */
	struct repr_blob b2;
	repr_build(&b, "v", 1, NULL, 0, NULL, 0, NULL, 0, 0);
	repr_build(&b2, "v", 1, "application/octet-stream", 24, NULL, 0, NULL, 0, 0);
	CHECK_EQ(b.flags, b2.flags);
	CHECK_EQ(b.etag, b2.etag);
	/* Matching is exact: another spelling is a custom type. */
	CHECK_EQ(repr_type_index("Application/JSON", 16), -1);
	CHECK_EQ(repr_type_index("application/json ", 17), -1);

	/* Empty value. */
	repr_build(&b, NULL, 0, NULL, 0, NULL, 0, NULL, 0, 0);
	CHECK_EQ(b.iovcnt, 1);
	CHECK(b.iov[0].iov_base != NULL);
	CHECK_EQ(repr_unpack((const uint8_t *)"", 0, b.flags, b.etag, &v), 0);
	CHECK_EQ(v.part[REPR_IDENTITY].len, 0);
}

static void test_with_header(void)
{
	struct repr_blob b;
	struct repr_view v;
	uint32_t len;
	const char *ct = "application/vnd.test";
	const char *val = "identity-bytes", *br = "BR", *gz = "GZIPPED";

	/* Every combination of custom type, br and gzip. */
	for (unsigned mask = 1; mask < 8; mask++) {
		bool has_ct = mask & 1, has_br = mask & 2, has_gz = mask & 4;
		repr_build(&b, val, (uint32_t)strlen(val), has_ct ? ct : NULL,
			   has_ct ? strlen(ct) : 0, has_br ? br : NULL, has_br ? 2 : 0,
			   has_gz ? gz : NULL, has_gz ? 7 : 0, 0xa1b2c3d4u);
		CHECK_EQ(!!(b.flags & REPR_F_CT), has_ct);
		CHECK_EQ(!!(b.flags & REPR_F_BR), has_br);
		CHECK_EQ(!!(b.flags & REPR_F_GZIP), has_gz);
		uint8_t *blob = flatten(&b, &len);
		size_t hdr = (has_br || has_gz ? 4 : 0) + (has_br ? 8 : 0) + (has_gz ? 8 : 0) +
			     (has_ct ? 1 + strlen(ct) : 0);
		CHECK_EQ(len, hdr + strlen(val) + (has_br ? 2 : 0) + (has_gz ? 7 : 0));
		CHECK_EQ(repr_unpack(blob, len, b.flags, b.etag, &v), 0);
		CHECK(part_is(&v.part[REPR_IDENTITY], val, strlen(val)));
		CHECK_EQ(v.part[REPR_IDENTITY].etag, b.etag);
		CHECK_EQ(v.avail, 1u | (has_br ? 2u : 0) | (has_gz ? 4u : 0));
		/* the write's stamp travels with the variants (issue 8) */
		if (has_br || has_gz)
			CHECK_EQ(v.stamp, 0xa1b2c3d4u);
		if (has_br) {
			CHECK(part_is(&v.part[REPR_BR], br, 2));
			CHECK(v.part[REPR_BR].etag != b.etag);
		}
		if (has_gz) {
			CHECK(part_is(&v.part[REPR_GZIP], gz, 7));
			CHECK(v.part[REPR_GZIP].etag != b.etag);
		}
		if (has_ct) {
			CHECK_EQ(v.type, -1);
			CHECK(v.type_len == strlen(ct) && memcmp(v.type_str, ct, v.type_len) == 0);
		} else {
			CHECK_EQ(v.type, 0);
		}

		/* Every truncation is either detected or still in bounds. */
		for (uint32_t cut = 0; cut < len; cut++) {
			struct repr_view w;
			if (repr_unpack(blob, cut, b.flags, b.etag, &w) == 0) {
				const uint8_t *end = blob + cut;
				for (unsigned c = 0; c < REPR_NCODINGS; c++)
					if (w.avail & (1u << c))
						CHECK(w.part[c].p + w.part[c].len <= end);
			}
		}
		free(blob);
	}

	/* The header layout is the documented one. */
	repr_build(&b, "v", 1, ct, strlen(ct), br, 2, gz, 7, 0x04030201u);
	uint8_t *blob = flatten(&b, &len);
	CHECK(blob[0] == 1 && blob[1] == 2 && blob[2] == 3 && blob[3] == 4);
	CHECK_EQ(blob[4], 2);
	CHECK(blob[5] == 0 && blob[6] == 0 && blob[7] == 0);
	CHECK_EQ(blob[12], 7);
	CHECK_EQ(blob[20], strlen(ct));
	CHECK(memcmp(blob + 21, ct, strlen(ct)) == 0);
	CHECK(memcmp(blob + 21 + strlen(ct), "vBRGZIPPED", 10) == 0);
	free(blob);

	/* A type longer than REPR_TYPE_MAX is cut (exec refuses it first). */
	char longct[300];
	memset(longct, 'a', sizeof(longct));
	repr_build(&b, "v", 1, longct, sizeof(longct), NULL, 0, NULL, 0, 0);
	blob = flatten(&b, &len);
	CHECK_EQ(len, 1 + REPR_TYPE_MAX + 1);
	CHECK_EQ(repr_unpack(blob, len, b.flags, b.etag, &v), 0);
	CHECK_EQ(v.type_len, REPR_TYPE_MAX);
	free(blob);

	/* Reserved flag bits or impossible lengths are refused. */
	CHECK_EQ(repr_unpack((const uint8_t *)"abc", 3, 0x80, 0, &v), -EINVAL);
	CHECK_EQ(repr_unpack((const uint8_t *)"abc", 3, REPR_F_BR, 0, &v), -EINVAL);
	CHECK_EQ(repr_unpack((const uint8_t *)"abcdefgh", 8, REPR_F_BR, 0, &v), -EINVAL);
	uint8_t bad[16] = { 0, 0, 0, 0, 0xff, 0xff, 0, 0 };
	CHECK_EQ(repr_unpack(bad, sizeof(bad), REPR_F_BR, 0, &v), -EINVAL);
	uint8_t badct[4] = { 9, 'a', 'b', 'c' };
	CHECK_EQ(repr_unpack(badct, sizeof(badct), REPR_F_CT, 0, &v), -EINVAL);
}

static void test_etags(void)
{
	struct repr_blob a, b;
	char s[REPR_ETAG_MAX + 1];

	/* Issue 11: the content hash, then the write's store stamp, 16 digits. */
	CHECK_EQ(repr_format_etag(s, 0x0123abcdu, 0x89ef4567u, REPR_IDENTITY), 18);
	CHECK(memcmp(s, "\"0123abcd89ef4567\"", 18) == 0);
	CHECK_EQ(repr_format_etag(s, 0xffffffffu, 0, REPR_BR), 21);
	CHECK(memcmp(s, "\"ffffffff00000000-br\"", 21) == 0);
	CHECK_EQ(repr_format_etag(s, 0, 0xa0b1c2d3u, REPR_GZIP), 21);
	CHECK(memcmp(s, "\"00000000a0b1c2d3-gz\"", 21) == 0);
	CHECK_EQ(REPR_ETAG_MAX, 21);

	/* The digit formatting against printf, across the 32-bit range of both
	 * halves. */
	unsigned wrong = 0;
	for (uint64_t e = 0; e <= UINT32_MAX; e += 65521) {
		char want[32];
		uint32_t stamp = (uint32_t)(e * 2654435761u) ^ 0x5bd1e995u;
		repr_format_etag(s, (uint32_t)e, stamp, REPR_BR);
		snprintf(want, sizeof(want), "\"%08x%08x-br\"", (unsigned)e, (unsigned)stamp);
		wrong += memcmp(s, want, 21) != 0;
	}
	CHECK_EQ(wrong, 0);

	/* The same content hash with another stamp is another tag. */
	char t[REPR_ETAG_MAX + 1];
	repr_format_etag(s, 0x12345678u, 1, REPR_IDENTITY);
	repr_format_etag(t, 0x12345678u, 2, REPR_IDENTITY);
	CHECK(memcmp(s, t, 18) != 0);

	/* Same bytes, same type: same content hash (the stamp makes the tags of
	 * two writes differ; test_cache.c). */
	repr_build(&a, "payload", 7, "text/plain", 10, NULL, 0, NULL, 0, 0);
	repr_build(&b, "payload", 7, "text/plain", 10, NULL, 0, NULL, 0, 0);
	CHECK_EQ(a.etag, b.etag);
	repr_build(&b, "payloae", 7, "text/plain", 10, NULL, 0, NULL, 0, 0);
	CHECK(a.etag != b.etag);
	repr_build(&b, "payload", 7, "text/html", 9, NULL, 0, NULL, 0, 0);
	CHECK(a.etag != b.etag);
	/* A variant whose bytes equal the identity still gets another tag. */
	repr_build(&a, "same", 4, NULL, 0, "same", 4, "same", 4, 0);
	struct repr_view v;
	uint32_t len;
	uint8_t *blob = flatten(&a, &len);
	CHECK_EQ(repr_unpack(blob, len, a.flags, a.etag, &v), 0);
	CHECK(v.part[REPR_BR].etag != a.etag && v.part[REPR_GZIP].etag != a.etag &&
	      v.part[REPR_BR].etag != v.part[REPR_GZIP].etag);
	free(blob);
}

static void test_compress(void)
{
	struct compress *z;
	size_t n = 8192;
	char *in = malloc(n);
	for (size_t i = 0; i < n; i++)
		in[i] = "the quick brown fox jumps over the lazy dog\n"[i % 44];
	uint8_t *out = malloc(n), *back = malloc(n);

	CHECK_EQ(compress_create(&z, 12, 6), -EINVAL);
	CHECK_EQ(compress_create(&z, 4, 13), -EINVAL);
	CHECK_EQ(compress_create(&z, -1, 6), -EINVAL);
	CHECK_EQ(compress_create(&z, 4, 6), 0);

	size_t bl = compress_br(z, in, n, out, n);
	CHECK(bl > 0 && bl < n / 10);
	size_t dl = n;
	CHECK(BrotliDecoderDecompress(bl, out, &dl, back) == BROTLI_DECODER_RESULT_SUCCESS);
	CHECK(dl == n && memcmp(back, in, n) == 0);
	/* Too little room: abandoned, not truncated. */
	CHECK_EQ(compress_br(z, in, n, out, bl - 1), 0);
	CHECK_EQ(compress_br(z, in, 0, out, n), 0);

	size_t gl = compress_gzip(z, in, n, out, n);
	CHECK(gl > 0 && gl < n / 10);
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	size_t actual = 0;
	CHECK(libdeflate_gzip_decompress(d, out, gl, back, n, &actual) == LIBDEFLATE_SUCCESS);
	CHECK(actual == n && memcmp(back, in, n) == 0);
	CHECK_EQ(compress_gzip(z, in, n, out, gl - 1), 0);
	libdeflate_free_decompressor(d);

	/* Larger than the smallest brotli window, up to a large one. */
	size_t big = 3u << 20;
	char *bin = malloc(big);
	uint64_t s = 1;
	for (size_t i = 0; i < big; i++) {
		s = s * 6364136223846793005ull + 1;
		bin[i] = (char)('a' + (s >> 60));
	}
	uint8_t *bout = malloc(big), *bback = malloc(big);
	bl = compress_br(z, bin, big, bout, big);
	CHECK(bl > 0);
	dl = big;
	CHECK(BrotliDecoderDecompress(bl, bout, &dl, bback) == BROTLI_DECODER_RESULT_SUCCESS);
	CHECK(dl == big && memcmp(bback, bin, big) == 0);
	free(bin);
	free(bout);
	free(bback);

	compress_destroy(z);
	compress_destroy(NULL);
	free(in);
	free(out);
	free(back);
}

static bool precompressed(const char *ct)
{
	return compress_type_is_compressed(ct, strlen(ct));
}

static void test_compressed_types(void)
{
	CHECK(precompressed("image/png"));
	CHECK(precompressed("image/jpeg"));
	CHECK(precompressed("IMAGE/WEBP"));
	CHECK(precompressed("video/mp4"));
	CHECK(precompressed("audio/ogg"));
	CHECK(precompressed("application/zip"));
	CHECK(precompressed("application/gzip"));
	CHECK(precompressed("application/x-gzip"));
	CHECK(precompressed("application/zstd"));
	CHECK(precompressed("application/x-bzip2"));
	CHECK(precompressed("application/x-xz"));
	CHECK(precompressed("application/x-7z-compressed"));
	CHECK(precompressed("application/x-brotli"));
	CHECK(precompressed("font/woff2"));
	CHECK(precompressed("font/woff"));
	CHECK(precompressed(" application/zip; foo=bar"));
	CHECK(precompressed("image/png;q=1"));

	CHECK(!precompressed(""));
	CHECK(!precompressed("image/svg+xml"));
	CHECK(!precompressed("Image/SVG+XML; charset=utf-8"));
	CHECK(!precompressed("text/plain"));
	CHECK(!precompressed("application/json"));
	CHECK(!precompressed("application/octet-stream"));
	CHECK(!precompressed("application/zipper"));
	CHECK(!precompressed("font/ttf"));
	CHECK(!precompressed("image"));
	CHECK(!precompressed("font/woff3"));
}


/* The extension header (issue 9): windows and tags in front of any other
 * header, decoded back exactly; blobs without it unchanged; every
 * truncation and every bad byte refused. */
static void test_ext(void)
{
	static const uint8_t tags[] = { 3, 'a', 'b', 'c', 1, 'z' };
	struct repr_ext e = { .bits = REPR_EXT_WINDOWS | REPR_EXT_TAGS, .ttl = 11, .swr = 20,
			      .sie = 300, .ntags = 2, .tags = tags, .tags_len = sizeof(tags) };
	uint8_t ext[REPR_EXT_MAX];
	uint32_t n = repr_ext_encode(ext, &e);
	struct repr_blob b;
	struct repr_view v;
	uint32_t len;

	CHECK_EQ(n, 1 + 12 + 1 + sizeof(tags));
	/* no bits: no bytes, the blob stays as it was */
	struct repr_ext none = { 0 };
	CHECK_EQ(repr_ext_encode(ext + 100, &none), 0);
	repr_build(&b, "hello", 5, NULL, 0, NULL, 0, NULL, 0, 0);
	repr_blob_ext(&b, ext, 0);
	CHECK_EQ(b.flags, 0);
	CHECK_EQ(b.iovcnt, 1);

	/* a plain value with the header, and one with a custom type and both
	 * variants behind it */
	for (int withhdr = 0; withhdr < 2; withhdr++) {
		if (withhdr)
			repr_build(&b, "hello", 5, "x/y", 3, "BR", 2, "GZIP", 4, 77);
		else
			repr_build(&b, "hello", 5, "text/plain", 10, NULL, 0, NULL, 0, 0);
		uint8_t flags0 = b.flags;
		repr_blob_ext(&b, ext, n);
		CHECK_EQ(b.flags, flags0 | REPR_F_EXT);
		uint8_t *blob = flatten(&b, &len);
		CHECK_EQ(repr_unpack(blob, len, b.flags, b.etag, &v), 0);
		CHECK_EQ(v.ext.bits, REPR_EXT_WINDOWS | REPR_EXT_TAGS);
		CHECK_EQ(v.ext.ttl, 11);
		CHECK_EQ(v.ext.swr, 20);
		CHECK_EQ(v.ext.sie, 300);
		CHECK_EQ(v.ext.ntags, 2);
		CHECK_EQ(v.ext.len, n);
		CHECK(v.ext.tags_len == sizeof(tags) && memcmp(v.ext.tags, tags, sizeof(tags)) == 0);
		CHECK(part_is(&v.part[REPR_IDENTITY], "hello", 5));
		CHECK_EQ(v.part[REPR_IDENTITY].etag, b.etag);
		if (withhdr) {
			CHECK(part_is(&v.part[REPR_BR], "BR", 2));
			CHECK(part_is(&v.part[REPR_GZIP], "GZIP", 4));
			CHECK_EQ(v.stamp, 77);
			CHECK(v.type_len == 3 && memcmp(v.type_str, "x/y", 3) == 0);
		} else {
			CHECK_EQ(v.type, 2);
		}
		/* every truncation of the extension header is damage, never a read
		 * past the blob (ASan checks the copies) */
		for (uint32_t cut = 0; cut < n; cut++) {
			uint8_t *t = malloc(cut ? cut : 1);
			memcpy(t, blob, cut);
			CHECK_EQ(repr_unpack(t, cut, b.flags, b.etag, &v), -EINVAL);
			free(t);
		}
		free(blob);
	}
	/* fresh-until and stored-at, from the store's expiry */
	repr_build(&b, "v", 1, NULL, 0, NULL, 0, NULL, 0, 0);
	repr_blob_ext(&b, ext, n);
	uint8_t *blob = flatten(&b, &len);
	CHECK_EQ(repr_unpack(blob, len, b.flags, b.etag, &v), 0);
	CHECK_EQ(repr_fresh_until(1000, &v), 1000 - 320);
	CHECK_EQ(repr_fresh_until(0, &v), 0);
	CHECK_EQ(repr_fresh_until(100, &v), 1);        /* damaged: already stale */
	free(blob);
	struct repr_view plain;
	CHECK_EQ(repr_unpack((const uint8_t *)"v", 1, 0, 0, &plain), 0);
	CHECK_EQ(plain.ext.bits, 0);
	CHECK_EQ(repr_fresh_until(1000, &plain), 1000);

	/* bad bytes: unknown bits, no bits, zero or too many tags, a tag of
	 * length 0 or over REPR_TAG_MAX, a tag running past the end */
	static const uint8_t bad[][8] = {
		{ 0x04 }, { 0x00 }, { 0x02, 0 }, { 0x02, 9, 1, 'a' }, { 0x02, 1, 0 },
		{ 0x02, 1, 129, 'a' }, { 0x02, 1, 5, 'a', 'b' }, { 0x02, 2, 1, 'a' },
	};
	static const uint32_t bad_len[] = { 1, 1, 2, 4, 3, 4, 5, 4 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct repr_ext d;
		CHECK_EQ(repr_ext_decode(bad[i], bad_len[i], &d), -EINVAL);
		CHECK_EQ(repr_unpack(bad[i], bad_len[i], REPR_F_EXT, 0, &v), -EINVAL);
	}
	/* the largest header fits REPR_EXT_MAX */
	uint8_t big[REPR_TAGS_MAX * (1 + REPR_TAG_MAX)];
	for (unsigned i = 0; i < REPR_TAGS_MAX; i++) {
		big[i * (1 + REPR_TAG_MAX)] = REPR_TAG_MAX;
		memset(big + i * (1 + REPR_TAG_MAX) + 1, 'a' + (int)i, REPR_TAG_MAX);
	}
	struct repr_ext m = { .bits = 3, .ntags = REPR_TAGS_MAX, .tags = big, .tags_len = sizeof(big) };
	CHECK_EQ(repr_ext_encode(ext, &m), REPR_EXT_MAX);
	struct repr_ext d;
	CHECK_EQ(repr_ext_decode(ext, REPR_EXT_MAX, &d), 0);
	CHECK_EQ(d.ntags, REPR_TAGS_MAX);
}

int main(void)
{
	test_plain();
	test_ext();
	test_with_header();
	test_etags();
	test_compress();
	test_compressed_types();
	return check_done("test_repr");
}
