/*
 * fuzz_snapshot.c - libFuzzer target for the snapshot loader's parser
 * (src/snapshot/format.c): a snapshot file is read from disk at start, and
 * every byte of it is hostile.
 *
 * The input is used three ways:
 *  - as a whole file: snap_image_walk() makes every check the loader makes
 *    (header, block table, each block's CRC, each record);
 *  - as a block payload: records decoded with snap_rec_next() back to back,
 *    so the record decoder is reached without the CRCs in the way;
 *  - as a header for files of other sizes (the size check).
 * Properties (abort on failure): every key and value lies inside the input,
 * a key is 1..1024 bytes, a record never ends before it started; a file
 * accepted whole has as many records as its header says, and each decoded
 * record re-encodes to the same header bytes.
 * tests/fuzz/replay.c runs the saved corpus (corpus/snapshot) through this
 * same function in the normal build.
 */
#include "fuzz.h"
#include "snapshot/format.h"

struct walk {
	const uint8_t *lo, *hi;
	uint64_t records;
};

static void check_rec(const struct walk *w, const struct snap_rec *r)
{
	uint8_t hdr[SNAP_REC_HDR + SNAP_REC_EXP];
	unsigned n = snap_rec_put_hdr(hdr, r);

	FUZZ_ASSERT(r->key_len >= 1 && r->key_len <= SNAP_KEY_MAX);
	FUZZ_ASSERT(r->key >= w->lo && r->key + r->key_len <= w->hi);
	FUZZ_ASSERT(r->value >= w->lo && r->value <= w->hi &&
		    (size_t)(w->hi - r->value) >= r->value_len);
	FUZZ_ASSERT(r->value == r->key + r->key_len);
	/* the header just before the key is what the fields encode to */
	FUZZ_ASSERT(r->key - n >= w->lo && !memcmp(r->key - n, hdr, n));
}

static void on_rec(void *arg, const struct snap_rec *r)
{
	struct walk *w = arg;

	check_rec(w, r);
	w->records++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p = (uint8_t *)fuzz_copy(data, size);
	struct walk w = { p, p + size, 0 };
	struct snap_header h;
	enum snap_err e;
	size_t off = 0;

	e = snap_image_walk(p, size, on_rec, &w);
	FUZZ_ASSERT(e >= SNAP_OK && e <= SNAP_E_TRUNCATED);
	if (e == SNAP_OK) {
		FUZZ_ASSERT(snap_header_parse(p, size, size, &h) == SNAP_OK);
		FUZZ_ASSERT(w.records == h.items);
		FUZZ_ASSERT(h.file_len == size && h.table_off <= size);
	}

	/* records back to back, as in a block's payload */
	for (int i = 0; i < 100000; i++) {
		struct snap_rec r;
		size_t before = off;
		if (snap_rec_next(p, size, &off, &r) != SNAP_OK) {
			FUZZ_ASSERT(off == before);
			break;
		}
		FUZZ_ASSERT(off > before && off <= size);
		check_rec(&w, &r);
	}

	/* the header against other file sizes: never accepted when they differ */
	for (uint64_t fs = size > 8 ? size - 8 : 0; fs < (uint64_t)size + 8; fs++)
		if (snap_header_parse(p, size, fs, &h) == SNAP_OK)
			FUZZ_ASSERT(h.file_len == fs);
	free(p);
	return 0;
}
