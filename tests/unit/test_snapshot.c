/*
 * test_snapshot.c - the snapshot file (src/snapshot/format.c) and a whole
 * save and load in process (save.c, load.c, snap.c) through real stores,
 * real files and io_uring, with threads standing in for the shards.
 *
 * Format: every field of the header, a block and a record is checked, and
 * flipping any byte of a file refuses it.  Clocks: an item stops being
 * served at the same wall-clock instant after a reload, never earlier and
 * at most a second later, wherever the monotonic clock starts.  Save and
 * load: items come back in the shard that owns them under a new hash seed
 * and another shard count, with their bytes, flags, etag and TTL; expired
 * ones do not; a value larger than a block; a file corrupt in its middle
 * is refused whole (every store emptied); a foreign file is never replaced.
 */
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cache/repr.h"
#include "ringcache/clock.h"
#include "ringcache/hash.h"
#include "ringcache/snapshot.h"
#include "ringcache/store.h"
#include "snapshot/format.h"

#define NS 1000000000ull

/* --- format ------------------------------------------------------------------ */

static void test_header(void)
{
	struct snap_header h = {
		.shards = 3, .saved_ns = 1700000000123456789ull, .items = 42,
		.file_len = 4096 + 1000 + 32, .table_off = 4096 + 1000, .blocks = 2,
		.table_crc = 0xdeadbeef,
	}, g;
	uint8_t p[SNAP_HDR_LEN];

	snprintf(h.host, sizeof(h.host), "host-1");
	snap_header_encode(p, &h);
	CHECK_EQ(snap_header_parse(p, sizeof(p), h.file_len, &g), SNAP_OK);
	CHECK_EQ(g.shards, 3);
	CHECK(g.saved_ns == h.saved_ns);
	CHECK_EQ(g.items, 42);
	CHECK_EQ(g.table_off, 4096 + 1000);
	CHECK_EQ(g.blocks, 2);
	CHECK(g.table_crc == 0xdeadbeef);
	CHECK(!strcmp(g.host, "host-1"));
	/* the file's real size must be the header's */
	CHECK_EQ(snap_header_parse(p, sizeof(p), h.file_len - 1, &g), SNAP_E_TRUNCATED);
	CHECK_EQ(snap_header_parse(p, sizeof(p), h.file_len + 1, &g), SNAP_E_TRUNCATED);
	CHECK_EQ(snap_header_parse(p, 100, h.file_len, &g), SNAP_E_TRUNCATED);
	CHECK_EQ(snap_header_parse(p, 4, h.file_len, &g), SNAP_E_FOREIGN);
	/* every byte matters: the magic makes it foreign, the version another
	 * version, anything else corrupt */
	unsigned bad = 0;
	for (unsigned i = 0; i < SNAP_HDR_LEN; i++) {
		for (unsigned bit = 0; bit < 8; bit += 3) {
			enum snap_err want = i < 8 ? SNAP_E_FOREIGN : i < 12 ? SNAP_E_VERSION
									 : SNAP_E_CORRUPT;
			p[i] ^= (uint8_t)(1u << bit);
			enum snap_err e = snap_header_parse(p, sizeof(p), h.file_len, &g);
			/* a changed file length is caught by the CRC first */
			bad += e != want;
			p[i] ^= (uint8_t)(1u << bit);
		}
	}
	CHECK_EQ(bad, 0);
	/* fields checked beyond the CRC: a header that is consistent with its
	 * CRC but not with itself */
	struct snap_header w = h;
	w.table_off = 100;     /* inside the header */
	snap_header_encode(p, &w);
	CHECK_EQ(snap_header_parse(p, sizeof(p), w.file_len, &g), SNAP_E_CORRUPT);
	w = h;
	w.blocks = 3;          /* the table would run past the end */
	snap_header_encode(p, &w);
	CHECK_EQ(snap_header_parse(p, sizeof(p), w.file_len, &g), SNAP_E_CORRUPT);
	w = h;
	w.blocks = SNAP_BLOCKS_MAX + 1;
	w.file_len = w.table_off + (uint64_t)w.blocks * SNAP_TABLE_ENT;
	snap_header_encode(p, &w);
	CHECK_EQ(snap_header_parse(p, sizeof(p), w.file_len, &g), SNAP_E_CORRUPT);
	w = h;
	w.shards = 0;
	snap_header_encode(p, &w);
	CHECK_EQ(snap_header_parse(p, sizeof(p), w.file_len, &g), SNAP_E_CORRUPT);
}

