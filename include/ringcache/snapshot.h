/*
 * snapshot.h - warm restarts (--snapshot PATH): at stop every shard writes
 * its store to one file, at start every shard loads it back, so a restarted
 * daemon serves what it held instead of sending its whole load to Redis.
 * docs/operations.md has the procedure, src/snapshot/format.h the file.
 *
 * Who calls what (the daemon's wiring, src/shard/server.c and shard.c):
 *
 *   start  main:   snap_create, snap_open          (reads and checks the header)
 *          shards: snap_load        every shard, in its own thread; items
 *                                   go to the shard that owns them now
 *                  snap_verify      with --redis: each checks its items
 *                                   against L2 and drops those that changed
 *          main:   snap_load_end    (summary; the file is removed: used once)
 *   stop   main:   snap_save_begin  (opens PATH.tmp)
 *          shards: snap_save        each writes its store, through io_uring
 *          main:   snap_save_end    (table, header, fsync, rename to PATH)
 *
 * Library code: nothing here prints; each main-thread call leaves a line
 * for the daemon's log in `msg`.
 */
#ifndef RINGCACHE_SNAPSHOT_H
#define RINGCACHE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coh;
struct snap;
struct store;

struct snap_config {
	const char *path;
	unsigned nshards;
	size_t max_blob;        /* the stores' max_value: larger values are skipped at load */
	const char *host;       /* recorded in the header, for the log; NULL: none */
};

/* What snap_open() found at PATH. */
enum snap_state {
	SNAP_NONE = 0,      /* no file: start empty */
	SNAP_READY,         /* a snapshot whose header and table check out: load it */
	SNAP_REFUSED,       /* ours but corrupt, truncated or of another version:
			     * start empty; replaced at the next stop */
	SNAP_FOREIGN,       /* not a snapshot (or not a regular file): start empty,
			     * and never replace it (saving is off) */
};

/* What a load did, added up over the shards (snap_load_result()). */
struct snap_counts {
	uint64_t loaded;        /* items stored */
	uint64_t bytes;         /* their value bytes */
	uint64_t expired;       /* skipped: expired while the daemon was down */
	uint64_t too_large;     /* skipped: over this daemon's --max-value */
	uint64_t refused;       /* the store refused (no room could be made) */
	uint64_t verified;      /* --redis: equal to L2 */
	uint64_t stale;         /* --redis: changed or gone in L2, or invalidated: dropped */
	uint64_t unverified;    /* --redis: L2 did not answer in time: dropped */
	uint64_t held;          /* items in the stores at the end (loaded items can
				 * push out earlier ones when --memory is smaller
				 * than what was saved) */
};

int snap_create(struct snap **out, const struct snap_config *cfg);
void snap_destroy(struct snap *s);

/* Main thread, before the shards start. */
enum snap_state snap_open(struct snap *s, char *msg, size_t len);

/*
 * Shard `shard`'s thread, after every store is created and before any
 * shard serves.  When snap_open() said SNAP_READY every shard must call it
 * (they exchange items); it returns once every shard's part is loaded.
 * A file found corrupt on the way is refused whole: every shard drops
 * what it had loaded.
 */
void snap_load(struct snap *s, unsigned shard, struct store *st);

/*
 * With --redis, after snap_load() and once the coherence thread runs:
 * reads every loaded item's key from L2 through `coh` and drops the item
 * unless L2 holds the same value and Content-Type (and no shorter TTL);
 * invalidations that arrive meanwhile are applied.  Returns when every
 * item is checked, or, when L2 answers nothing for SNAP_VERIFY_STALL_MS,
 * after dropping every item not checked.  Leaves no message in flight.
 */
#define SNAP_VERIFY_STALL_MS 5000u
void snap_verify(struct snap *s, unsigned shard, struct store *st, struct coh *coh);

/*
 * Main thread, after every shard returned from snap_load()/snap_verify().
 * `serving`: the daemon is about to serve (then a loaded file is removed,
 * so a daemon that crashes later does not load it again).  Fills *out
 * (may be NULL) and msg.  Returns the state snap_open() found, or
 * SNAP_REFUSED if a shard found the file corrupt.
 */
enum snap_state snap_load_end(struct snap *s, bool serving, struct snap_counts *out, char *msg,
			      size_t len);

/* Main thread, before the shards stop.  0, or -errno (nothing will be
 * saved; msg says why). */
int snap_save_begin(struct snap *s, char *msg, size_t len);

/* Shard `shard`'s thread, after its loop ended (its store no longer changes). */
void snap_save(struct snap *s, unsigned shard, struct store *st);

/* Main thread, after every shard returned from snap_save().  0 when PATH
 * now holds the new snapshot; -errno otherwise (PATH is left as it was). */
int snap_save_end(struct snap *s, char *msg, size_t len);

#endif
