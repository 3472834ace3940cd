/*
 * shard.c - one shard's thread: its io_uring and the loop that drives it.
 *
 * Each iteration:
 *   1. handle what peers published on the rings (forwarded requests and the
 *      replies to ours), publish what we pushed, ring parked peers;
 *   2. queue one send per connection with new output;
 *   3. one io_uring_enter that submits everything and reaps completions
 *      (GETEVENTS); while there was work in the last --spin-us it does not
 *      wait, otherwise the shard parks in it (see ring.h for the protocol);
 *   4. handle the completions: accepts, received bytes (parsed and answered
 *      or forwarded on the spot), finished sends, doorbells;
 *   5. a few times a second: timeouts, the store clock, store statistics.
 *
 * The ring is created by this thread with SINGLE_ISSUER | DEFER_TASKRUN when
 * the kernel has them, so completion work runs only inside our own
 * io_uring_enter, never interrupting the loop.
 */
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "fill.h"
#include "fwd.h"
#include "l2.h"
#include "l2read.h"
#include "listen.h"
#include "outq.h"
#include "route.h"
#include "shard.h"
#include "ringcache/cache.h"
#include "ringcache/clock.h"
#include "ringcache/resp.h"
#include "ringcache/snapshot.h"
#include "ringcache/stats.h"
#include "ringcache/store.h"

#define SQ_ENTRIES 4096
#define CQ_ENTRIES 16384
#define SWEEP_NS 250000000ull
#define PARK_TIMEOUT_NS 250000000ull

static int fail(struct shard *sh, int err, const char *fmt, const char *what)
{
	snprintf(sh->error_msg, sizeof(sh->error_msg), fmt, what, strerror(-err));
	sh->error = err;
	return err;
}

static int setup_ring(struct shard *sh)
{
	/* Richest first; each step drops what an older kernel rejects. */
	static const unsigned flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		0,
	};
	int rc = -EINVAL;

	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i] | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
		p.cq_entries = CQ_ENTRIES;
		rc = io_uring_queue_init_params(SQ_ENTRIES, &sh->ring, &p);
		if (rc == -EINVAL)
			continue;
		if (rc == 0) {
			sh->features.single_issuer = p.flags & IORING_SETUP_SINGLE_ISSUER;
			sh->features.defer_taskrun = p.flags & IORING_SETUP_DEFER_TASKRUN;
			sh->features.coop_taskrun = p.flags & IORING_SETUP_COOP_TASKRUN;
			sh->features.ext_arg = p.features & IORING_FEAT_EXT_ARG;
		}
		break;
	}
	if (rc == -EPERM || rc == -ENOSYS) {
		snprintf(sh->error_msg, sizeof(sh->error_msg), "io_uring is not available");
		sh->error = rc;
		return rc;
	}
	if (rc)
		return fail(sh, rc, "io_uring_queue_init%s: %s", "");
	if (!sh->features.ext_arg) {
		sh->error = -ENOSYS;
		snprintf(sh->error_msg, sizeof(sh->error_msg),
			 "io_uring lacks IORING_FEAT_EXT_ARG (kernel 5.11+ needed; 6.1+ recommended)");
		return -ENOSYS;
	}
	return 0;
}

