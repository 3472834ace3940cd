/*
 * repr.h - the value blob: how one stored value carries its representations
 * (identity, brotli, gzip), its Content-Type and their ETags.
 *
 * The store keeps 24 bytes or less of metadata per item, so the common case
 * must cost nothing: a value with a well-known Content-Type and no variants
 * is stored as its raw bytes alone, its type is an index in the store's 8
 * `flags` bits and its ETag's content hash is the store's 32-bit `etag`
 * field (the other half, the stamp, costs no byte: store.h).  Anything
 * more (a custom type, a variant) adds a small header to the blob.
 *
 * flags (store_item.flags):
 *
 *     7   6   5   4   3       0
 *   +---+---+---+---+----------+
 *   | X | G | B | C |   type   |
 *   +---+---+---+---+----------+
 *   X     REPR_F_EXT: the blob starts with an extension header (stale
 *         windows, tags: below); clear for every blob written before it
 *   type  index into REPR_TYPES when C is clear (0: application/octet-stream)
 *   C     REPR_F_CT: the blob carries its own Content-Type
 *   B     REPR_F_BR: the blob carries a brotli variant
 *   G     REPR_F_GZIP: the blob carries a gzip variant
 *
 * etag (store_item.etag): the identity representation's content hash.
 *
 * The blob when C, B and G are all clear is the raw value.  Otherwise
 * (integers little-endian, unaligned; each group present only if its flag is):
 *
 *   +-------+--------+---------+--------+---------+--------+--------+----------+----+------+
 *   | stamp | br_len | br_etag | gz_len | gz_etag | ct_len | ct     | identity | br | gzip |
 *   | u32   | u32    | u32     | u32    | u32     | u8     | ct_len |          |    |      |
 *   +-------+--------+---------+--------+---------+--------+--------+----------+----+------+
 *    B or G  \______ B ______/  \______ G ______/  \_____ C ______/
 *
 * identity length = blob length - header - br_len - gz_len.
 *
 * The extension header (issue 9), present only when X is set, comes first,
 * before the group above; a value without stale windows or tags pays no byte:
 *
 *   +------+---------------------+-------------------------------------+
 *   | bits | ttl   | swr  | sie  | ntags | len | tag | len | tag | ... |
 *   | u8   | u32   | u32  | u32  | u8    | u8  |     | u8  |     |     |
 *   +------+---------------------+-------------------------------------+
 *           \___ bits & 0x01 ___/ \___________ bits & 0x02 ___________/
 *
 * bits: REPR_EXT_WINDOWS, REPR_EXT_TAGS; any other bit set, or a length
 * running past the blob, is a damaged blob (-EINVAL).  ttl: the seconds the
 * store was given for freshness (put_ttl(), its extra second included);
 * swr, sie: the stale-while-revalidate and stale-if-error windows.  The
 * store's expiry is set to fresh-until + swr + sie, so everything is
 * relative to it and survives whatever moves the expiry as a whole (a
 * snapshot translating clocks, a copy to Redis with PX):
 *
 *   fresh_until = expires - swr - sie      stored_at = fresh_until - ttl
 *
 * Tags: 1..REPR_TAGS_MAX of 1..REPR_TAG_MAX bytes each (docs/stale-and-tags.md
 * has the allowed bytes), in the order the PUT gave them.
 *
 * stamp: the stamp of the write the value came from.  Variants are made off
 * the shard and installed later by rewriting the item (exec.c), which gives
 * it a new store stamp; the tags keep the write's own, so a client holding
 * the tag the PUT answered still gets a 304, and compaction, which moves
 * the item, does not change the tags of a value with variants.
 *
 * ETags: each representation's 32-bit content hash (its bytes, seeded with
 * the Content-Type and the coding; the identity's in the store's `etag`, the
 * variants' in the blob) followed by the write's 32-bit store stamp
 * (store_item.stamp: where the write landed, hashed with a per-store random
 * key; for a value with variants the stamp in its header), as 16 hex
 * digits: "hhhhhhhhssssssss" (identity), "hhhhhhhhssssssss-br" and
 * "hhhhhhhhssssssss-gz".  A changed value keeps
 * its tag only if both halves collide (2^-64; docs/fastlane.md), where a
 * 32-bit hash alone kept it with probability 2^-32.  The suffix keeps the
 * three distinct even if two hashes collide.
 */
