/*
 * snap.c - a snapshot's life on the main thread: create, open and check
 * the file at start (snap_open), and the summary of a load (snap_load_end).
 * The shards' parts are in load.c, verify.c and save.c.
 *
 * What the daemon does with what it finds at PATH:
 *
 *   nothing              start empty; save at stop
 *   a snapshot           load it, remove it once serving (a snapshot is used
 *                        once: a daemon that crashes later must not come back
 *                        with the data of its previous start); save at stop
 *   ours, but corrupt,   refuse it, start empty, say why; replaced by the
 *   truncated, or of     next save
 *   another version
 *   anything else        refuse it, start empty, and never replace it: a
 *   (no magic, not a     mistyped --snapshot must not cost someone's file
 *   regular file, a file
 *   it cannot open)
 *   a snapshot in a      refuse it, start empty: it could not be removed
 *   directory it cannot  once loaded, so every later start would load it
 *   write to             again (snap_open)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringcache/clock.h"
#include "ringcache/ring.h"
#include "snap_int.h"

#define CHUNK_MIN (64u << 10)
#define CHUNK_MAX (256u << 10)
#define CHUNKS_PER_PEER_RING 64u

uint64_t snap_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int snap_create(struct snap **out, const struct snap_config *cfg)
{
	struct snap *s;
	size_t plen;

	if (!cfg->path || !*cfg->path || cfg->nshards == 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	plen = strlen(cfg->path);
	s->path = strdup(cfg->path);
	s->tmp = malloc(plen + 5);
	s->sh = aligned_alloc(128, sizeof(*s->sh) * cfg->nshards);
	if (!s->path || !s->tmp || !s->sh) {
		snap_destroy(s);
		return -ENOMEM;
	}
	memset(s->sh, 0, sizeof(*s->sh) * cfg->nshards);
	memcpy(s->tmp, cfg->path, plen);
	memcpy(s->tmp + plen, ".tmp", 5);
	s->nshards = cfg->nshards;
	s->max_blob = cfg->max_blob;
	snprintf(s->host, sizeof(s->host), "%s", cfg->host ? cfg->host : "");
	s->fd = -1;
	s->save_fd = -1;
	*out = s;
	return 0;
}

static void free_load(struct snap *s)
{
	if (s->rings)
		for (unsigned i = 0; i < s->nshards * s->nshards; i++)
			ring_destroy(s->rings[i]);
	free(s->rings);
	s->rings = NULL;
	free(s->blocks);
	s->blocks = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

void snap_destroy(struct snap *s)
{
	if (!s)
		return;
	free_load(s);
	if (s->save_fd >= 0) {
		close(s->save_fd);
		unlink(s->tmp);
	}
	for (unsigned i = 0; s->sh && i < s->nshards; i++)
		free(s->sh[i].ents);
	free(s->sh);
	free(s->path);
	free(s->tmp);
	free(s);
}

void snap_fail(struct snap *s, enum snap_err e, uint32_t block, int err)
{
	int none = 0;

	if (atomic_compare_exchange_strong_explicit(&s->failed, &none, (int)e, memory_order_acq_rel,
						    memory_order_relaxed)) {
		atomic_store_explicit(&s->failed_block, block, memory_order_relaxed);
		atomic_store_explicit(&s->failed_errno, err, memory_order_relaxed);
	}
}

static enum snap_state refuse(struct snap *s, enum snap_state st, char *msg, size_t len,
			      const char *why)
{
	free_load(s);
	s->state = st;
	if (st == SNAP_FOREIGN) {
		s->no_save = true;
		snprintf(msg, len, "snapshot %s: %s: starting empty; it will not be replaced "
				   "(no snapshot is saved at stop)", s->path, why);
	} else {
		snprintf(msg, len, "snapshot %s: refused (%s): starting empty", s->path, why);
	}
	return st;
}

/* pread until n bytes or EOF; bytes read or -errno. */
static ssize_t read_at(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* The load's exchange: a ring per ordered pair of shards. */
static int setup_exchange(struct snap *s)
{
	unsigned n = s->nshards;

	atomic_store_explicit(&s->next_block, 0, memory_order_relaxed);
	atomic_store_explicit(&s->producers, n, memory_order_relaxed);
	atomic_store_explicit(&s->failed, 0, memory_order_relaxed);
	s->chunk = (4u << 20) / n;
	if (s->chunk < CHUNK_MIN)
		s->chunk = CHUNK_MIN;
	if (s->chunk > CHUNK_MAX)
		s->chunk = CHUNK_MAX;
	if (n == 1)
		return 0;
	s->rings = calloc((size_t)n * n, sizeof(*s->rings));
	if (!s->rings)
		return -ENOMEM;
	for (unsigned i = 0; i < n * n; i++)
		if (i / n != i % n && !(s->rings[i] = ring_create(CHUNKS_PER_PEER_RING)))
			return -ENOMEM;
	return 0;
}

static enum snap_state snap_open_file(struct snap *s, char *msg, size_t len);

/*
 * A daemon that cannot write where it will save should say so at start, not
 * at the stop when it is too late (a read-only file system, a unit without
 * a state directory).  Appends the warning to msg.
 */
static void check_writable(const struct snap *s, char *msg, size_t len)
{
	char *copy = strdup(s->path);
	const char *dir;
	size_t o = strlen(msg);

	if (!copy)
		return;
	dir = dirname(copy);
	if (access(dir, W_OK | X_OK) == -1 && o < len)
		snprintf(msg + o, len - o, "; warning: cannot write in %s (%s): no snapshot will be "
			 "saved at stop", dir, strerror(errno));
	free(copy);
}

enum snap_state snap_open(struct snap *s, char *msg, size_t len)
{
	enum snap_state st = snap_open_file(s, msg, len);
	char *copy;

	/*
	 * A snapshot is used once: removed once loaded, and replaced by the
	 * save at stop.  Where it can be neither (a directory the daemon cannot
	 * write to: a read-only file system), loading it would have every
	 * later start, clean stops included, serve it again with what was
	 * deleted or changed since.  So it is not loaded.
	 */
	if (st == SNAP_READY && (copy = strdup(s->path)) != NULL) {
		const char *dir = dirname(copy);
		char why[200];

		if (access(dir, W_OK | X_OK) == -1) {
			snprintf(why, sizeof(why), "it could not be removed once loaded: cannot write "
				 "in %s: %s", dir, strerror(errno));
			st = refuse(s, SNAP_REFUSED, msg, len, why);
		}
		free(copy);
	}
	if (st != SNAP_FOREIGN)
		check_writable(s, msg, len);
	return st;
}

static enum snap_state snap_open_file(struct snap *s, char *msg, size_t len)
{
	uint8_t hdr[SNAP_HDR_LEN];
	char why[160];
	struct stat stb;
	enum snap_err e;
	ssize_t r;

	s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
	if (s->fd == -1) {
		if (errno == ENOENT) {
			s->state = SNAP_NONE;
			snprintf(msg, len, "snapshot %s: none yet: starting empty", s->path);
			return SNAP_NONE;
		}
		/* a file it cannot read (EACCES: another user's) may not be a
		 * snapshot at all: like any file not known to be ours, it is never
		 * replaced */
		snprintf(why, sizeof(why), "cannot open it: %s", strerror(errno));
		return refuse(s, SNAP_FOREIGN, msg, len, why);
	}
	if (fstat(s->fd, &stb) == -1 || !S_ISREG(stb.st_mode))
		return refuse(s, SNAP_FOREIGN, msg, len, "not a regular file");
	r = read_at(s->fd, hdr, sizeof(hdr), 0);
	if (r < 0) {
		snprintf(why, sizeof(why), "reading it: %s", strerror((int)-r));
		return refuse(s, SNAP_REFUSED, msg, len, why);
	}
	e = snap_header_parse(hdr, (size_t)r, (uint64_t)stb.st_size, &s->hdr);
	if (e == SNAP_E_FOREIGN)
		return refuse(s, SNAP_FOREIGN, msg, len, "not a ringcached snapshot");
	if (e == SNAP_E_VERSION) {
		snprintf(why, sizeof(why), "format version %" PRIu32 ", this ringcached reads %u",
			 r >= 12 ? (uint32_t)hdr[8] | (uint32_t)hdr[9] << 8 | (uint32_t)hdr[10] << 16 |
					   (uint32_t)hdr[11] << 24 : 0, SNAP_VERSION);
		return refuse(s, SNAP_REFUSED, msg, len, why);
	}
	if (e == SNAP_E_TRUNCATED) {
		snprintf(why, sizeof(why), "truncated: %lld bytes", (long long)stb.st_size);
		return refuse(s, SNAP_REFUSED, msg, len, why);
	}
	if (e != SNAP_OK)
		return refuse(s, SNAP_REFUSED, msg, len, "corrupt header");

	/* the table: h.blocks * 16 bytes, which the header check bounded by the
	 * file's own size */
	size_t tlen = (size_t)s->hdr.blocks * SNAP_TABLE_ENT;
	uint8_t *table = malloc(tlen ? tlen : 1);
	s->blocks = malloc(sizeof(*s->blocks) * (s->hdr.blocks ? s->hdr.blocks : 1));
	if (!table || !s->blocks) {
		free(table);
		return refuse(s, SNAP_REFUSED, msg, len, "out of memory for its block table");
	}
	r = read_at(s->fd, table, tlen, s->hdr.table_off);
	e = r == (ssize_t)tlen ? snap_table_parse(table, &s->hdr, s->blocks) : SNAP_E_TRUNCATED;
	free(table);
	if (e != SNAP_OK)
		return refuse(s, SNAP_REFUSED, msg, len, "corrupt block table");
	if (setup_exchange(s))
		return refuse(s, SNAP_REFUSED, msg, len, "out of memory for the load");
	s->state = SNAP_READY;
	time_t saved = (time_t)(s->hdr.saved_ns / 1000000000u);
	struct tm tm;
	char when[32] = "?";
	if (gmtime_r(&saved, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	snprintf(msg, len, "snapshot %s: %" PRIu64 " items in %" PRIu64 " MiB, saved %s by %u "
			   "shard%s%s%s: loading into %u shard%s", s->path, s->hdr.items,
		 s->hdr.file_len >> 20, when, s->hdr.shards, s->hdr.shards == 1 ? "" : "s",
		 *s->hdr.host ? " on " : "", s->hdr.host, s->nshards, s->nshards == 1 ? "" : "s");
	return SNAP_READY;
}

enum snap_state snap_load_end(struct snap *s, bool serving, struct snap_counts *out, char *msg,
			      size_t len)
{
	struct snap_counts c = { 0 };
	uint64_t first = UINT64_MAX, last = 0, verify_ns = 0;
	int failed = atomic_load_explicit(&s->failed, memory_order_acquire);

	for (unsigned i = 0; i < s->nshards; i++) {
		const struct snap_counts *k = &s->sh[i].counts;
		c.loaded += k->loaded;
		c.bytes += k->bytes;
		c.expired += k->expired;
		c.too_large += k->too_large;
		c.refused += k->refused;
		c.verified += k->verified;
		c.stale += k->stale;
		c.unverified += k->unverified;
		c.held += k->held;
		if (s->sh[i].start_ns && s->sh[i].start_ns < first)
			first = s->sh[i].start_ns;
		if (s->sh[i].done_ns > last)
			last = s->sh[i].done_ns;
		if (s->sh[i].verify_ns > verify_ns)
			verify_ns = s->sh[i].verify_ns;
	}
	if (out)
		*out = c;
	if (s->state != SNAP_READY) {
		*msg = '\0';
		return s->state;
	}
	if (failed) {
		uint32_t b = atomic_load_explicit(&s->failed_block, memory_order_relaxed);
		int err = atomic_load_explicit(&s->failed_errno, memory_order_relaxed);
		char why[160];

		if (err)
			snprintf(why, sizeof(why), "reading block %u: %s", b, strerror(err));
		else
			snprintf(why, sizeof(why), "block %u of %u at offset %" PRIu64 ": %s", b,
				 s->hdr.blocks, b < s->hdr.blocks ? s->blocks[b].off : 0,
				 snap_err_str((enum snap_err)failed));
		/* what was loaded before is dropped by every shard (load.c) */
		refuse(s, SNAP_REFUSED, msg, len, why);
		return SNAP_REFUSED;
	}
	uint64_t load_ns = last > first ? last - first : 0;
	size_t o = (size_t)snprintf(msg, len, "snapshot %s: loaded %" PRIu64 " items (%" PRIu64
				    " MiB of values) in %" PRIu64 " ms", s->path, c.loaded,
				    c.bytes >> 20, load_ns / 1000000);
	if (o < len && (c.expired || c.too_large || c.refused))
		o += (size_t)snprintf(msg + o, len - o, "; skipped %" PRIu64 " expired, %" PRIu64
				      " over --max-value, %" PRIu64 " without room", c.expired,
				      c.too_large, c.refused);
	if (o < len && (c.verified || c.stale || c.unverified))
		o += (size_t)snprintf(msg + o, len - o, "; checked against Redis in %" PRIu64 " ms: %" PRIu64
			 " current, %" PRIu64 " changed or gone (dropped), %" PRIu64
			 " not answered (dropped)", verify_ns / 1000000, c.verified, c.stale,
			 c.unverified);
	if (o < len && c.held + c.stale + c.unverified < c.loaded)
		snprintf(msg + o, len - o, "; %" PRIu64 " items held: --memory is smaller than what "
			 "was saved", c.held);
	if (serving && unlink(s->path) == -1 && errno != ENOENT) {
		o = strlen(msg);
		snprintf(msg + o, len - o, "; cannot remove it (%s): a crash before the next save "
			 "would load it again", strerror(errno));
	}
	free_load(s);
	return SNAP_READY;
}
