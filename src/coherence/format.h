/*
 * format.h - the byte formats the coherence module reads and writes in
 * Redis (format.c; written down in docs/coherence.md), and the JSON helpers
 * of the registry.  Pure functions of their arguments: every decoder takes
 * length-counted bytes from Redis and never reads past them.
 */
#ifndef RINGCACHE_COH_FORMAT_H
#define RINGCACHE_COH_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

#include "ringcache/coherence.h"

struct buf;

#define COH_VALUE_MAGIC "\0RCV1"
#define COH_VALUE_MAGIC2 "\0RCV2"
#define COH_INVAL_MAGIC "\0RCI1"
#define COH_MAGIC_LEN 5u

/* Header of a stored value: magic, ctype, '\n'.  Returns its length (buf
 * holds COH_MAGIC_LEN + COH_CTYPE_MAX + 1 bytes). */
size_t coh_value_header(char *buf, const char *ctype, size_t ctype_len);

/* Header of a value with an extension header (RCV2): magic2, ctype, '\n',
 * ext_len as 2 bytes little-endian, the ext_len bytes of ext.  Returns its
 * length (buf holds COH_MAGIC_LEN + COH_CTYPE_MAX + 3 + COH_EXT_MAX bytes);
 * ext_len is 1..COH_EXT_MAX. */
#define COH_VALUE_HEADER2_MAX (COH_MAGIC_LEN + COH_CTYPE_MAX + 3 + COH_EXT_MAX)
size_t coh_value_header2(char *buf, const char *ctype, size_t ctype_len, const char *ext,
			 size_t ext_len);

/*
 * Decodes a value read from Redis.  0: framed, RCV1 or RCV2 (ctype at
 * *ctype_off, *ctype_len bytes; an RCV2's extension header at *ext_off,
 * *ext_len bytes, 0 for RCV1; value from *value_off); 1: a plain value
 * written by someone else (whole string, no ctype, no extension);
 * -EINVAL: starts with a magic but is corrupt (an RCV2 whose extension
 * length is 0, over COH_EXT_MAX, or past the string).  The extension's
 * bytes are not interpreted here: the shard checks them (repr.h).
 */
int coh_value_decode_ext(const char *s, size_t n, size_t *ctype_off, size_t *ctype_len,
			 size_t *ext_off, size_t *ext_len, size_t *value_off);

/* coh_value_decode_ext() without the extension (an RCV2's is skipped). */
int coh_value_decode(const char *s, size_t n, size_t *ctype_off, size_t *ctype_len,
		     size_t *value_off);

/* True if ctype may be stored: at most COH_CTYPE_MAX bytes, none of them a
 * control other than tab, nor DEL (L1's rule for a Content-Type). */
bool coh_ctype_valid(const char *ctype, size_t n);

/*
 * Decodes an invalidation payload.  1: our framed message from instance
 * (*id, *id_len); 0: a bare key; -EINVAL: malformed.  Either way the key
 * is returned in *key, *key_len (1..COH_KEY_MAX).
 */
int coh_inval_decode(const char *s, size_t n, const char **id, size_t *id_len,
		     const char **key, size_t *key_len);

/* Appends a JSON string literal (quotes included) to b: valid UTF-8 for any
 * bytes, which are not UTF-8 written as U+FFFD.  0 or -ENOMEM. */
int coh_json_str(struct buf *b, const char *s, size_t n);
/* True if s[0..n) is one well-formed JSON object in UTF-8 (nesting at most
 * 16 deep). */
bool coh_json_object_valid(const char *s, size_t n);

#endif