#ifndef RINGCACHE_CACHE_REPR_H
#define RINGCACHE_CACHE_REPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#define REPR_F_TYPE 0x0fu
#define REPR_F_CT   0x10u
#define REPR_F_BR   0x20u
#define REPR_F_GZIP 0x40u
#define REPR_F_EXT  0x80u
#define REPR_F_HDR  (REPR_F_CT | REPR_F_BR | REPR_F_GZIP | REPR_F_EXT)

#define REPR_EXT_WINDOWS 0x01u
#define REPR_EXT_TAGS    0x02u
#define REPR_TAGS_MAX    8u
#define REPR_TAG_MAX     128u
/* bits, windows, ntags, then each tag with its length byte */
#define REPR_EXT_MAX     (1u + 12u + 1u + REPR_TAGS_MAX * (1u + REPR_TAG_MAX))

#define REPR_TYPE_MAX 255u
#define REPR_HDR_MAX  (20u + 1u + REPR_TYPE_MAX)
#define REPR_ETAG_MAX 21u  /* "hhhhhhhhssssssss-br" with its quotes */

/* Content-Types stored as an index in flags, matched byte for byte.  Index 0
 * is the default of a PUT without Content-Type.  Exactly 16, so every value
 * of the type bits names one. */
#define REPR_TYPES(X)                           \
	X("application/octet-stream")           \
	X("application/json")                   \
	X("text/plain")                         \
	X("text/html")                          \
	X("text/plain; charset=utf-8")          \
	X("application/json; charset=utf-8")    \
	X("text/html; charset=utf-8")           \
	X("text/css")                           \
	X("text/javascript")                    \
	X("application/javascript")             \
	X("application/xml")                    \
	X("text/csv")                           \
	X("image/svg+xml")                      \
	X("image/png")                          \
	X("image/jpeg")                         \
	X("application/x-www-form-urlencoded")

enum repr_coding { REPR_IDENTITY = 0, REPR_BR = 1, REPR_GZIP = 2, REPR_NCODINGS = 3 };

struct repr_part {
	const uint8_t *p;
	uint32_t len;
	uint32_t etag;          /* content hash: the first half of the ETag */
};

/* The extension header, decoded (bits 0: none).  tags points at the
 * encoded list (length byte, bytes; ntags times), tags_len bytes. */
struct repr_ext {
	uint8_t bits;           /* REPR_EXT_* */
	uint8_t ntags;
	uint32_t ttl, swr, sie;
	const uint8_t *tags;
	uint32_t tags_len;
	uint32_t len;           /* bytes of the header in the blob */
};

/* A read-only view of a stored value; valid as long as the store item is. */
struct repr_view {
	struct repr_part part[REPR_NCODINGS];
	unsigned avail;         /* bit (1 << coding) for each stored coding */
	uint32_t stamp;         /* the write's stamp when the blob has variants */
	int type;               /* index in REPR_TYPES, or -1: type_str */
	const char *type_str;
	uint32_t type_len;
	struct repr_ext ext;    /* bits 0 without REPR_F_EXT */
};

/* A blob ready for store_set(): iov[0..iovcnt) with flags and etag. */
struct repr_blob {
	uint8_t flags;
	uint32_t etag;
	int iovcnt;
	struct iovec iov[5];
	uint8_t hdr[REPR_HDR_MAX];
};

/* Returns the index of a well-known Content-Type, or -1. */
int repr_type_index(const char *ct, size_t len);

/* The name of well-known type `i` (0..15) and its length. */
const char *repr_type_name(unsigned i, uint32_t *len);

/*
 * Builds the blob of `value` with Content-Type ct[0..ct_len) (ct_len <=
 * REPR_TYPE_MAX; 0: the default type) and the optional variants (NULL: none)
 * of the write whose store stamp is `stamp` (kept only with a variant).
 * The iovecs point at the caller's bytes and at b->hdr.
 */