static void test_records(void)
{
	uint8_t buf[4096];
	struct snap_rec r = { .key_len = 3, .value_len = 5, .etag = 77, .flags = 0x21,
			      .expiry_ms = 1234567 }, g;
	size_t off = 0, n;

	n = snap_rec_put_hdr(buf, &r);
	CHECK_EQ(n, SNAP_REC_HDR + SNAP_REC_EXP);
	memcpy(buf + n, "keyvalue", 8);
	n += 8;
	CHECK_EQ(snap_rec_size(3, 5, true), n);
	CHECK_EQ(snap_rec_next(buf, n, &off, &g), SNAP_OK);
	CHECK_EQ(off, n);
	CHECK(g.key_len == 3 && !memcmp(g.key, "key", 3));
	CHECK(g.value_len == 5 && !memcmp(g.value, "value", 5));
	CHECK(g.etag == 77 && g.flags == 0x21 && g.expiry_ms == 1234567);
	/* every shorter end is refused, never read past */
	for (size_t end = 0; end < n; end++) {
		off = 0;
		CHECK_EQ(snap_rec_next(buf, end, &off, &g), SNAP_E_CORRUPT);
	}
	/* no expiry: 8 bytes less */
	r.expiry_ms = 0;
	CHECK_EQ(snap_rec_put_hdr(buf, &r), SNAP_REC_HDR);
	/* key length 0 and 1025, reserved flag bits, an expiry of 0 */
	r.key_len = 1;
	n = snap_rec_put_hdr(buf, &r);
	buf[0] = 0;
	off = 0;
	CHECK_EQ(snap_rec_next(buf, sizeof(buf), &off, &g), SNAP_E_CORRUPT);
	buf[0] = 1;
	buf[1] = 4;     /* 1025 */
	off = 0;
	CHECK_EQ(snap_rec_next(buf, sizeof(buf), &off, &g), SNAP_E_CORRUPT);
	buf[1] = 4;
	buf[0] = 0;     /* 1024: fine */
	off = 0;
	CHECK_EQ(snap_rec_next(buf, sizeof(buf), &off, &g), SNAP_OK);
	buf[3] = 0x02;
	off = 0;
	CHECK_EQ(snap_rec_next(buf, sizeof(buf), &off, &g), SNAP_E_CORRUPT);
	buf[3] = SNAP_REC_F_EXP;
	memset(buf + SNAP_REC_HDR, 0, 8);
	off = 0;
	CHECK_EQ(snap_rec_next(buf, sizeof(buf), &off, &g), SNAP_E_CORRUPT);
	/* a value length that runs past the end, near 2^32 */
	buf[3] = 0;
	buf[4] = buf[5] = buf[6] = buf[7] = 0xff;
	off = 0;
	CHECK_EQ(snap_rec_next(buf, sizeof(buf), &off, &g), SNAP_E_CORRUPT);
	/* an offset past the end */
	off = sizeof(buf) + 10;
	CHECK_EQ(snap_rec_next(buf, sizeof(buf), &off, &g), SNAP_E_CORRUPT);
}

