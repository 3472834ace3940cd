/*
 * format.h - the bytes of a snapshot file (--snapshot PATH): encoding and
 * checking, no I/O.  The loader (load.c), the writer (save.c), the unit
 * tests and the fuzz target (tests/fuzz/fuzz_snapshot.c) all go through
 * these functions, so what the fuzzer checks is what the daemon runs.
 *
 * One file, written by every shard at once:
 *
 *   0        4096                                        table_off   file_len
 *   +--------+-------+-------+-------+-- ... --+-------+-------------+
 *   | header | block | block | block |         | block | block table |
 *   +--------+-------+-------+-------+-- ... --+-------+-------------+
 *             blocks of all shards, in the order they claimed their space
 *
 * Every integer is little-endian, whatever the host (x86-64 and ARM64 both
 * are, so it costs nothing there); no field depends on the word size.
 *
 * Header (SNAP_HDR_LEN bytes at offset 0, the rest of the first 4 KiB zero):
 *
 *   0   magic "\x89RCSNAP\n"    8   version (1)        12  header length (192)
 *   16  byte-order mark 0x0102030405060708 (u64)
 *   24  blob format (1)         28  shards at save     32  saved at (wall ns)
 *   40  items                   48  file length        56  table offset
 *   64  blocks                  68  table CRC          72  block size (1 MiB)
 *   76  key max (1024)          80  host (64 bytes, NUL-padded; for the log)
 *   144 reserved (zero)         188 header CRC (of bytes 0..187)
 *
 * Block (a 32-byte header, then `records` records, at most SNAP_BLOCK_SIZE
 * bytes in all unless it holds one record that is larger by itself):
 *
 *   0 magic "RCBK"   4 payload length   8 records   12 payload CRC
 *   16 shard   20 sequence in that shard   24 reserved (0)   28 header CRC
 *
 * Record:
 *
 *   0 key length (u16, 1..1024)   2 store flags (u8)   3 record flags (u8)
 *   4 value length (u32)   8 etag (u32)   [12 expiry (u64, wall-clock ms)]
 *   then the key, then the value: the store's value blob as it was
 *   record flags: bit 0 = an expiry follows; the other bits must be 0
 *
 * Block table entry (16 bytes): offset (u64), length with header (u32),
 * records (u32).
 *
 * CRCs are CRC-32 (the gzip polynomial, libdeflate_crc32: a few GB/s).
 * Everything read from a file is hostile: every length is checked against
 * what contains it before it is used, and a check that fails refuses the
 * whole file (the loader then drops whatever it had loaded).
 *
 * Why one file of interleaved blocks, not one file or one section per
 * shard: a single rename replaces the whole snapshot atomically (a
 * directory of per-shard files cannot be swapped in one step); the shards
 * need no agreement on sizes before writing (a section per shard would,
 * or leave holes), only one atomic add per 1 MiB block; and at load the
 * block table lets any number of shards take blocks as they go, which a
 * per-shard layout would tie to the old shard count (the items move to
 * new owners anyway: the key hash's seed is new at every start).
 *
 * What the header checks and what it does not: the magic (not ours:
 * never loaded, never replaced), the version and the blob format (another
 * version: refused), the byte order, the CRCs and every length.  Not the
 * instance, the host or the shard count, which are only recorded for the
 * log: a snapshot copied to a new host prewarms it (with --redis the items
 * are checked against L2 anyway), and any shard count loads it.  Not the
 * key hash's seed, which is not kept: keys are hashed again at load.
 *
 * "Blob format": the value blob and the store flags are the cache layer's
 * representation (src/cache/repr.h).  A change to that layout must raise
 * SNAP_BLOB_FORMAT, so older snapshots are refused instead of served
 * garbled.
 */
#ifndef RINGCACHE_SNAPSHOT_FORMAT_H
#define RINGCACHE_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC        "\x89RCSNAP\n"
#define SNAP_MAGIC_LEN    8u
#define SNAP_VERSION      1u
#define SNAP_BLOB_FORMAT  1u
#define SNAP_HDR_LEN      192u
#define SNAP_DATA_OFF     4096u          /* first block */
#define SNAP_HOST_MAX     64u
#define SNAP_BOM          0x0102030405060708ull

#define SNAP_BLOCK_MAGIC  "RCBK"
#define SNAP_BLOCK_HDR    32u
#define SNAP_BLOCK_SIZE   (1u << 20)     /* a block, header included, unless one big record */
#define SNAP_REC_HDR      12u
#define SNAP_REC_EXP      8u
#define SNAP_REC_F_EXP    0x01u
#define SNAP_KEY_MAX      1024u          /* STORE_KEY_MAX */
#define SNAP_TABLE_ENT    16u
#define SNAP_BLOCKS_MAX   (1u << 24)     /* 16 TiB of 1 MiB blocks */

/* What a check found wrong, for the loader's message. */
enum snap_err {
	SNAP_OK = 0,
	SNAP_E_FOREIGN,     /* not a snapshot (magic) */
	SNAP_E_VERSION,     /* a snapshot of another version or blob format */
	SNAP_E_CORRUPT,     /* a checksum, a length or a field is wrong */
	SNAP_E_TRUNCATED,   /* shorter (or longer) than its header says */
};