void repr_build(struct repr_blob *b, const void *value, uint32_t len,
		const char *ct, size_t ct_len, const void *br, uint32_t br_len,
		const void *gz, uint32_t gz_len, uint32_t stamp);

/*
 * Writes the extension header of e (bits, and the fields they name; tags
 * already encoded, e->tags_len <= REPR_EXT_MAX - 14) to out, REPR_EXT_MAX
 * bytes of room; returns its length, 0 when e->bits is 0.
 */
uint32_t repr_ext_encode(uint8_t *out, const struct repr_ext *e);

/* Puts an encoded extension header ext[0..len) (repr_ext_encode(), kept by
 * the caller) at the front of blob b and sets REPR_F_EXT.  len 0: nothing. */
void repr_blob_ext(struct repr_blob *b, const uint8_t *ext, uint32_t len);

/* Decodes the extension header at the start of blob[0..len): 0, or -EINVAL. */
int repr_ext_decode(const uint8_t *blob, uint32_t len, struct repr_ext *e);

/*
 * The store-clock second an item stops being fresh: its expiry less its
 * stale windows (0: never, the item has no expiry).  An expiry smaller than
 * the windows (a damaged or foreign blob) is already stale: 1.
 */
static inline uint32_t repr_fresh_until(uint32_t expires, const struct repr_view *v)
{
	if (!expires || !(v->ext.bits & REPR_EXT_WINDOWS))
		return expires;
	uint64_t w = (uint64_t)v->ext.swr + v->ext.sie;
	return expires > w ? expires - (uint32_t)w : 1;
}

/* The slow half of repr_unpack(): a blob with a header.  0 or -EINVAL. */
int repr_unpack_hdr(const uint8_t *blob, uint32_t len, uint8_t flags,
		    uint32_t etag, struct repr_view *v);

/*
 * Splits a stored blob into its representations.  Returns 0, or -EINVAL
 * when the blob is not one repr_build() made (flags or lengths inconsistent).
 */
static inline int repr_unpack(const uint8_t *blob, uint32_t len, uint8_t flags,
			      uint32_t etag, struct repr_view *v)
{
	if (__builtin_expect((flags & ~REPR_F_TYPE) == 0, 1)) {
		v->part[REPR_IDENTITY].p = blob;
		v->part[REPR_IDENTITY].len = len;
		v->part[REPR_IDENTITY].etag = etag;
		v->avail = 1u << REPR_IDENTITY;
		v->type = flags & REPR_F_TYPE;
		v->ext.bits = 0;
		return 0;
	}
	return repr_unpack_hdr(blob, len, flags, etag, v);
}

/* The eight lowercase hex digits of v, first digit at the lowest address,
 * made in one register: each nibble spread to its own byte, then the ASCII
 * offset added per byte (no table lookups on the hit path). */
static inline uint64_t repr_hex8(uint32_t v)
{
	uint64_t x = v;

	x = (x | (x << 16)) & 0x0000ffff0000ffffull;
	x = (x | (x << 8)) & 0x00ff00ff00ff00ffull;
	x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0full;
	/* byte k holds nibble k; a byte of 10..15 gets 'a' - '0' - 10 more */
	uint64_t letters = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
	x += 0x3030303030303030ull + letters * (uint64_t)('a' - '0' - 10);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	x = __builtin_bswap64(x);     /* nibble 7 (the first digit) to the lowest address */
#endif
	return x;
}

/* Writes the quoted ETag of a representation, its content hash `etag` and
 * the write's store `stamp`, to out (REPR_ETAG_MAX bytes of room); returns
 * its length. */
static inline size_t repr_format_etag(char *out, uint32_t etag, uint32_t stamp,
				      unsigned coding)
{
	static const char suffix[REPR_NCODINGS][4] = { "\"", "-br\"", "-gz\"" };
	uint64_t h = repr_hex8(etag), s = repr_hex8(stamp);

	out[0] = '"';
	memcpy(out + 1, &h, 8);
	memcpy(out + 9, &s, 8);
	memcpy(out + 17, suffix[coding], 4);
	return coding == REPR_IDENTITY ? 18 : 21;
}

#endif