static int setup_buffers(struct shard *sh)
{
	const struct config *cfg = sh->cfg;
	struct io_uring_buf_reg reg;
	size_t ring_bytes;
	int rc;

	sh->nbufs = cfg->recv_buffers;
	sh->buf_size = (uint32_t)cfg->recv_buffer_size;
	ring_bytes = (size_t)sh->nbufs * sizeof(struct io_uring_buf);
	/* what io_uring_setup_buf_ring (liburing 2.4+) does: mmap + register + init */
	sh->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sh->br == MAP_FAILED) {
		sh->br = NULL;
		return fail(sh, -errno, "provided buffer ring%s: %s", "");
	}
	sh->bufs = mmap(NULL, (size_t)sh->nbufs * sh->buf_size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sh->bufs == MAP_FAILED) {
		sh->bufs = NULL;
		return fail(sh, -errno, "receive buffers%s: %s", "");
	}
	/*
	 * The kernel fills the buffers in ring order, so consecutive receives
	 * land 16 KiB apart across all 16 MiB: with 4 KiB pages each one is a
	 * TLB miss in the kernel's copy (_copy_to_iter: 2.2% of a -P 1 RESP
	 * profile, 1.2% with transparent huge pages).  Advice only: without THP,
	 * or under --hugepages off, the buffers keep small pages.
	 */
	if (cfg->hugepages != CONFIG_HUGEPAGES_OFF)
		(void)madvise(sh->bufs, (size_t)sh->nbufs * sh->buf_size, MADV_HUGEPAGE);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)(uintptr_t)sh->br;
	reg.ring_entries = sh->nbufs;
	reg.bgid = 0;
	rc = io_uring_register_buf_ring(&sh->ring, &reg, 0);
	if (rc) {
		snprintf(sh->error_msg, sizeof(sh->error_msg),
			 "io_uring provided buffer rings: %s (kernel 5.19+ needed)", strerror(-rc));
		sh->error = rc;
		return rc;
	}
	io_uring_buf_ring_init(sh->br);
	for (uint32_t i = 0; i < sh->nbufs; i++)
		io_uring_buf_ring_add(sh->br, sh->bufs + (size_t)i * sh->buf_size, sh->buf_size,
				      (unsigned short)i, io_uring_buf_ring_mask(sh->nbufs), (int)i);
	io_uring_buf_ring_advance(sh->br, (int)sh->nbufs);
	return 0;
}

/* A socket of its own for every TCP address; the server's for the others. */
static int setup_listeners(struct shard *sh)
{
	const struct listen_set *ls = &sh->srv->listeners;

	for (unsigned i = 0; i < ls->n; i++) {
		const struct listen_point *lp = &ls->p[i];
		struct shard_listener *l = &sh->listeners[sh->nlisteners];
		int fd = lp->fd;

		if (fd < 0) {
			fd = listen_socket(lp->at, lp->flag, sh->error_msg, sizeof(sh->error_msg));
			if (fd < 0) {
				sh->error = fd;
				return fd;
			}
		}
		l->fd = fd;
		l->own = lp->fd < 0;
		l->proto = lp->proto;
		sh->nlisteners++;
	}
	return 0;
}

/* At stop: no more connections.  The accepts are cancelled (an armed one
 * holds its socket open, and a shared socket stays open for the others). */
static void close_listeners(struct shard *sh)
{
	for (unsigned i = 0; i < sh->nlisteners; i++) {
		struct shard_listener *l = &sh->listeners[i];
		struct io_uring_sqe *sqe;

		if (l->armed && sh->ring.ring_fd > 0 && (sqe = shard_sqe(sh))) {
			io_uring_prep_cancel64(sqe, shard_udata(l, OP_ACCEPT), 0);
			io_uring_sqe_set_data64(sqe, 0);        /* its own completion: ignored */
		}
		/*
		 * close() alone leaves the socket listening while the armed
		 * accept holds it, and the ring lets go of that only in its
		 * teardown, which the kernel finishes after the process has
		 * exited: a start right after this stop (systemctl restart)
		 * found the port in use.  shutdown() stops the listening now.
		 */
		if (l->own && l->fd >= 0) {
			shutdown(l->fd, SHUT_RDWR);
			close(l->fd);
		}
		l->fd = -1;
	}
}

static int setup_store(struct shard *sh)
{
	const struct config *cfg = sh->cfg;
	struct store_config sc = {
		.memory = cfg->memory / sh->srv->nshards,
		.max_value = cache_blob_max(cfg->max_value),
		.hugepages = cfg->hugepages == CONFIG_HUGEPAGES_ON    ? STORE_HUGEPAGES_ON
			     : cfg->hugepages == CONFIG_HUGEPAGES_OFF ? STORE_HUGEPAGES_OFF
								      : STORE_HUGEPAGES_AUTO,
		.prefault = cfg->prefault,
		.numa_node = -1,
	};
	struct cache_config cc = {
		.compress_min = cfg->compress_min,
		.compress_max = cfg->compress_max,
		.default_ttl = cfg->default_ttl,
		.max_value = cfg->max_value,
		.zip = sh->srv->zip,
		.lane = sh->id,
#define ZIP_COUNTER(name, type, help) .counters.name = &sh->stats->name,
		CACHE_ZIP_STATS(ZIP_COUNTER)
#undef ZIP_COUNTER
		.zip_lag = &sh->stats->zip_lag,
		/* CONFIG_SIZE_AUTO (0): the cache takes a quarter of its arena */
		.tags_memory = cfg->tag_memory / sh->srv->nshards,
	};
	int rc = store_create(&sh->store, &sc);

	if (rc == -ENOMEM && sc.hugepages == STORE_HUGEPAGES_ON) {
		snprintf(sh->error_msg, sizeof(sh->error_msg),
			 "--hugepages on: not enough hugetlb pages reserved for %zu bytes "
			 "(raise vm.nr_hugepages, see /sys/kernel/mm/hugepages)", sc.memory);
		sh->error = rc;
		return rc;
	}
	if (rc)
		return fail(sh, rc, "store (--memory split across shards)%s: %s", "");
	rc = cache_create(&sh->cache, sh->store, &cc);
	if (rc)
		return fail(sh, rc, "cache%s: %s", "");
	sh->now_s = clock_store_now();
	cache_tick(sh->cache, sh->now_s);
	return 0;
}

