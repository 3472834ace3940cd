/*
 * format.c - encoding and checking a snapshot file's bytes (format.h).
 * No I/O and no allocation: the callers read, this file judges.
 */
#include <libdeflate.h>
#include <string.h>

#include "format.h"

/* --- little-endian fields ------------------------------------------------ */

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t crc(const void *p, size_t n)
{
	return libdeflate_crc32(0, p, n);
}

const char *snap_err_str(enum snap_err e)
{
	switch (e) {
	case SNAP_OK: return "ok";
	case SNAP_E_FOREIGN: return "not a ringcached snapshot";
	case SNAP_E_VERSION: return "a snapshot of another format version";
	case SNAP_E_CORRUPT: return "corrupt";
	case SNAP_E_TRUNCATED: return "truncated";
	}
	return "?";
}

/* --- header --------------------------------------------------------------- */

enum {
	H_MAGIC = 0, H_VERSION = 8, H_HDR_LEN = 12, H_BOM = 16, H_BLOB = 24, H_SHARDS = 28,
	H_SAVED = 32, H_ITEMS = 40, H_FILE_LEN = 48, H_TABLE_OFF = 56, H_BLOCKS = 64,
	H_TABLE_CRC = 68, H_BLOCK_SIZE = 72, H_KEY_MAX = 76, H_HOST = 80,
	H_RESERVED = 144, H_CRC = 188,
};
_Static_assert(H_CRC + 4 == SNAP_HDR_LEN, "header layout");

void snap_header_encode(uint8_t *out, const struct snap_header *h)
{
	size_t hl = strnlen(h->host, SNAP_HOST_MAX);

	memset(out, 0, SNAP_HDR_LEN);
	memcpy(out + H_MAGIC, SNAP_MAGIC, SNAP_MAGIC_LEN);
	put32(out + H_VERSION, SNAP_VERSION);
	put32(out + H_HDR_LEN, SNAP_HDR_LEN);
	put64(out + H_BOM, SNAP_BOM);
	put32(out + H_BLOB, SNAP_BLOB_FORMAT);
	put32(out + H_SHARDS, h->shards);
	put64(out + H_SAVED, h->saved_ns);
	put64(out + H_ITEMS, h->items);
	put64(out + H_FILE_LEN, h->file_len);
	put64(out + H_TABLE_OFF, h->table_off);
	put32(out + H_BLOCKS, h->blocks);
	put32(out + H_TABLE_CRC, h->table_crc);
	put32(out + H_BLOCK_SIZE, SNAP_BLOCK_SIZE);
	put32(out + H_KEY_MAX, SNAP_KEY_MAX);
	memcpy(out + H_HOST, h->host, hl);
	put32(out + H_CRC, crc(out, H_CRC));
}

enum snap_err snap_header_parse(const uint8_t *p, size_t len, uint64_t file_size,
				struct snap_header *h)
{
	uint64_t table_len;

	if (len < SNAP_MAGIC_LEN || memcmp(p, SNAP_MAGIC, SNAP_MAGIC_LEN) != 0)
		return SNAP_E_FOREIGN;
	if (len < SNAP_HDR_LEN || file_size < SNAP_DATA_OFF)
		return SNAP_E_TRUNCATED;
	/* the version first: a later format may move everything after it */
	if (get32(p + H_VERSION) != SNAP_VERSION)
		return SNAP_E_VERSION;
	if (get32(p + H_HDR_LEN) != SNAP_HDR_LEN || get64(p + H_BOM) != SNAP_BOM ||
	    get32(p + H_CRC) != crc(p, H_CRC))
		return SNAP_E_CORRUPT;
	if (get32(p + H_BLOB) != SNAP_BLOB_FORMAT)
		return SNAP_E_VERSION;
	for (unsigned i = H_RESERVED; i < H_CRC; i++)
		if (p[i])
			return SNAP_E_CORRUPT;
	memset(h, 0, sizeof(*h));
	h->version = SNAP_VERSION;
	h->blob_format = SNAP_BLOB_FORMAT;
	h->shards = get32(p + H_SHARDS);
	h->saved_ns = get64(p + H_SAVED);
	h->items = get64(p + H_ITEMS);
	h->file_len = get64(p + H_FILE_LEN);
	h->table_off = get64(p + H_TABLE_OFF);
	h->blocks = get32(p + H_BLOCKS);
	h->table_crc = get32(p + H_TABLE_CRC);
	memcpy(h->host, p + H_HOST, SNAP_HOST_MAX);
	h->host[SNAP_HOST_MAX] = '\0';
	if (get32(p + H_BLOCK_SIZE) != SNAP_BLOCK_SIZE || get32(p + H_KEY_MAX) != SNAP_KEY_MAX ||
	    h->blocks > SNAP_BLOCKS_MAX || h->shards == 0)
		return SNAP_E_CORRUPT;
	table_len = (uint64_t)h->blocks * SNAP_TABLE_ENT;
	if (h->table_off < SNAP_DATA_OFF || h->table_off > h->file_len ||
	    h->file_len - h->table_off != table_len)
		return SNAP_E_CORRUPT;
	if (h->file_len != file_size)
		return SNAP_E_TRUNCATED;
	return SNAP_OK;
}