static void test_blocks_and_table(void)
{
	uint8_t blk[SNAP_BLOCK_HDR + 40];
	struct snap_block_ent e = { 4096, sizeof(blk), 2 };
	uint8_t t[2 * SNAP_TABLE_ENT];
	struct snap_header h = { .items = 3, .table_off = 8192, .blocks = 2 };
	struct snap_block_ent out[2];
	unsigned bad = 0;

	memset(blk + SNAP_BLOCK_HDR, 0xab, 40);
	snap_block_seal(blk, 40, 2, libdeflate_crc32(0, blk + SNAP_BLOCK_HDR, 40), 1, 9);
	CHECK_EQ(snap_block_check(blk, sizeof(blk), &e), SNAP_OK);
	CHECK_EQ(snap_block_check(blk, sizeof(blk) - 1, &e), SNAP_E_CORRUPT);
	for (unsigned i = 0; i < sizeof(blk); i++) {
		blk[i] ^= 0x10;
		bad += snap_block_check(blk, sizeof(blk), &e) != SNAP_E_CORRUPT;
		blk[i] ^= 0x10;
	}
	CHECK_EQ(bad, 0);
	e.records = 3;  /* the table says otherwise */
	CHECK_EQ(snap_block_check(blk, sizeof(blk), &e), SNAP_E_CORRUPT);

	snap_table_put(t, &(struct snap_block_ent){ 4096, 100, 2 });
	snap_table_put(t + SNAP_TABLE_ENT, &(struct snap_block_ent){ 4196, 64, 1 });
	h.table_crc = libdeflate_crc32(0, t, sizeof(t));
	CHECK_EQ(snap_table_parse(t, &h, out), SNAP_OK);
	CHECK(out[1].off == 4196 && out[1].len == 64 && out[1].records == 1);
	h.items = 4;    /* records do not add up */
	CHECK_EQ(snap_table_parse(t, &h, out), SNAP_E_CORRUPT);
	h.items = 3;
	/* entries that point outside the data, or hold too little */
	struct snap_block_ent bads[] = {
		{ 100, 64, 1 },                 /* in the header */
		{ 8190, 64, 1 },                /* runs into the table */
		{ 4096, 31, 1 },                /* shorter than a block header */
		{ 4096, 64, 0 },                /* no record */
		{ 4096, 40, 1 },                /* no room for a record */
		{ 4096, SNAP_BLOCK_SIZE + 1, 2 },  /* over a block with two records */
		{ UINT64_MAX - 10, 64, 1 },     /* wraps */
	};
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct snap_header hh = h;
		struct snap_block_ent got;
		hh.table_off = bads[i].len > SNAP_BLOCK_SIZE ? 4096 + SNAP_BLOCK_SIZE + 1 : 8192;
		snap_table_put(t, &bads[i]);
		CHECK_EQ(snap_table_get(t, &hh, 0, &got), SNAP_E_CORRUPT);
	}
}

/*
 * Clocks: an item saved with store expiry E (monotonic) and loaded after
 * `down` seconds, by a process whose monotonic clock started elsewhere,
 * stops being served at the same wall-clock instant: never earlier, at
 * most a second later.
 */
static void test_clocks(void)
{
	unsigned bad_early = 0, bad_late = 0, checked = 0;

	CHECK(snap_expiry_to_wall(0, 5 * NS, 1000 * NS) == 0);
	CHECK(snap_expiry_to_wall(6, 5 * NS, 1000 * NS) == UINT64_MAX);  /* stopped at mono 5 s */
	CHECK(snap_expiry_to_wall(7, 5 * NS, 1000 * NS) == 1001000);     /* at mono 6 s: wall 1001 s */
	CHECK_EQ(snap_wall_to_ttl(1000, 5, 4 * NS, 1000 * 1000000ull), 0);   /* passed */
	for (uint64_t frac = 0; frac < NS; frac += NS / 7) {
		for (uint32_t E = 20; E < 200; E += 37) {
			uint64_t mono1 = 9 * NS + frac, wall1 = 1700000000 * NS + frac / 3;
			uint64_t ms = snap_expiry_to_wall(E, mono1, wall1);
			/* the wall-clock instant the first process stops serving it */
			uint64_t stop_wall = wall1 + ((uint64_t)(E - 1) * NS - mono1);

			for (uint64_t down = 0; down < 100 * NS; down += 13 * NS + 123456789) {
				uint64_t mono2 = 3 * NS + frac / 2, wall2 = wall1 + down;
				uint32_t now2 = (uint32_t)(mono2 / NS) + 1;
				uint32_t ttl = snap_wall_to_ttl(ms, now2, mono2, wall2);
				if (stop_wall <= wall2) {
					/* passed, or within the millisecond rounding */
					bad_early += ttl != 0 && stop_wall + 1000000 <= wall2;
					continue;
				}
				/* the second process stops at mono (now2 + ttl - 1) s */
				uint64_t stop2 = wall2 + ((uint64_t)(now2 + ttl - 1) * NS - mono2);
				checked++;
				bad_early += stop2 < stop_wall;
				bad_late += stop2 > stop_wall + NS + 1000000;
			}
		}
	}
	CHECK(checked > 100);
	CHECK_EQ(bad_early, 0);
	CHECK_EQ(bad_late, 0);
	/* far future expiries cap at the store clock's range */
	CHECK(snap_wall_to_ttl(UINT64_MAX, 10, 9 * NS, 1000 * NS) == UINT32_MAX - 10);
}