static int setup(struct shard *sh)
{
	int rc;

	if (sh->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(sh->cpu, &set);
		rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
		if (rc) {
			char what[32];
			snprintf(what, sizeof(what), "%d", sh->cpu);
			return fail(sh, -rc, "pinning to CPU %s: %s", what);
		}
	}
	sh->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sh->event_fd == -1)
		return fail(sh, -errno, "eventfd%s: %s", "");
	/* ring first, so a missing io_uring is the first thing reported */
	if ((rc = setup_ring(sh)) || (rc = setup_buffers(sh)) || (rc = setup_listeners(sh)))
		return rc;
	outq_zc_setup(&sh->ring, sh->cfg->send_zc_min);   /* refused: sends copy (logged) */
	/* the arena is first touched here, by the pinned thread: NUMA-local */
	return setup_store(sh);
}

/* Without an SQE, or after an accept error, periodic() tries again. */
static void arm_accept(struct shard *sh, struct shard_listener *l)
{
	struct io_uring_sqe *sqe;

	if (l->armed || l->fd < 0 || sh->stopping || !(sqe = shard_sqe(sh)))
		return;
	l->armed = true;
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, shard_udata(l, OP_ACCEPT));
}

static void arm_accepts(struct shard *sh)
{
	for (unsigned i = 0; i < sh->nlisteners; i++)
		arm_accept(sh, &sh->listeners[i]);
}

/*
 * A connection from a shared (Unix) socket.  The kernel hands each one to
 * the first shard waiting in accept on it, which would take them all; so
 * the shards that accept deal them out in turn, as SO_REUSEPORT spreads TCP
 * ones: through the ring to the shard (a file descriptor is the process's,
 * good on every thread).
 */
static void deal(struct shard *sh, struct shard_listener *l, int fd)
{
	unsigned to = l->next++ % sh->srv->nshards;
	uintptr_t token = ((uintptr_t)fd << 8) | ((uintptr_t)(l - sh->listeners) << 1) | 1;

	if (to == sh->id || !fwd_send_conn(sh, to, token))
		conn_create(sh, fd, l->proto, false);
}

void shard_adopt(struct shard *sh, uintptr_t token)
{
	int fd = (int)(token >> 8);
	unsigned idx = (unsigned)(token >> 1) & 0x7f;

	if (sh->stopping || idx >= sh->nlisteners)
		close(fd);
	else
		conn_create(sh, fd, sh->listeners[idx].proto, sh->listeners[idx].own);
}

/* An accept completed on listener l. */
static void on_accept(struct shard *sh, struct io_uring_cqe *cqe, struct shard_listener *l)
{
	if (cqe->res >= 0 && sh->stopping)
		close(cqe->res);
	else if (cqe->res >= 0 && !l->own)
		deal(sh, l, cqe->res);
	else if (cqe->res >= 0)
		conn_create(sh, cqe->res, l->proto, l->own);
	else if (cqe->res != -ECANCELED)
		stats_inc(&sh->stats->accept_errors);
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		l->armed = false;
		/*
		 * An error (EMFILE, ENFILE, ENOMEM) would come straight
		 * back if re-armed now: periodic() retries a sweep later.
		 */
		if (cqe->res >= 0)
			arm_accept(sh, l);
	}
}

static void arm_event(struct shard *sh)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);

	sh->event_armed = sqe != NULL;
	if (!sqe)
		return;
	io_uring_prep_read(sqe, sh->event_fd, &sh->event_buf, sizeof(sh->event_buf), 0);
	io_uring_sqe_set_data64(sqe, shard_udata(sh, OP_EVENT));
}

