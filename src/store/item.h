/*
 * item.h - the byte layout of one item in a segment.  Internal to the store.
 *
 * Items are packed back to back with no alignment, so the only per-item cost
 * in a segment is this header, whose optional fields are left out when they
 * are zero:
 *
 *   byte 0        fmt: bit 0     dead (overwritten, deleted or dropped)
 *                      bit 1     expiry present
 *                      bit 2     etag present
 *                      bit 3     flags present
 *                      bits 4-5  value length bytes - 1 (1..4)
 *                      bits 6-7  bits 8-9 of (key length - 1)
 *   byte 1        bits 0-7 of (key length - 1)
 *   1-4 bytes     value length, little-endian
 *   [4 bytes]     expiry, absolute store time
 *   [4 bytes]     etag
 *   [1 byte]      flags (8 bits, opaque to the store)
 *   key bytes, then value bytes
 *
 * A 10-byte key with a 100-byte value, an etag and flags takes an 8-byte
 * header (12 with an expiry); the largest header (4-byte value length,
 * expiry, etag and flags) is 15 bytes.  With the index slot's 8.98 bytes that
 * keeps every item's metadata within 24 bytes (23.98 at most).  Multi-byte
 * fields are stored little-endian through memcpy, which is a plain load on
 * x86-64 and ARM64 whatever the alignment.
 */
#ifndef RINGCACHE_STORE_ITEM_H
#define RINGCACHE_STORE_ITEM_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define ITEM_DEAD      0x01u
#define ITEM_HAS_EXP   0x02u
#define ITEM_HAS_ETAG  0x04u
#define ITEM_HAS_FLAGS 0x08u
#define ITEM_HDR_MAX   15u

/* An item's decoded header. */
struct item_hdr {
	uint32_t key_len;
	uint32_t value_len;
	uint32_t expires;
	uint32_t etag;
	uint8_t flags;
	uint8_t hdr_len;
	bool dead;
};

static inline unsigned item_vlen_bytes(uint32_t value_len)
{
	if (value_len < (1u << 8))
		return 1;
	if (value_len < (1u << 16))
		return 2;
	if (value_len < (1u << 24))
		return 3;
	return 4;
}

static inline unsigned item_hdr_len(uint32_t value_len, uint32_t expires, uint32_t etag,
				    uint8_t flags)
{
	return 2 + item_vlen_bytes(value_len) + (expires ? 4 : 0) + (etag ? 4 : 0) +
	       (flags ? 1 : 0);
}

static inline uint64_t item_size(uint32_t key_len, uint32_t value_len, uint32_t expires,
				 uint32_t etag, uint8_t flags)
{
	return (uint64_t)item_hdr_len(value_len, expires, etag, flags) + key_len + value_len;
}

/* Writes the header at p and returns its length; the key and value follow. */
static inline unsigned item_put_hdr(uint8_t *p, uint32_t key_len, uint32_t value_len,
				    uint32_t expires, uint32_t etag, uint8_t flags)
{
	unsigned vb = item_vlen_bytes(value_len);
	uint32_t k = key_len - 1;
	unsigned n = 2;

	p[0] = (uint8_t)((expires ? ITEM_HAS_EXP : 0) | (etag ? ITEM_HAS_ETAG : 0) |
			 (flags ? ITEM_HAS_FLAGS : 0) | ((vb - 1) << 4) | ((k >> 8) << 6));
	p[1] = (uint8_t)k;
	for (unsigned i = 0; i < vb; i++)
		p[n++] = (uint8_t)(value_len >> (8 * i));
	if (expires) {
		memcpy(p + n, &expires, 4);
		n += 4;
	}
	if (etag) {
		memcpy(p + n, &etag, 4);
		n += 4;
	}
	if (flags)
		p[n++] = flags;
	return n;
}

static inline void item_get_hdr(const uint8_t *p, struct item_hdr *h)
{
	uint8_t fmt = p[0];
	unsigned vb = ((fmt >> 4) & 3u) + 1;
	unsigned n = 2;

	h->key_len = ((((uint32_t)fmt >> 6) << 8) | p[1]) + 1;
	h->value_len = 0;
	for (unsigned i = 0; i < vb; i++)
		h->value_len |= (uint32_t)p[n++] << (8 * i);
	h->expires = 0;
	h->etag = 0;
	h->flags = 0;
	if (fmt & ITEM_HAS_EXP) {
		memcpy(&h->expires, p + n, 4);
		n += 4;
	}
	if (fmt & ITEM_HAS_ETAG) {
		memcpy(&h->etag, p + n, 4);
		n += 4;
	}
	if (fmt & ITEM_HAS_FLAGS)
		h->flags = p[n++];
	h->hdr_len = (uint8_t)n;
	h->dead = fmt & ITEM_DEAD;
}

/* The key's length without decoding the rest: the index compares keys. */
static inline uint32_t item_key_len(const uint8_t *p)
{
	return ((((uint32_t)p[0] >> 6) << 8) | p[1]) + 1;
}

static inline const uint8_t *item_key(const uint8_t *p)
{
	uint8_t fmt = p[0];

	return p + 2 + ((fmt >> 4) & 3u) + 1 + ((fmt & ITEM_HAS_EXP) ? 4 : 0) +
	       ((fmt & ITEM_HAS_ETAG) ? 4 : 0) + ((fmt & ITEM_HAS_FLAGS) ? 1 : 0);
}

static inline uint64_t item_total(const struct item_hdr *h)
{
	return (uint64_t)h->hdr_len + h->key_len + h->value_len;
}

static inline void item_mark_dead(uint8_t *p)
{
	p[0] |= ITEM_DEAD;
}

#endif
