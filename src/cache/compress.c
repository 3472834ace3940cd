/*
 * compress.c - brotli and gzip for the stored variants.
 *
 * gzip uses one libdeflate compressor per shard, allocated once (it holds the
 * level's match-finder tables).  Brotli uses the one-shot encoder, whose
 * state is sized from the window we pass: the window is the smallest power
 * of two that holds the value (at least 1 KiB, at most 16 MiB), so a 2 KB
 * value does not pay for the 4 MiB tables of the default window.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/encode.h>
#include <libdeflate.h>

#include "cache/compress.h"

/*
 * The encoders allocate their working memory (hundreds of KB to a few MB)
 * on every call and free it after.  With glibc's defaults those blocks are
 * mmap()ed and unmapped, or trimmed off the thread's heap, each time, and
 * the next call faults the pages back in: for 64 KB values that was most of
 * a write's cost (perf/bench-write-stall.sh, docs/fastlane.md).  Blocks
 * under 8 MiB come from the heap, and the top of a heap is trimmed only
 * when 16 MiB or more is free there.  That keeps the encoders' memory mapped
 * between writes, but it also keeps what connections freed: glibc returns
 * memory only from the top of each thread's heap, so an idle shard calls
 * malloc_trim() once its connections have let go of enough (shard.c).
 * Larger blocks (the bodies of big values) are still mapped and unmapped.
 */
void compress_tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	mallopt(M_TRIM_THRESHOLD, 16 << 20);
}

struct compress {
	struct libdeflate_compressor *gz;
	int brotli_quality;
};

int compress_create(struct compress **out, int brotli_quality, int gzip_level)
{
	if (brotli_quality < BROTLI_MIN_QUALITY || brotli_quality > BROTLI_MAX_QUALITY ||
	    gzip_level < 0 || gzip_level > 12)
		return -EINVAL;
	struct compress *z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	z->gz = libdeflate_alloc_compressor(gzip_level);
	if (!z->gz) {
		free(z);
		return -ENOMEM;
	}
	z->brotli_quality = brotli_quality;
	*out = z;
	return 0;
}

void compress_destroy(struct compress *z)
{
	if (!z)
		return;
	libdeflate_free_compressor(z->gz);
	free(z);
}

size_t compress_br(struct compress *z, const void *in, size_t n, void *out, size_t cap)
{
	int lgwin = BROTLI_MIN_WINDOW_BITS;

	if (n == 0 || cap == 0)
		return 0;
	while (lgwin < BROTLI_MAX_WINDOW_BITS && ((size_t)1 << lgwin) - 16 < n)
		lgwin++;
	size_t len = cap;
	if (!BrotliEncoderCompress(z->brotli_quality, lgwin, BROTLI_MODE_GENERIC, n, in, &len,
				   out))
		return 0;
	return len <= cap ? len : 0;
}

size_t compress_gzip(struct compress *z, const void *in, size_t n, void *out, size_t cap)
{
	if (n == 0 || cap == 0)
		return 0;
	return libdeflate_gzip_compress(z->gz, in, n, out, cap);
}

/* Media types (and type/ prefixes) whose bytes are already compressed. */
static const char *const compressed_types[] = {
	"image/",               /* every image format but SVG (below) */
	"video/",
	"audio/",
	"font/woff",
	"font/woff2",
	"application/zip",
	"application/gzip",
	"application/x-gzip",
	"application/zstd",
	"application/x-bzip2",
	"application/x-xz",
	"application/x-7z-compressed",
	"application/x-rar-compressed",
	"application/vnd.rar",
	"application/br",
	"application/x-brotli",
};

static bool ieq_prefix(const char *s, size_t n, const char *lit, size_t lit_len)
{
	if (n < lit_len)
		return false;
	for (size_t i = 0; i < lit_len; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		if (c != lit[i])
			return false;
	}
	return true;
}

bool compress_type_is_compressed(const char *ct, size_t n)
{
	while (n && (*ct == ' ' || *ct == '\t')) {
		ct++;
		n--;
	}
	size_t m = 0;
	while (m < n && ct[m] != ';' && ct[m] != ' ' && ct[m] != '\t')
		m++;
	if (ieq_prefix(ct, m, "image/svg+xml", 13) && m == 13)
		return false;
	for (size_t i = 0; i < sizeof(compressed_types) / sizeof(compressed_types[0]); i++) {
		const char *t = compressed_types[i];
		size_t tl = strlen(t);
		bool prefix = t[tl - 1] == '/';
		if (ieq_prefix(ct, m, t, tl) && (prefix || m == tl))
			return true;
	}
	return false;
}