static void handle_cqe(struct shard *sh, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *p = (void *)(uintptr_t)(ud & ~(uint64_t)7);

	switch ((enum shard_op)(ud & 7)) {
	case OP_SEND_ZC:
		if (p)
			conn_on_send_zc(p, cqe);
		break;
	case OP_ACCEPT:
		on_accept(sh, cqe, p);
		break;
	case OP_RECV:
		conn_on_recv(p, cqe);
		break;
	case OP_SEND:
		conn_on_send(p, cqe->res);
		break;
	case OP_EVENT:
		sh->event_armed = false;
		if (!sh->stopping)
			arm_event(sh);
		break;
	case OP_CANCEL:
		conn_on_cancel(p);
		break;
	case OP_POLL:
		conn_on_poll(p, cqe->res, cqe->flags & IORING_CQE_F_MORE);
		break;
	case OP_L2:
		l2read_on_cqe(p, cqe);
		break;
	}
}

/*
 * Memory freed by connections goes back to the system: glibc returns only
 * the top of each thread's heap, so a few live blocks can hold up
 * everything freed under them.  An idle shard whose connections held 8 MiB
 * or more above what they hold now calls malloc_trim(), which gives back
 * every free page of every arena (milliseconds; at most once a second).
 */
#define TRIM_IDLE_NS 100000000ull
#define TRIM_EVERY_NS 1000000000ull
#define TRIM_FREED (8u << 20)

static void trim_if_idle(struct shard *sh)
{
	if (sh->conn_mem_peak - sh->conn_mem < TRIM_FREED ||
	    sh->now_ns - sh->last_work_ns < TRIM_IDLE_NS ||
	    sh->now_ns - sh->trimmed_ns < TRIM_EVERY_NS)
		return;
	malloc_trim(0);
	sh->trimmed_ns = sh->now_ns;
	sh->conn_mem_peak = sh->conn_mem;
	stats_inc(&sh->stats->memory_trims);
}

static void periodic(struct shard *sh)
{
	struct store_stats ss;

	sh->last_sweep_ns = sh->now_ns;
	trim_if_idle(sh);
	stats_set(&sh->stats->conn_memory, sh->conn_mem);
	sh->now_s = clock_store_now();
	cache_tick(sh->cache, sh->now_s);
	conn_sweep(sh);
	arm_accepts(sh);
	if (!sh->event_armed)
		arm_event(sh);
	store_stats(sh->store, &ss);
	stats_store_update(sh->stats, &ss);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/*
 * How the loop enters the kernel: park until a completion (or a lease
 * deadline), or poll.  A poll only for a Redis reply (l2_waiting(), up to
 * L2READ_SPIN_NS after the read was sent) yields the CPU at each empty
 * look: Redis on the same host is often woken on this CPU, and would
 * otherwise wait behind the poll for the reply we wait for.  With redis-server
 * pinned to the shard's CPU an L2 hit took 287-338 us at p50 polling with
 * cpu_relax() and 53-113 us yielding (docs/benchmarks.md); with nothing else
 * runnable, sched_yield() returns at once.
 */
enum enter_how { ENTER_PARK, ENTER_SPIN, ENTER_SPIN_YIELD };

/* One enter: submit, then reap without waiting (spinning) or park. */
static void enter(struct shard *sh, enum enter_how how)
{
	if (how != ENTER_PARK) {
		/*
		 * Spin in user space: with TASKRUN_FLAG the kernel raises
		 * IORING_SQ_TASKRUN when completions wait for us to enter, so an
		 * empty poll costs no system call.
		 */
		if (!io_uring_sq_ready(&sh->ring) && !io_uring_cq_ready(&sh->ring) &&
		    !(IO_URING_READ_ONCE(*sh->ring.sq.kflags) & IORING_SQ_TASKRUN)) {
			if (how == ENTER_SPIN_YIELD)
				sched_yield();
			else
				cpu_relax();
			return;
		}
		io_uring_submit_and_get_events(&sh->ring);
		return;
	}
	atomic_store_explicit(&sh->parked, 1, memory_order_seq_cst);
	/*
	 * never park on a backlog: the peer draining the ring would not ring
	 * us; nor on a pause or resume for --conn-memory that exchange() has
	 * not acted on (set while it flushed): nobody would ring for it
	 */
	if (fwd_pending(sh) || l2_pending(sh) || fwd_backlogged(sh) || l2_backlogged(sh) ||
	    cache_zip_waiting(sh->cache) || sh->mem_pause || sh->mem_resume ||
	    atomic_load_explicit(&sh->srv->stop, memory_order_relaxed)) {
		atomic_store_explicit(&sh->parked, 0, memory_order_relaxed);
		io_uring_submit_and_get_events(&sh->ring);
		return;
	}
	/* wake for the next lease deadline (--lease-wait, --lease-ttl), not
	 * up to PARK_TIMEOUT_NS after it */
	uint64_t park = PARK_TIMEOUT_NS;
	uint64_t due = sh->lease ? lease_next_due(sh->lease) : UINT64_MAX;
	if (due != UINT64_MAX) {
		uint64_t now = clock_mono_ns();
		park = due <= now ? 0 : due - now < park ? due - now : park;
	}
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = (long long)park };
	struct io_uring_cqe *cqe;
	if (park)
		io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
	else
		io_uring_submit_and_get_events(&sh->ring);
	atomic_store_explicit(&sh->parked, 0, memory_order_relaxed);
}