/* --- block table ------------------------------------------------------------ */

void snap_table_put(uint8_t *out, const struct snap_block_ent *e)
{
	put64(out, e->off);
	put32(out + 8, e->len);
	put32(out + 12, e->records);
}

enum snap_err snap_table_get(const uint8_t *p, const struct snap_header *h, uint32_t i,
			     struct snap_block_ent *out)
{
	const uint8_t *q = p + (size_t)i * SNAP_TABLE_ENT;
	struct snap_block_ent e = { get64(q), get32(q + 8), get32(q + 12) };

	/* in the data area, at least a header and one minimal record per record
	 * counted, and one block's size unless it is a single large record */
	if (i >= h->blocks || e.off < SNAP_DATA_OFF || e.off > h->table_off ||
	    e.len > h->table_off - e.off || e.len < SNAP_BLOCK_HDR || e.records == 0 ||
	    e.len - SNAP_BLOCK_HDR < (uint64_t)e.records * (SNAP_REC_HDR + 1) ||
	    (e.len > SNAP_BLOCK_SIZE && e.records != 1))
		return SNAP_E_CORRUPT;
	*out = e;
	return SNAP_OK;
}

enum snap_err snap_table_parse(const uint8_t *p, const struct snap_header *h,
			       struct snap_block_ent *out)
{
	uint64_t items = 0;

	if (crc(p, (size_t)h->blocks * SNAP_TABLE_ENT) != h->table_crc)
		return SNAP_E_CORRUPT;
	for (uint32_t i = 0; i < h->blocks; i++) {
		struct snap_block_ent e;

		if (snap_table_get(p, h, i, &e) != SNAP_OK)
			return SNAP_E_CORRUPT;
		items += e.records;
		if (out)
			out[i] = e;
	}
	return items == h->items ? SNAP_OK : SNAP_E_CORRUPT;
}

/* --- blocks ------------------------------------------------------------------- */

void snap_block_seal(uint8_t *hdr, uint32_t payload_len, uint32_t records, uint32_t payload_crc,
		     uint32_t shard, uint32_t seq)
{
	memcpy(hdr, SNAP_BLOCK_MAGIC, 4);
	put32(hdr + 4, payload_len);
	put32(hdr + 8, records);
	put32(hdr + 12, payload_crc);
	put32(hdr + 16, shard);
	put32(hdr + 20, seq);
	put32(hdr + 24, 0);
	put32(hdr + 28, crc(hdr, 28));
}

enum snap_err snap_block_check(const uint8_t *p, size_t len, const struct snap_block_ent *e)
{
	if (len != e->len || len < SNAP_BLOCK_HDR || memcmp(p, SNAP_BLOCK_MAGIC, 4) != 0 ||
	    get32(p + 28) != crc(p, 28) || get32(p + 4) != len - SNAP_BLOCK_HDR ||
	    get32(p + 8) != e->records || get32(p + 24) != 0)
		return SNAP_E_CORRUPT;
	if (crc(p + SNAP_BLOCK_HDR, len - SNAP_BLOCK_HDR) != get32(p + 12))
		return SNAP_E_CORRUPT;
	return SNAP_OK;
}

/* --- records -------------------------------------------------------------------- */

unsigned snap_rec_put_hdr(uint8_t *out, const struct snap_rec *r)
{
	put16(out, (uint16_t)r->key_len);
	out[2] = r->flags;
	out[3] = r->expiry_ms ? SNAP_REC_F_EXP : 0;
	put32(out + 4, r->value_len);
	put32(out + 8, r->etag);
	if (!r->expiry_ms)
		return SNAP_REC_HDR;
	put64(out + SNAP_REC_HDR, r->expiry_ms);
	return SNAP_REC_HDR + SNAP_REC_EXP;
}

