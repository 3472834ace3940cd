/*
 * outq.c - bytes to send, values by reference, zero-copy sends (outq.h).
 */
#include <errno.h>
#include <netinet/in.h>
#include <linux/tcp.h>           /* tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outq.h"
#include "ringcache/stats.h"
#include "ringcache/store.h"

/* liburing 2.3's headers predate these (kernel 6.2, backported to 6.1.y). */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

/*
 * One queue's zero-copy sends.  `cqes` counts the completions still to
 * come: +1 for each send submitted, -1 at its completion, +1 again when
 * that completion says a notification follows (IORING_CQE_F_MORE), -1 at
 * the notification.  Retired (its queue emptied), it owns the queue's
 * buffer and the pins of refs[from..nrefs), and sits on `home->held`.
 */
struct outq_zc {
	uint32_t cqes;
	bool retired;
	bool usage;                     /* its send in flight asked for usage reports */
	void *owner;
	struct outq *home;
	struct outq_zc *prev, *next;    /* on home->held */
	struct buf bytes;
	struct outq_ref *refs;
	uint32_t from, nrefs;
	struct stats_shard *stats;
	struct store *store;
};

/*
 * Process-wide, set by every shard's outq_zc_setup() from the same flag:
 * the threshold, whether the kernel refused zero-copy sends (then every
 * shard copies), and whether it takes IORING_SEND_ZC_REPORT_USAGE.
 */
static _Atomic size_t zc_min;
static atomic_bool zc_refused, zc_no_usage;

static void zc_refuse(const char *why)
{
	if (!atomic_exchange(&zc_refused, true))
		fprintf(stderr, "ringcached: --send-zc-min: %s; sends copy from now on\n", why);
}

int outq_zc_setup(struct io_uring *ring, size_t min)
{
	if (!min)
		return 0;
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	bool ok = p && io_uring_opcode_supported(p, IORING_OP_SENDMSG_ZC);

	if (p)
		io_uring_free_probe(p);
	if (!ok) {
		zc_refuse("the kernel has no IORING_OP_SENDMSG_ZC (6.1+)");
		return -EOPNOTSUPP;
	}
	atomic_store(&zc_min, min);
	return 0;
}

static void pins_add(struct stats_shard *st, int64_t n)
{
	if (st)
		stats_add(&st->send_pins, (uint64_t)n);
}

int outq_add_ref(struct outq *q, const uint8_t *p, size_t len, _Atomic uint32_t *pin)
{
	if (q->nrefs == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 8;
		struct outq_ref *r = realloc(q->refs, cap * sizeof(*r));
		if (!r) {
			store_unpin_own(q->store, pin);
			return -ENOMEM;
		}
		q->refs = r;
		q->cap = cap;
	}
	q->refs[q->nrefs++] = (struct outq_ref){ q->bytes.len, p, len, pin };
	q->ref_bytes += len;
	pins_add(q->stats, 1);
	return 0;
}

/* Adds the part of [p, p+n) after `skip` bytes; updates skip. */
static unsigned add(struct iovec *iov, unsigned k, unsigned max, const void *p, size_t n,
		    size_t *skip)
{
	if (k == max || n == 0)
		return k;
	if (*skip >= n) {
		*skip -= n;
		return k;
	}
	iov[k].iov_base = (char *)p + *skip;
	iov[k].iov_len = n - *skip;
	*skip = 0;
	return k + 1;
}

unsigned outq_iov(const struct outq *q, size_t off, struct iovec *iov, unsigned max)
{
	size_t at = 0, skip = off;
	unsigned k = 0;

	for (uint32_t i = 0; i < q->nrefs && k < max; i++) {
		const struct outq_ref *r = &q->refs[i];
		k = add(iov, k, max, q->bytes.data + at, r->at - at, &skip);
		k = add(iov, k, max, r->p, r->len, &skip);
		at = r->at;
	}
	return add(iov, k, max, q->bytes.data + at, q->bytes.len - at, &skip);
}

void outq_release_sent(struct outq *q, size_t sent)
{
	if (q->zc)
		return; /* the kernel reads them until the notification: the hold's */
	while (q->released < q->nrefs) {
		const struct outq_ref *r = &q->refs[q->released];
		if (r->at + q->released_bytes + r->len > sent)
			break;
		store_unpin_own(q->store, r->pin);
		pins_add(q->stats, -1);
		q->released_bytes += r->len;
		q->released++;
	}
}

static void unpin_range(struct stats_shard *st, struct store *own, const struct outq_ref *refs,
			uint32_t from, uint32_t to)
{
	for (uint32_t i = from; i < to; i++)
		store_unpin_own(own, refs[i].pin);
	pins_add(st, -(int64_t)(to - from));
}

static size_t zc_bytes(const struct outq_zc *z)
{
	return z->bytes.cap + z->nrefs * sizeof(struct outq_ref);
}

/* A retired hold the kernel is done with: its pins, buffer and itself. */
static void zc_free(struct outq_zc *z)
{
	struct outq *home = z->home;

	unpin_range(z->stats, z->store, z->refs, z->from, z->nrefs);
	if (z->prev)
		z->prev->next = z->next;
	else
		home->held = z->next;
	if (z->next)
		z->next->prev = z->prev;
	home->held_bytes -= zc_bytes(z);
	buf_deinit(&z->bytes);
	free(z->refs);
	free(z);
}