/*
 * Handles what peers and the coherence thread published, publishes what this
 * shard produced, and flushes the connections with new output.  True when
 * there was anything to do.
 */
static bool exchange(struct shard *sh)
{
	bool work = fwd_drain(sh);

	work |= l2_drain(sh);
	fill_tick(sh);          /* --lease-wait, --lease-ttl; at stop, every waiter */
	if (sh->mem_pause) {
		sh->mem_pause = false;
		conn_pause_all(sh);
	}
	if (sh->mem_resume) {
		sh->mem_resume = false;
		conn_resume_paused(sh);
	}
	if (cache_zip_poll(sh->cache)) {       /* after the drains: they may queue jobs */
		work = true;
		route_count_store(sh);          /* installs rewrite items: value_bytes */
	}
	work |= fwd_flush(sh);
	l2_flush(sh);
	if (sh->ndirty)         /* the time this turn's sends are timed at (conn_flush) */
		sh->now_ns = clock_mono_ns();
	for (uint32_t i = 0; i < sh->ndirty; i++)
		conn_flush(sh->dirty[i]);
	work |= sh->ndirty > 0;
	sh->ndirty = 0;
	return work;
}

static void loop(struct shard *sh)
{
	uint64_t spin_ns = (uint64_t)sh->cfg->spin_us * 1000;
	uint64_t busy_from = 0; /* start of a busy stretch, 0: none (stats.h loop_busy) */

	sh->now_ns = clock_mono_ns();
	sh->last_work_ns = sh->now_ns;
	while (!atomic_load_explicit(&sh->srv->stop, memory_order_relaxed)) {
		uint64_t turn_ns = sh->now_ns;  /* exchange() reads the clock again for its sends */
		bool work = exchange(sh);
		if (work) {
			sh->last_work_ns = sh->now_ns;
			busy_from = busy_from ? busy_from : turn_ns;
		}
		if (busy_from) {
			hist_record(&sh->stats->loop_busy, clock_mono_ns() - busy_from);
			busy_from = 0;
		}

		enter(sh, sh->now_ns - sh->last_work_ns < spin_ns ? ENTER_SPIN
			  : l2_waiting(sh)                          ? ENTER_SPIN_YIELD
								    : ENTER_PARK);

		sh->now_ns = clock_mono_ns();
		shard_date_update(sh);
		unsigned head, seen = 0;
		struct io_uring_cqe *cqe;
		io_uring_for_each_cqe(&sh->ring, head, cqe) {
			handle_cqe(sh, cqe);
			seen++;
		}
		io_uring_cq_advance(&sh->ring, seen);
		if (seen)
			sh->last_work_ns = busy_from = sh->now_ns;
		if (sh->now_ns - sh->last_sweep_ns >= SWEEP_NS)
			periodic(sh);
		/* the heartbeat (shard.h); this thread alone writes it */
		atomic_store_explicit(&sh->turns, atomic_load_explicit(&sh->turns,
				      memory_order_relaxed) + 1, memory_order_seq_cst);
	}
}

