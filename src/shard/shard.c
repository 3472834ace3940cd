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
#include "fwd.h"
#include "l2.h"
#include "listen.h"
#include "shard.h"
#include "ringcache/cache.h"
#include "ringcache/clock.h"
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

static int setup_listener(struct shard *sh)
{
	int fd = listen_socket(&sh->cfg->listen, sh->error_msg, sizeof(sh->error_msg));

	if (fd < 0) {
		sh->error = fd;
		return fd;
	}
	sh->listen_fd = fd;
	return 0;
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
	if ((rc = setup_ring(sh)) || (rc = setup_buffers(sh)) || (rc = setup_listener(sh)))
		return rc;
	/* the arena is first touched here, by the pinned thread: NUMA-local */
	return setup_store(sh);
}

/* Without an SQE, or after an accept error, periodic() tries again. */
static void arm_accept(struct shard *sh)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);

	sh->accept_armed = sqe != NULL;
	if (!sqe)
		return;
	io_uring_prep_multishot_accept(sqe, sh->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, shard_udata(sh, OP_ACCEPT));
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
	case OP_ACCEPT:
		if (cqe->res >= 0 && sh->stopping)
			close(cqe->res);
		else if (cqe->res >= 0)
			conn_create(sh, cqe->res);
		else
			stats_inc(&sh->stats->accept_errors);
		if (!(cqe->flags & IORING_CQE_F_MORE)) {
			sh->accept_armed = false;
			/*
			 * An error (EMFILE, ENFILE, ENOMEM) would come straight
			 * back if re-armed now: periodic() retries a sweep later.
			 */
			if (cqe->res >= 0 && !sh->stopping)
				arm_accept(sh);
		}
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
	}
}

static void periodic(struct shard *sh)
{
	struct store_stats ss;

	sh->last_sweep_ns = sh->now_ns;
	sh->now_s = clock_store_now();
	cache_tick(sh->cache, sh->now_s);
	conn_sweep(sh);
	if (!sh->accept_armed)
		arm_accept(sh);
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

/* One enter: submit, then reap without waiting (spinning) or park. */
static void enter(struct shard *sh, bool spin)
{
	if (spin) {
		/*
		 * Spin in user space: with TASKRUN_FLAG the kernel raises
		 * IORING_SQ_TASKRUN when completions wait for us to enter, so an
		 * empty poll costs no system call.
		 */
		if (!io_uring_sq_ready(&sh->ring) && !io_uring_cq_ready(&sh->ring) &&
		    !(IO_URING_READ_ONCE(*sh->ring.sq.kflags) & IORING_SQ_TASKRUN)) {
			cpu_relax();
			return;
		}
		io_uring_submit_and_get_events(&sh->ring);
		return;
	}
	atomic_store_explicit(&sh->parked, 1, memory_order_seq_cst);
	/* never park on a backlog: the peer draining the ring would not ring us */
	if (fwd_pending(sh) || l2_pending(sh) || fwd_backlogged(sh) || l2_backlogged(sh) ||
	    cache_zip_waiting(sh->cache) ||
	    atomic_load_explicit(&sh->srv->stop, memory_order_relaxed)) {
		atomic_store_explicit(&sh->parked, 0, memory_order_relaxed);
		io_uring_submit_and_get_events(&sh->ring);
		return;
	}
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = PARK_TIMEOUT_NS };
	struct io_uring_cqe *cqe;
	io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
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
	work |= cache_zip_poll(sh->cache);     /* after the drains: they may queue jobs */
	work |= fwd_flush(sh);
	l2_flush(sh);
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
		bool work = exchange(sh);
		if (work) {
			sh->last_work_ns = sh->now_ns;
			busy_from = busy_from ? busy_from : sh->now_ns;
		}
		if (busy_from) {
			hist_record(&sh->stats->loop_busy, clock_mono_ns() - busy_from);
			busy_from = 0;
		}

		enter(sh, sh->now_ns - sh->last_work_ns < spin_ns);

		sh->now_ns = clock_mono_ns();
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
	}
}

/*
 * Stopping: every connection is shut, and the shard keeps draining its rings
 * until its own connections are freed and every message it sent has come
 * back (forwarded requests and Redis operations answered), and every other
 * shard is done too, since their messages may still wait for this shard's
 * store.  Bounded: TEARDOWN_ROUNDS x 20 ms.  What is still out then is
 * freed by shard_destroy().
 */
#define TEARDOWN_ROUNDS 100

static void teardown(struct shard *sh)
{
	bool counted = true;

	sh->stopping = true;
	if (sh->listen_fd >= 0) {
		close(sh->listen_fd);
		sh->listen_fd = -1;
	}
	if (sh->ring.ring_fd > 0) {
		conn_close_all(sh);
		for (int i = 0; i < TEARDOWN_ROUNDS; i++) {
			sh->now_ns = clock_mono_ns();
			exchange(sh);
			if (counted && !sh->nconns && fwd_alive(sh) == 0) {
				counted = false;
				atomic_fetch_sub_explicit(&sh->srv->closing, 1, memory_order_acq_rel);
			}
			if (!counted && !atomic_load_explicit(&sh->srv->closing, memory_order_acquire))
				break;
			struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 20000000 };
			struct io_uring_cqe *cqe;
			io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
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
}

void *shard_main(void *arg)
{
	struct shard *sh = arg;

	setup(sh);
	pthread_barrier_wait(&sh->srv->ready);     /* main reads sh->error */
	pthread_barrier_wait(&sh->srv->ready);     /* main has decided: run or stop */
	if (!sh->error && !atomic_load(&sh->srv->stop)) {
		arm_accept(sh);
		arm_event(sh);
		loop(sh);
	}
	teardown(sh);
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
	sh->event_fd = -1;
	sh->listen_fd = -1;
	sh->conns = calloc(cfg->max_conns, sizeof(*sh->conns));
	sh->dirty = calloc(cfg->max_conns, sizeof(*sh->dirty));
	sh->key_scratch = malloc(cfg->max_request_line + 1);
	if (!sh->conns || !sh->dirty || !sh->key_scratch || fwd_setup(sh) ||
	    (srv->coh && l2_setup(sh))) {
		shard_destroy(sh);
		return NULL;
	}
	return sh;
}

void shard_destroy(struct shard *sh)
{
	if (!sh)
		return;
	while (sh->nconns)
		conn_destroy(sh->conns[sh->nconns - 1]);
	l2_teardown(sh);
	fwd_teardown(sh);   /* after the connections: frees the messages they orphaned */
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
	if (sh->listen_fd >= 0)
		close(sh->listen_fd);
	free(sh->conns);
	free(sh->dirty);
	free(sh->key_scratch);
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

void shard_recycle_buffer(struct shard *sh, unsigned bid)
{
	io_uring_buf_ring_add(sh->br, sh->bufs + (size_t)bid * sh->buf_size, sh->buf_size,
			      (unsigned short)bid, io_uring_buf_ring_mask(sh->nbufs), 0);
	/* store-release of the tail (liburing 2.3's cq_advance variant lacks it) */
	io_uring_buf_ring_advance(sh->br, 1);
}