const char *snap_err_str(enum snap_err e);

struct snap_header {
	uint32_t version;
	uint32_t blob_format;
	uint32_t shards;
	uint64_t saved_ns;      /* CLOCK_REALTIME at save */
	uint64_t items;
	uint64_t file_len;
	uint64_t table_off;
	uint32_t blocks;
	uint32_t table_crc;
	char host[SNAP_HOST_MAX + 1];
};

/* Writes the header into out[SNAP_HDR_LEN]. */
void snap_header_encode(uint8_t *out, const struct snap_header *h);

/*
 * Checks the first `len` bytes of a file whose size is `file_size` and
 * fills *h.  Checks the magic (FOREIGN), version and blob format (VERSION),
 * the byte-order mark, the CRC and every field (CORRUPT), and that the file
 * is as long as the header says (TRUNCATED).
 */
enum snap_err snap_header_parse(const uint8_t *p, size_t len, uint64_t file_size,
				struct snap_header *h);

struct snap_block_ent {
	uint64_t off;
	uint32_t len;           /* SNAP_BLOCK_HDR + payload */
	uint32_t records;
};

void snap_table_put(uint8_t *out, const struct snap_block_ent *e);

/* Decodes and checks entry i of the table at p (not its CRC). */
enum snap_err snap_table_get(const uint8_t *p, const struct snap_header *h, uint32_t i,
			     struct snap_block_ent *out);

/*
 * Checks the block table (h->blocks entries at `p`, as read from
 * h->table_off) against its CRC and the header, and decodes it into
 * out[h->blocks] (unless out is NULL).  Every block must lie between SNAP_DATA_OFF and the
 * table, hold at least one record, and stay within SNAP_BLOCK_SIZE unless
 * it holds a single record; the records add up to h->items.
 */
enum snap_err snap_table_parse(const uint8_t *p, const struct snap_header *h,
			       struct snap_block_ent *out);

/* Fills the 32-byte header of a block whose payload follows it at hdr + 32
 * (payload CRC given, so the payload may be gathered from several places). */
void snap_block_seal(uint8_t *hdr, uint32_t payload_len, uint32_t records, uint32_t payload_crc,
		     uint32_t shard, uint32_t seq);

/* Checks a block read whole into p[0..len) against its table entry: magic,
 * header CRC, lengths, record count, payload CRC. */
enum snap_err snap_block_check(const uint8_t *p, size_t len, const struct snap_block_ent *e);

/* A record decoded in place: pointers into the block. */
struct snap_rec {
	const uint8_t *key;
	const uint8_t *value;
	uint32_t key_len;
	uint32_t value_len;
	uint32_t etag;
	uint8_t flags;          /* the store's */
	uint64_t expiry_ms;     /* wall clock; 0: none */
};

/* The bytes a record takes. */
static inline uint64_t snap_rec_size(uint32_t key_len, uint32_t value_len, bool expiry)
{
	return SNAP_REC_HDR + (expiry ? SNAP_REC_EXP : 0) + (uint64_t)key_len + value_len;
}

/* Writes a record's header (not the key or value) to out; returns its length. */
unsigned snap_rec_put_hdr(uint8_t *out, const struct snap_rec *r);

/*
 * Decodes the record at p[*off], at most `end` bytes into the buffer, and
 * advances *off past it.  CORRUPT when a length runs past `end`, a key
 * length is out of 1..SNAP_KEY_MAX, or reserved flag bits are set.
 */
enum snap_err snap_rec_next(const uint8_t *p, size_t end, size_t *off, struct snap_rec *r);

/*
 * Clocks.  The store's expiry is on CLOCK_MONOTONIC (ringcache/clock.h),
 * which starts again at a reboot, so a snapshot stores the wall-clock
 * instant at which the item stops being served.  An item with store expiry
 * E stops being served once the store clock (monotonic seconds + 1) reaches
 * E, that is at monotonic instant (E - 1) s.  `mono_ns` and `wall_ns` are
 * the two clocks read at one moment.
 *
 * snap_expiry_to_wall: the wall-clock ms (rounded up) of store expiry E,
 * 0 for E == 0 (none), or UINT64_MAX when E has passed at mono_ns.
 *
 * snap_wall_to_ttl: the TTL to give store_set() at store time `store_now`
 * so that the item stops being served at wall-clock ms `expiry_ms`, never
 * earlier and at most a second later; 0 when it has passed.  expiry_ms 0
 * is never called with (no expiry).
 */
uint64_t snap_expiry_to_wall(uint32_t expires, uint64_t mono_ns, uint64_t wall_ns);
uint32_t snap_wall_to_ttl(uint64_t expiry_ms, uint32_t store_now, uint64_t mono_ns,
			  uint64_t wall_ns);

/*
 * The whole file in memory, every check the loader makes, for the fuzz
 * target and the tests: header, table, every block, every record.  Calls
 * rec(arg, r) for each record (may be NULL).  Returns the first error, or
 * SNAP_OK.
 */
enum snap_err snap_image_walk(const uint8_t *p, size_t len,
			      void (*rec)(void *arg, const struct snap_rec *r), void *arg);

#endif