enum snap_err snap_rec_next(const uint8_t *p, size_t end, size_t *off, struct snap_rec *r)
{
	size_t o = *off;
	uint8_t rf;

	if (o > end || end - o < SNAP_REC_HDR)
		return SNAP_E_CORRUPT;
	r->key_len = get16(p + o);
	r->flags = p[o + 2];
	rf = p[o + 3];
	r->value_len = get32(p + o + 4);
	r->etag = get32(p + o + 8);
	o += SNAP_REC_HDR;
	if ((rf & ~SNAP_REC_F_EXP) || r->key_len == 0 || r->key_len > SNAP_KEY_MAX)
		return SNAP_E_CORRUPT;
	r->expiry_ms = 0;
	if (rf & SNAP_REC_F_EXP) {
		if (end - o < SNAP_REC_EXP)
			return SNAP_E_CORRUPT;
		r->expiry_ms = get64(p + o);
		o += SNAP_REC_EXP;
		if (r->expiry_ms == 0)
			return SNAP_E_CORRUPT;
	}
	if (end - o < r->key_len || end - o - r->key_len < r->value_len)
		return SNAP_E_CORRUPT;
	r->key = p + o;
	r->value = p + o + r->key_len;
	*off = o + r->key_len + r->value_len;
	return SNAP_OK;
}

/* --- clocks ------------------------------------------------------------------------ */

#define NS 1000000000ull
#define MS_NS 1000000ull

uint64_t snap_expiry_to_wall(uint32_t expires, uint64_t mono_ns, uint64_t wall_ns)
{
	uint64_t at;

	if (!expires)
		return 0;
	at = (uint64_t)(expires - 1) * NS;      /* the monotonic instant it stops */
	if (at <= mono_ns)
		return UINT64_MAX;
	/* (wall_ns + at - mono_ns) / 1 ms, rounded up; no overflow below 2^64 ns */
	return (wall_ns + (at - mono_ns) + MS_NS - 1) / MS_NS;
}

uint32_t snap_wall_to_ttl(uint64_t expiry_ms, uint32_t store_now, uint64_t mono_ns,
			  uint64_t wall_ns)
{
	uint64_t wall_ms = wall_ns / MS_NS, left_ns, e;

	if (expiry_ms <= wall_ms)
		return 0;
	/* at most ~584 years ahead in ns; beyond, the store clock caps it anyway */
	left_ns = expiry_ms - wall_ms > UINT64_MAX / MS_NS / 2 ? UINT64_MAX / 2
							      : (expiry_ms - wall_ms) * MS_NS;
	if (left_ns > UINT64_MAX / 2 - mono_ns)
		left_ns = UINT64_MAX / 2 - mono_ns;
	/* store expiry e: stops being served at monotonic (e - 1) s >= mono + left */
	e = (mono_ns + left_ns + NS - 1) / NS + 1;
	if (e <= store_now)
		return 1;       /* cannot happen with a store clock read before mono_ns */
	if (e - store_now > UINT32_MAX - store_now)
		return UINT32_MAX - store_now;
	return (uint32_t)(e - store_now);
}

/* --- the whole image ------------------------------------------------------------------ */

enum snap_err snap_image_walk(const uint8_t *p, size_t len,
			      void (*rec)(void *arg, const struct snap_rec *r), void *arg)
{
	struct snap_header h;
	enum snap_err e = snap_header_parse(p, len, len, &h);

	if (e == SNAP_OK)
		e = snap_table_parse(p + h.table_off, &h, NULL);
	for (uint32_t i = 0; e == SNAP_OK && i < h.blocks; i++) {
		struct snap_block_ent b;
		struct snap_rec r;
		size_t off = SNAP_BLOCK_HDR;

		snap_table_get(p + h.table_off, &h, i, &b);
		e = snap_block_check(p + b.off, b.len, &b);
		for (uint32_t k = 0; e == SNAP_OK && k < b.records; k++) {
			e = snap_rec_next(p + b.off, b.len, &off, &r);
			if (e == SNAP_OK && rec)
				rec(arg, &r);
		}
		if (e == SNAP_OK && off != b.len)
			e = SNAP_E_CORRUPT;     /* bytes after the last record */
	}
	return e;
}
