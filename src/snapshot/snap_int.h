/*
 * snap_int.h - the state the snapshot's threads share (struct snap).
 * Internal to src/snapshot/: snap.c (life, open, summaries), save.c,
 * load.c, verify.c.
 *
 * Ownership: the main thread writes everything outside `sh[]` before the
 * shards run their part and reads `sh[]` after they are done (a barrier or
 * a join between).  While the shards run, they share only the atomics:
 * the next block to load, the file offset to write at, the producers still
 * loading, the first failure, and each shard's bytes in flight to others.
 */
#ifndef RINGCACHE_SNAPSHOT_INT_H
#define RINGCACHE_SNAPSHOT_INT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "format.h"
#include "ringcache/snapshot.h"

struct ring;

/* One shard's part; written by that shard only. */
struct snap_shard {
	alignas(128) _Atomic uint64_t outstanding;   /* load: bytes it sent others, not yet taken */
	alignas(128) struct snap_counts counts;
	/* save */
	struct snap_block_ent *ents;     /* the blocks it wrote */
	uint32_t nents, cap;
	uint64_t items, bytes;
	uint64_t start_ns, done_ns;      /* when its part of the load began and ended */
	uint64_t save_from_ns, saved_ns; /* when its save began and ended */
	int err;                         /* -errno of its save, 0 */
	bool saved;
	uint64_t verify_ns;
};

struct snap {
	char *path;
	char *tmp;                       /* PATH.tmp: written, then renamed */
	unsigned nshards;
	size_t max_blob;
	char host[SNAP_HOST_MAX + 1];
	struct snap_shard *sh;           /* nshards */

	enum snap_state state;
	bool no_save;                    /* PATH is not ours: never replace it */

	/* load */
	int fd;
	struct snap_header hdr;
	struct snap_block_ent *blocks;   /* hdr.blocks */
	struct ring **rings;             /* [from * n + to]: chunks of items for `to` */
	size_t chunk;                    /* bytes per chunk */
	alignas(128) _Atomic uint32_t next_block;
	alignas(128) _Atomic uint32_t producers;      /* shards still reading blocks */
	alignas(128) _Atomic int failed;              /* 0, or the first enum snap_err */
	_Atomic uint32_t failed_block;                /* which block, for the message */
	_Atomic int failed_errno;                     /* a read error: its errno */

	/* save */
	int save_fd;
	uint64_t save_mono_ns, save_wall_ns, save_start_ns;
	alignas(128) _Atomic uint64_t save_off;       /* next free byte of the file */
};

/* Records the first failure of the load; later ones are dropped. */
void snap_fail(struct snap *s, enum snap_err e, uint32_t block, int err);

uint64_t snap_wall_ns(void);

#endif