/*
 * q is being emptied while the kernel may still read it: its hold takes
 * its buffer and the pins not yet released, and q starts afresh.
 */
static void zc_retire(struct outq *q)
{
	struct outq_zc *z = q->zc;

	z->retired = true;
	z->home = q;
	z->bytes = q->bytes;
	z->refs = q->refs;
	z->from = q->released;
	z->nrefs = q->nrefs;
	memset(&q->bytes, 0, sizeof(q->bytes));
	q->refs = NULL;
	q->cap = 0;
	q->zc = NULL;
	z->prev = NULL;
	z->next = q->held;
	if (q->held)
		q->held->prev = z;
	q->held = z;
	q->held_bytes += zc_bytes(z);
	if (z->cqes == 0)
		zc_free(z);
}

void outq_clear(struct outq *q)
{
	if (q->zc)
		zc_retire(q);
	else
		unpin_range(q->stats, q->store, q->refs, q->released, q->nrefs);
	q->nrefs = q->released = 0;
	q->ref_bytes = q->released_bytes = 0;
	q->bytes.len = 0;
}

void outq_deinit(struct outq *q)
{
	outq_clear(q);
	while (q->held)
		zc_free(q->held);
	free(q->refs);
	q->refs = NULL;
	q->cap = 0;
	buf_deinit(&q->bytes);
}

int outq_zc_drop(int fd)
{
	/* connect(AF_UNSPEC) is TCP's disconnect: it purges the write queue */
	struct sockaddr sa = { .sa_family = AF_UNSPEC };

	return connect(fd, &sa, sizeof(sa)) == -1 ? -errno : 0;
}

bool outq_stalled(struct outq *q, int fd, uint64_t now_ns, uint64_t idle_ns)
{
	struct tcp_info ti;
	socklen_t n = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &n) == -1)
		ti.tcpi_bytes_acked = q->acked;
	if (!q->acked_ns || ti.tcpi_bytes_acked != q->acked) {
		q->acked = ti.tcpi_bytes_acked;
		q->acked_ns = now_ns;
		return false;
	}
	return now_ns - q->acked_ns > idle_ns;
}

bool outq_zc_busy(const struct outq *q)
{
	return q->held || (q->zc && q->zc->cqes);
}

struct outq_zc *outq_prep_sendmsg(struct outq *q, void *owner, struct io_uring_sqe *sqe, int fd,
				  struct msghdr *msg, bool zc_ok)
{
	size_t min = atomic_load_explicit(&zc_min, memory_order_relaxed), len = 0;

	for (size_t i = 0; i < msg->msg_iovlen; i++)
		len += msg->msg_iov[i].iov_len;
	if (!zc_ok || !min || len < min || atomic_load_explicit(&zc_refused, memory_order_relaxed))
		goto copy;
	if (!q->zc) {
		q->zc = calloc(1, sizeof(*q->zc));
		if (!q->zc)
			goto copy;
		q->zc->owner = owner;
		q->zc->stats = q->stats;
		q->zc->store = q->store;
	}
	io_uring_prep_sendmsg_zc(sqe, fd, msg, MSG_NOSIGNAL);
	q->zc->usage = !atomic_load_explicit(&zc_no_usage, memory_order_relaxed);
	if (q->zc->usage)
		sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
	q->zc->cqes++;
	if (q->stats)
		stats_inc(&q->stats->sends_zc);
	return q->zc;
copy:
	io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL);
	return NULL;
}

/*
 * The kernel refused a zero-copy send: one that asked for usage reports
 * (older kernels take no zc flags: -EINVAL) is made again without them,
 * one that did not turns zero-copy off.  Whether the send asked decides,
 * not whether the reports are still on: sends prepared before the first
 * refusal came back (other connections, other shards) asked too, and
 * their -EINVAL says nothing new.  It cannot loop: a send that asked
 * turns the reports off for good, one that did not, zero-copy.
 */
static void zc_refused_send(const struct outq_zc *z, int res)
{
	if (res == -EINVAL && z->usage) {
		atomic_store(&zc_no_usage, true);
		return;
	}
	zc_refuse(res == -EINVAL ? "the kernel refused IORING_OP_SENDMSG_ZC (EINVAL)"
				 : "the kernel refused IORING_OP_SENDMSG_ZC (EOPNOTSUPP)");
}

void *outq_zc_complete(struct outq_zc *z, const struct io_uring_cqe *cqe, int *res)
{
	void *owner = z->owner;

	z->cqes--;
	if (cqe->flags & IORING_CQE_F_NOTIF) {
		*res = OUTQ_ZC_NOTIF;
		if (z->stats && !atomic_load_explicit(&zc_no_usage, memory_order_relaxed) &&
		    ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED))
			stats_inc(&z->stats->sends_zc_copied);
		if (z->retired && z->cqes == 0)
			zc_free(z);
		return owner;
	}
	if (cqe->flags & IORING_CQE_F_MORE)
		z->cqes++;
	*res = cqe->res;
	if (cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP) {
		zc_refused_send(z, cqe->res);
		*res = 0;
	}
	return owner;
}