/*
 * Stopping: every connection is shut, and the shard keeps draining its rings
 * until its own connections are freed and every message it sent has come
 * back (forwarded requests and Redis operations answered), and every other
 * shard is done too, since their messages may still wait for this shard's
 * store.  Bounded: TEARDOWN_MS.  What is still out then is freed by
 * shard_destroy().
 */
#define TEARDOWN_MS 2000
#define TEARDOWN_WAIT_MS 20

/*
 * Between two rounds of the teardown: waits up to TEARDOWN_WAIT_MS for a
 * completion or a peer's message, parked as enter() parks, so that a peer's
 * flush rings the doorbell; not at all while input or a backlog waits.  A
 * plain timed wait, woken by no peer, let one ring's worth of messages cross
 * per wait: the lease waiters a stop answers all at once, coming home from
 * another shard, were more than 100 rings' worth, and the stop gave up with
 * them still out.
 */
static void teardown_wait(struct shard *sh)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = TEARDOWN_WAIT_MS * 1000000 };
	struct io_uring_cqe *cqe;

	if (!sh->event_armed)
		arm_event(sh);  /* not re-armed by its completion while stopping */
	atomic_store_explicit(&sh->parked, 1, memory_order_seq_cst);
	if (fwd_pending(sh) || l2_pending(sh) || fwd_backlogged(sh) || l2_backlogged(sh))
		io_uring_submit_and_get_events(&sh->ring);
	else
		io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
	atomic_store_explicit(&sh->parked, 0, memory_order_relaxed);
}

static void teardown(struct shard *sh)
{
	bool counted = true, started = sh->ring.ring_fd > 0;

	sh->stopping = true;
	close_listeners(sh);
	if (started) {
		/* a deadline, not a count of rounds: a round ends as soon as a
		 * peer's message comes */
		uint64_t until = clock_mono_ns() + TEARDOWN_MS * 1000000ull;
		conn_close_all(sh);
		for (;;) {
			sh->now_ns = clock_mono_ns();
			exchange(sh);
			if (counted && !sh->nconns && fwd_alive(sh) == 0) {
				counted = false;
				atomic_fetch_sub_explicit(&sh->srv->closing, 1, memory_order_acq_rel);
			}
			if (!counted && !atomic_load_explicit(&sh->srv->closing, memory_order_acquire))
				break;
			if (sh->now_ns >= until)
				break;
			teardown_wait(sh);
			struct io_uring_cqe *cqe;
			unsigned head, seen = 0;
			io_uring_for_each_cqe(&sh->ring, head, cqe) {
				handle_cqe(sh, cqe);
				seen++;
			}
			io_uring_cq_advance(&sh->ring, seen);
		}
	}
	if (counted) /* never started, or gave up: others need not wait for us */
		atomic_fetch_sub_explicit(&sh->srv->closing, 1, memory_order_acq_rel);
	if (counted && started)  /* said, so a cut-short stop is visible (and testable) */
		fprintf(stderr, "ringcached: shard %u: stop gave up after %d ms with %u connections "
			"and %llu messages still out; they are freed without their completions\n",
			sh->id, TEARDOWN_MS, sh->nconns, (unsigned long long)fwd_alive(sh));
}

/* --snapshot: every shard loads its share (and checks it against Redis)
 * before any serves; the counts and the clock are then brought up to date. */
static void warm_start(struct shard *sh)
{
	struct server *srv = sh->srv;

	if (!srv->snap)
		return;
	snap_load(srv->snap, sh->id, sh->store);
	if (srv->coh)
		snap_verify(srv->snap, sh->id, sh->store, srv->coh);
	sh->now_s = clock_store_now();
	cache_tick(sh->cache, sh->now_s);
	route_count_store(sh);
}

void *shard_main(void *arg)
{
	struct shard *sh = arg;
	bool served = false;

	setup(sh);
	pthread_barrier_wait(&sh->srv->ready);     /* main reads sh->error */
	pthread_barrier_wait(&sh->srv->ready);     /* main has decided: run or stop */
	if (!sh->error && !atomic_load(&sh->srv->stop))
		warm_start(sh);
	pthread_barrier_wait(&sh->srv->ready);     /* every shard has loaded */
	if (!sh->error && !atomic_load(&sh->srv->stop)) {
		arm_accepts(sh);
		arm_event(sh);
		loop(sh);
		served = true;
	}
	teardown(sh);
	/* the store no longer changes; the acquire pairs with server_stop() */
	if (served && sh->srv->snap && atomic_load_explicit(&sh->srv->stop, memory_order_acquire))
		snap_save(sh->srv->snap, sh->id, sh->store);
	return NULL;
}