/* --- save and load ------------------------------------------------------------ */

#define NKEYS 30000
#define BIG_KEY 7       /* key 7 holds a value larger than a block */
#define BIG_LEN ((3u << 19) + 11)

struct shard_arg {
	struct snap *s;
	unsigned id;
	struct store *st;
	bool save;
};

static void *run_shard(void *p)
{
	struct shard_arg *a = p;

	if (a->save)
		snap_save(a->s, a->id, a->st);
	else
		snap_load(a->s, a->id, a->st);
	return NULL;
}

static void run_shards(struct snap *s, struct store **st, unsigned n, bool save)
{
	pthread_t t[8];
	struct shard_arg a[8];

	for (unsigned i = 0; i < n; i++) {
		a[i] = (struct shard_arg){ s, i, st[i], save };
		pthread_create(&t[i], NULL, run_shard, &a[i]);
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
}

static struct store *new_store(size_t memory, size_t max_value)
{
	struct store_config cfg = {
		.memory = memory, .max_value = max_value, .hugepages = STORE_HUGEPAGES_OFF,
		.numa_node = -1,
	};
	struct store *st = NULL;

	CHECK_EQ(store_create(&st, &cfg), 0);
	store_tick(st, clock_store_now());
	return st;
}

static uint32_t value_len(uint32_t k)
{
	return k == BIG_KEY ? BIG_LEN : 20 + k % 300;
}

static void fill_value(uint8_t *p, uint32_t k, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(k * 31 + i * 7);
}

static size_t key_of(char *buf, uint32_t k)
{
	return (size_t)snprintf(buf, 32, "snap-key-%u", k);
}

/* Key k: a TTL of 1000 s when k % 3 == 1, 1 s (expired by the load) when
 * k % 3 == 2 and k % 7 == 0, none otherwise; flags k % 16 (a built-in
 * Content-Type: the blob is the raw value), etag k + 1. */
static uint32_t ttl_of(uint32_t k)
{
	return k % 3 == 1 ? 1000 : (k % 3 == 2 && k % 7 == 0) ? 1 : 0;
}

static void fill_stores(struct store **st, unsigned n)
{
	static uint8_t val[BIG_LEN];

	for (uint32_t k = 0; k < NKEYS; k++) {
		char key[32];
		size_t kl = key_of(key, k);
		uint64_t h = hash_key(key, kl);
		uint32_t len = value_len(k);
		struct iovec iov = { val, len };

		fill_value(val, k, len);
		CHECK_EQ(store_set(st[hash_shard(h, n)], key, kl, h, &iov, 1, ttl_of(k),
				   (uint8_t)(k % 16), k + 1, NULL), 0);
	}
}

/* Checks that every key is where the current seed puts it, as it was
 * saved; returns how many were found. */
static unsigned check_stores(struct store **st, unsigned n, bool expect_expired_gone,
			     uint32_t max_len)
{
	static uint8_t val[BIG_LEN];
	unsigned found = 0, bad = 0, misplaced = 0, ttl_bad = 0;

	for (uint32_t k = 0; k < NKEYS; k++) {
		char key[32];
		size_t kl = key_of(key, k);
		uint64_t h = hash_key(key, kl);
		uint32_t len = value_len(k);
		struct store_item it;
		unsigned owner = hash_shard(h, n);

		for (unsigned i = 0; i < n; i++)
			if (i != owner && store_contains(st[i], key, kl, h))
				misplaced++;
		if (store_get(st[owner], key, kl, h, &it) != 0) {
			/* gone: expired, or over the loader's max_value */
			if (!(ttl_of(k) == 1 && expect_expired_gone) && len <= max_len)
				bad++;
			continue;
		}
		found++;
		fill_value(val, k, len);
		if (ttl_of(k) == 1 && expect_expired_gone)
			bad++;
		if (it.value_len != len || memcmp(it.value, val, len) || it.flags != k % 16 ||
		    it.etag != k + 1)
			bad++;
		uint32_t now = store_now(st[owner]);
		if (ttl_of(k) == 1000)
			/* 1000 s at save; at most a second more after the reload */
			ttl_bad += !it.expires || it.expires - now > 1001 || it.expires - now < 990;
		else if (ttl_of(k) == 0)
			ttl_bad += it.expires != 0;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(misplaced, 0);
	CHECK_EQ(ttl_bad, 0);
	return found;
}

static char dir[64];

static void path_in_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

static struct snap *new_snap(const char *path, unsigned n, size_t max_blob)
{
	struct snap_config cfg = { .path = path, .nshards = n, .max_blob = max_blob,
				   .host = "test" };
	struct snap *s = NULL;

	CHECK_EQ(snap_create(&s, &cfg), 0);
	return s;
}

static void save(const char *path, struct store **st, unsigned n)
{
	char msg[512];
	struct snap *s = new_snap(path, n, 64u << 20);

	CHECK_EQ(snap_open(s, msg, sizeof(msg)), SNAP_NONE);
	CHECK_EQ(snap_save_begin(s, msg, sizeof(msg)), 0);
	run_shards(s, st, n, true);
	CHECK_EQ(snap_save_end(s, msg, sizeof(msg)), 0);
	printf("  %s\n", msg);
	snap_destroy(s);
}

/* Loads path into n fresh stores; returns the state. */
static enum snap_state load(const char *path, struct store **st, unsigned n, size_t max_blob,
			    struct snap_counts *c)
{
	char msg[512];
	struct snap *s = new_snap(path, n, max_blob);
	enum snap_state r = snap_open(s, msg, sizeof(msg));

	printf("  %s\n", msg);
	if (r == SNAP_READY) {
		run_shards(s, st, n, false);
		r = snap_load_end(s, false, c, msg, sizeof(msg));
		printf("  %s\n", msg);
	}
	snap_destroy(s);
	return r;
}

static void free_stores(struct store **st, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		store_destroy(st[i]);
}

/* The items a saved file holds, from its header. */
static uint64_t saved_items(const char *path)
{
	uint8_t hdr[SNAP_HDR_LEN];
	struct snap_header h;
	struct stat stb;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &stb) || read(fd, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr)) {
		CHECK(0);
		return 0;
	}
	close(fd);
	if (snap_header_parse(hdr, sizeof(hdr), (uint64_t)stb.st_size, &h) != SNAP_OK) {
		CHECK(0);
		return 0;
	}
	return h.items;
}

