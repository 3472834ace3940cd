/*
 * compress.h - the write-time compressors of the fast lane: brotli
 * (libbrotlienc) and gzip (libdeflate), each asked to fit a given room so a
 * variant that would not save enough is abandoned, not stored.
 */
#ifndef RINGCACHE_CACHE_COMPRESS_H
#define RINGCACHE_CACHE_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

struct compress;

/* brotli_quality 0..11, gzip_level 0..12.  0, -EINVAL or -ENOMEM. */
int compress_create(struct compress **out, int brotli_quality, int gzip_level);
void compress_destroy(struct compress *z);

/* Process-wide, before threads start: keeps the compressors' working memory
 * mapped between writes (compress.c says why). */
void compress_tune_malloc(void);

/* Compresses in[0..n) into out[0..cap); returns the compressed length, or 0
 * when the result does not fit in cap (or n is 0). */
size_t compress_br(struct compress *z, const void *in, size_t n, void *out, size_t cap);
size_t compress_gzip(struct compress *z, const void *in, size_t n, void *out, size_t cap);

/*
 * True when a Content-Type names content that is compressed already, so
 * variants would not pay: image/... except image/svg+xml, video/..., audio/...,
 * font/woff, font/woff2 and the archive types listed in compress.c.  The
 * media type is compared case-insensitively, parameters ignored.
 */
bool compress_type_is_compressed(const char *ct, size_t n);

#endif