struct shard *shard_create(struct server *srv, unsigned id, int cpu)
{
	const struct config *cfg = srv->cfg;
	struct shard *sh = aligned_alloc(RING_LINE, (sizeof(*sh) + RING_LINE - 1) &
						    ~(size_t)(RING_LINE - 1));

	if (!sh)
		return NULL;
	memset(sh, 0, sizeof(*sh));
	sh->id = id;
	sh->cpu = cpu;
	sh->srv = srv;
	sh->cfg = cfg;
	sh->stats = srv->stats[id];
	sh->conn_budget = srv->conn_memory / srv->nshards;
	shard_date_update(sh);
	sh->event_fd = -1;
	sh->conns = calloc(cfg->max_conns, sizeof(*sh->conns));
	sh->dirty = calloc(cfg->max_conns, sizeof(*sh->dirty));
	sh->key_scratch = malloc(cfg->max_request_line + 1);
	if (cfg->resp_listen.n)
		sh->resp_scratch = malloc(RESP_LINE_MAX + 2);  /* an inline frame, its LF too */
	if (!sh->conns || !sh->dirty || !sh->key_scratch || fwd_setup(sh) ||
	    (cfg->resp_listen.n && !sh->resp_scratch) ||
	    fill_setup(sh) || (srv->coh && l2_setup(sh))) {
		shard_destroy(sh);
		return NULL;
	}
	return sh;
}

void shard_drop_clients(struct shard *sh)
{
	if (!sh)
		return;
	/* a stop that gave up (shard.c teardown bound) may leave operations in
	 * flight: the ring goes first, so no completion names what is freed */
	if (sh->ring.ring_fd > 0) {
		io_uring_queue_exit(&sh->ring);
		sh->ring.ring_fd = -1;
	}
	while (sh->nconns)
		conn_destroy(sh->conns[sh->nconns - 1]);
	l2_teardown(sh);
	fwd_teardown(sh);   /* after the connections: frees the messages they orphaned */
}

void shard_destroy(struct shard *sh)
{
	if (!sh)
		return;
	shard_drop_clients(sh);
	fill_teardown(sh);
	cache_destroy(sh->cache);
	store_destroy(sh->store);
	if (sh->ring.ring_fd > 0)
		io_uring_queue_exit(&sh->ring);
	if (sh->br)
		munmap(sh->br, (size_t)sh->nbufs * sizeof(struct io_uring_buf));
	if (sh->bufs)
		munmap(sh->bufs, (size_t)sh->nbufs * sh->buf_size);
	if (sh->event_fd >= 0)
		close(sh->event_fd);
	for (unsigned i = 0; i < sh->nlisteners; i++)
		if (sh->listeners[i].own && sh->listeners[i].fd >= 0)
			close(sh->listeners[i].fd);
	free(sh->conns);
	free(sh->dirty);
	free(sh->key_scratch);
	free(sh->resp_scratch);
	buf_deinit(&sh->kv_scratch);
	free(sh);
}

void shard_wake(struct shard *sh)
{
	uint64_t one = 1;

	if (atomic_load_explicit(&sh->parked, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&sh->parked, 0, memory_order_seq_cst)) {
		ssize_t rc = write(sh->event_fd, &one, sizeof(one));
		(void)rc; /* EAGAIN means a wake-up is already pending */
	}
}

void shard_dirty(struct shard *sh, struct conn *c)
{
	if (!(c->flags & C_DIRTY)) {
		c->flags |= C_DIRTY;
		sh->dirty[sh->ndirty++] = c;
	}
}

void shard_date_update(struct shard *sh)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec != sh->date_s) {
		sh->date_s = ts.tv_sec;
		http_date_line(sh->date, ts.tv_sec);
	}
}

void shard_recycle_buffer(struct shard *sh, unsigned bid)
{
	io_uring_buf_ring_add(sh->br, sh->bufs + (size_t)bid * sh->buf_size, sh->buf_size,
			      (unsigned short)bid, io_uring_buf_ring_mask(sh->nbufs), 0);
	/* store-release of the tail (liburing 2.3's cq_advance variant lacks it) */
	io_uring_buf_ring_advance(sh->br, 1);
}