static void test_save_load(void)
{
	char path[128];
	struct store *a[2], *b[3], *c[1];
	struct snap_counts cnt;
	unsigned expired = 0;

	path_in_dir(path, sizeof(path), "s.snap");
	a[0] = new_store(32u << 20, 4u << 20);
	a[1] = new_store(32u << 20, 4u << 20);
	hash_key_seed = 0x1111;
	fill_stores(a, 2);
	CHECK_EQ(check_stores(a, 2, false, UINT32_MAX), NKEYS);
	save(path, a, 2);
	free_stores(a, 2);

	/* the TTL-1 items expire meanwhile: wait out their second (they were
	 * given 1 s, so they stop within 2) */
	sleep(2);
	for (uint32_t k = 0; k < NKEYS; k++)
		expired += ttl_of(k) == 1;

	/* another seed, another shard count: every item in its new owner */
	hash_key_seed = 0x2222;
	for (unsigned i = 0; i < 3; i++)
		b[i] = new_store(32u << 20, 4u << 20);
	CHECK_EQ(load(path, b, 3, 4u << 20, &cnt), SNAP_READY);
	CHECK_EQ(cnt.loaded, NKEYS - expired);
	/* the TTL-1 items: expired at the load, or already at the save (a
	 * slow run) and then not in the file */
	CHECK_EQ(cnt.loaded + cnt.expired, saved_items(path));
	CHECK_EQ(cnt.held, NKEYS - expired);
	CHECK_EQ(check_stores(b, 3, true, UINT32_MAX), NKEYS - expired);
	free_stores(b, 3);

	/* one shard, and a max_value below the big value: it is skipped */
	hash_key_seed = 0x3333;
	c[0] = new_store(64u << 20, 1u << 20);
	CHECK_EQ(load(path, c, 1, 1u << 20, &cnt), SNAP_READY);
	CHECK_EQ(cnt.too_large, 1);
	CHECK_EQ(check_stores(c, 1, true, 1u << 20), NKEYS - expired - 1);
	free_stores(c, 1);
}

/* Reads a whole file. */
static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat stb;
	int fd = open(path, O_RDONLY);
	uint8_t *p;

	if (fd < 0 || fstat(fd, &stb))
		return NULL;
	p = malloc((size_t)stb.st_size + 1);
	*len = (size_t)read(fd, p, (size_t)stb.st_size);
	close(fd);
	return p;
}

static void spit(const char *path, const uint8_t *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0 && write(fd, p, len) == (ssize_t)len);
	close(fd);
}

static void count_rec(void *arg, const struct snap_rec *r)
{
	(void)r;
	(*(unsigned *)arg)++;
}

/*
 * A file damaged in its middle (a byte of a block, after other blocks
 * have been stored) is refused whole: every store ends empty.  A
 * truncated one is refused before anything is read.  A foreign file is
 * never replaced.
 */
static void test_refusals(void)
{
	char path[128], bad[128];
	struct store *a[2];
	struct snap_counts cnt;
	uint8_t *img;
	size_t len;
	unsigned recs = 0;

	path_in_dir(path, sizeof(path), "r.snap");
	path_in_dir(bad, sizeof(bad), "bad.snap");
	hash_key_seed = 0x4444;
	a[0] = new_store(32u << 20, 4u << 20);
	a[1] = new_store(32u << 20, 4u << 20);
	fill_stores(a, 2);
	save(path, a, 2);
	free_stores(a, 2);
	img = slurp(path, &len);
	CHECK(img != NULL);
	CHECK_EQ(snap_image_walk(img, len, count_rec, &recs), SNAP_OK);
	/* every key, but those with a 1 s TTL may have expired before the save
	 * walked their store (a slow run: sanitizers, a busy machine) */
	unsigned short_lived = 0;
	for (uint32_t k = 0; k < NKEYS; k++)
		short_lived += ttl_of(k) == 1;
	CHECK(recs <= NKEYS && recs >= NKEYS - short_lived);

	/* a byte in the last data block: read after the others were stored */
	struct snap_header h;
	CHECK_EQ(snap_header_parse(img, len, len, &h), SNAP_OK);
	img[h.table_off - 100] ^= 0x01;
	CHECK_EQ(snap_image_walk(img, len, NULL, NULL), SNAP_E_CORRUPT);
	spit(bad, img, len);
	img[h.table_off - 100] ^= 0x01;
	a[0] = new_store(32u << 20, 4u << 20);
	a[1] = new_store(32u << 20, 4u << 20);
	CHECK_EQ(load(bad, a, 2, 4u << 20, &cnt), SNAP_REFUSED);
	CHECK_EQ(check_stores(a, 2, false, 0), 0);      /* nothing stayed */
	free_stores(a, 2);

	/* truncated: refused at open */
	spit(bad, img, len - 1);
	a[0] = new_store(32u << 20, 4u << 20);
	CHECK_EQ(load(bad, a, 1, 4u << 20, &cnt), SNAP_REFUSED);
	free_stores(a, 1);

	/* foreign: refused, and a save does not replace it */
	char msg[512];
	spit(bad, (const uint8_t *)"hello, world\n", 13);
	struct snap *s = new_snap(bad, 1, 1u << 20);
	CHECK_EQ(snap_open(s, msg, sizeof(msg)), SNAP_FOREIGN);
	CHECK(strstr(msg, "not a ringcached snapshot") != NULL);
	CHECK(snap_save_begin(s, msg, sizeof(msg)) < 0);
	snap_destroy(s);
	free(img);
	img = slurp(bad, &len);
	CHECK(len == 13 && !memcmp(img, "hello, world\n", 13));
	free(img);

	/* a place it cannot write to is said at start, not found at the stop */
	char nowhere[160];
	snprintf(nowhere, sizeof(nowhere), "%s/no-such-dir/l1.snap", dir);
	s = new_snap(nowhere, 1, 1u << 20);
	CHECK_EQ(snap_open(s, msg, sizeof(msg)), SNAP_NONE);
	CHECK(strstr(msg, "warning: cannot write in") != NULL);
	CHECK(snap_save_begin(s, msg, sizeof(msg)) < 0);
	snap_destroy(s);

	/* a directory is not ours either */
	s = new_snap(dir, 1, 1u << 20);
	CHECK_EQ(snap_open(s, msg, sizeof(msg)), SNAP_FOREIGN);
	snap_destroy(s);
	unlink(bad);
	unlink(path);
}

/* A blob whose representation header the cache could not read is refused,
 * even inside a block whose CRC is right. */
static void test_bad_blob(void)
{
	char path[128];
	struct store *a[1];
	struct snap_counts cnt;
	uint8_t blob[3] = { 1, 2, 3 };
	struct iovec iov = { blob, 3 };

	path_in_dir(path, sizeof(path), "blob.snap");
	a[0] = new_store(8u << 20, 1u << 20);
	/* REPR_F_BR set, but a 3-byte blob cannot hold the brotli header */
	CHECK_EQ(store_set(a[0], "k", 1, hash_key("k", 1), &iov, 1, 0, REPR_F_BR, 5, NULL), 0);
	save(path, a, 1);
	free_stores(a, 1);
	a[0] = new_store(8u << 20, 1u << 20);
	CHECK_EQ(load(path, a, 1, 1u << 20, &cnt), SNAP_REFUSED);
	CHECK(!store_contains(a[0], "k", 1, hash_key("k", 1)));
	free_stores(a, 1);
	unlink(path);
}

/* Stores with nothing in them make a snapshot that loads (as nothing). */
static void test_empty(void)
{
	char path[128];
	struct store *a[2];
	struct snap_counts cnt;

	path_in_dir(path, sizeof(path), "empty.snap");
	a[0] = new_store(8u << 20, 1u << 20);
	a[1] = new_store(8u << 20, 1u << 20);
	save(path, a, 2);
	CHECK_EQ(saved_items(path), 0);
	CHECK_EQ(load(path, a, 2, 1u << 20, &cnt), SNAP_READY);
	CHECK_EQ(cnt.loaded, 0);
	free_stores(a, 2);
	unlink(path);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/rc-snap-test-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_header();
	test_records();
	test_blocks_and_table();
	test_clocks();
	test_save_load();
	test_refusals();
	test_bad_blob();
	test_empty();
	rmdir(dir);
	return check_done("snapshot");
}
