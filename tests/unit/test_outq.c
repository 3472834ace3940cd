/*
 * test_outq.c - bytes to send with values by reference (outq.h): outq_iov()
 * against a flat copy of the same queue over random layouts, send offsets,
 * iovec limits and partial sends; pins released as their bytes are sent
 * (outq_release_sent), each exactly once, and the rest by outq_clear().
 * (The randomized check began as a review's reproducer.)
 *
 * Zero-copy sends (zc_holds): a queue sent with IORING_OP_SENDMSG_ZC keeps
 * its pins and its buffer until the kernel's notification, not its send's
 * completion, also when it is emptied or its connection ends in between.
 * The completions are made by hand: what is tested is the bookkeeping.
 * Refusals (zc_usage_refused_twice, zc_refused): a kernel without usage
 * reports refuses every send that asks for them, not zero-copy itself.
 * zc_stalled: when an ended connection's peer counts as stalled (its
 * socket may be dropped), over a real loopback TCP connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "ringcache/stats.h"
#include "ringcache/store.h"
#include "shard/outq.h"

#define ITERS 20000
#define IORING_NOTIF_USAGE_ZC_COPIED_TEST (1u << 31)   /* the kernel's value */

static _Atomic uint32_t pins[16];

static uint32_t pin_total(void)
{
	uint32_t n = 0;
	for (unsigned i = 0; i < 16; i++)
		n += atomic_load(&pins[i]);
	return n;
}

static void layouts(void)
{
	static uint8_t vals[16][256];
	uint8_t flat[8192], got[8192];

	srand(7);
	for (int iter = 0; iter < ITERS; iter++) {
		struct outq q;
		size_t flen = 0;
		unsigned nref = 0;

		memset(&q, 0, sizeof(q));
		for (int i = 0, pieces = rand() % 12; i < pieces; i++) {
			size_t n = (size_t)rand() % 40;
			uint8_t tmp[64];
			for (size_t k = 0; k < n; k++)
				tmp[k] = (uint8_t)rand();
			CHECK_EQ(outq_append(&q, tmp, n), 0);
			memcpy(flat + flen, tmp, n);
			flen += n;
			if (rand() % 2 && nref < 16) {
				size_t vn = 1 + (size_t)rand() % 200;
				uint8_t *v = vals[nref];
				for (size_t k = 0; k < vn; k++)
					v[k] = (uint8_t)rand();
				atomic_fetch_add(&pins[nref], 1);
				CHECK_EQ(outq_add_ref(&q, v, vn, &pins[nref]), 0);
				nref++;
				memcpy(flat + flen, v, vn);
				flen += vn;
			}
		}
		CHECK_EQ(outq_len(&q), flen);

		/* send it all in random partial sends of at most `max` iovecs */
		unsigned max = 1 + (unsigned)rand() % 5;
		size_t sent = 0, glen = 0;
		int guard = 0;
		while (sent < flen && guard++ < 10000) {
			struct iovec iov[8];
			unsigned k = outq_iov(&q, sent, iov, max);
			if (k == 0)
				break;
			size_t tot = 0;
			for (unsigned j = 0; j < k; j++)
				tot += iov[j].iov_len;
			size_t take = 1 + (size_t)rand() % tot, t = take;
			for (unsigned j = 0; j < k && t; j++) {
				size_t n = iov[j].iov_len < t ? iov[j].iov_len : t;
				memcpy(got + glen, iov[j].iov_base, n);
				glen += n;
				t -= n;
			}
			sent += take;
			outq_release_sent(&q, sent);
			/* a value is let go exactly when its last byte has been sent */
			size_t at = 0, end;
			uint32_t still = 0;
			for (uint32_t r = 0; r < q.nrefs; r++) {
				at += q.refs[r].len;
				end = q.refs[r].at + at;
				still += end > sent;
			}
			if (pin_total() != still) {
				CHECK_EQ(pin_total(), still);
				goto out;
			}
		}
		if (glen != flen || memcmp(got, flat, glen) != 0) {
			CHECK(!"outq_iov bytes differ from the queue's");
			printf("iter %d flen %zu glen %zu\n", iter, flen, glen);
			goto out;
		}
		/* and a queue cleared before it was all sent lets go of the rest */
		if (iter % 2 == 0 && nref) {
			atomic_fetch_add(&pins[0], 1);
			CHECK_EQ(outq_add_ref(&q, vals[0], 10, &pins[0]), 0);
			CHECK_EQ(pin_total(), 1);
		}
		outq_deinit(&q);
		CHECK_EQ(pin_total(), 0);
	}
out:
	return;
}

static struct io_uring_cqe cqe_of(int res, uint32_t flags)
{
	struct io_uring_cqe c;

	memset(&c, 0, sizeof(c));
	c.res = res;
	c.flags = flags;
	return c;
}

/* A queue of a head, a value (pins[0]) and a tail, and its iovecs. */
static size_t zc_fill(struct outq *q, struct msghdr *msg, struct iovec *iov, uint8_t *val)
{
	atomic_fetch_add(&pins[0], 1);
	CHECK_EQ(outq_append(q, "HEAD", 4), 0);
	CHECK_EQ(outq_add_ref(q, val, 100000, &pins[0]), 0);
	CHECK_EQ(outq_append(q, "\r\n", 2), 0);
	memset(msg, 0, sizeof(*msg));
	msg->msg_iov = iov;
	msg->msg_iovlen = outq_iov(q, 0, iov, 8);
	return outq_len(q);
}

static void zc_holds(void)
{
	static uint8_t val[100000];
	struct stats_shard *st = aligned_alloc(128, sizeof(*st));
	struct io_uring ring;
	struct io_uring_sqe sqe;
	struct iovec iov[8];
	struct msghdr msg;
	struct outq q;
	int owner, res;
	struct io_uring_cqe c;

	memset(st, 0, sizeof(*st));
	memset(&q, 0, sizeof(q));
	q.stats = st;
	if (io_uring_queue_init(4, &ring, 0) || outq_zc_setup(&ring, 64 << 10)) {
		printf("outq: no io_uring or no IORING_OP_SENDMSG_ZC here: zero-copy not tested\n");
		exit(77);
	}
	io_uring_queue_exit(&ring);

	/* 1. one send: the pin and the buffer outlive its completion and the
	 * queue being emptied, until the notification */
	size_t len = zc_fill(&q, &msg, iov, val);
	struct outq_zc *z = outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, true);
	CHECK(z != NULL);
	CHECK_EQ(sqe.opcode, IORING_OP_SENDMSG_ZC);
	CHECK_EQ(stats_get(&st->sends_zc), 1);
	CHECK_EQ(stats_get(&st->send_pins), 1);
	const char *head = q.bytes.data;
	c = cqe_of((int)len, IORING_CQE_F_MORE);
	CHECK(outq_zc_complete(z, &c, &res) == &owner);
	CHECK_EQ(res, (long long)len);
	outq_release_sent(&q, len);
	CHECK_EQ(pin_total(), 1);               /* sent, not yet let go by the kernel */
	outq_clear(&q);
	CHECK_EQ(pin_total(), 1);
	CHECK(outq_zc_busy(&q));
	CHECK(q.bytes.data != head);            /* the queue writes into a fresh buffer */
	CHECK(q.held_bytes > 0);
	CHECK_EQ(memcmp(head, "HEAD", 4), 0);   /* the old one is intact, still held */
	c = cqe_of((int)IORING_NOTIF_USAGE_ZC_COPIED_TEST, IORING_CQE_F_NOTIF);
	CHECK(outq_zc_complete(z, &c, &res) == &owner);
	CHECK_EQ(res, OUTQ_ZC_NOTIF);
	CHECK_EQ(pin_total(), 0);
	CHECK(!outq_zc_busy(&q));
	CHECK_EQ(q.held_bytes, 0);
	CHECK_EQ(stats_get(&st->send_pins), 0);
	CHECK_EQ(stats_get(&st->sends_zc_copied), 1);

	/* 2. two partial sends of one queue: the first one's notification
	 * before the second completes lets nothing go */
	len = zc_fill(&q, &msg, iov, val);
	z = outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, true);
	c = cqe_of(70000, IORING_CQE_F_MORE);
	outq_zc_complete(z, &c, &res);
	msg.msg_iovlen = outq_iov(&q, 70000, iov, 8);
	CHECK(outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, false) == NULL); /* not TCP */
	msg.msg_iovlen = outq_iov(&q, 0, iov, 8);
	CHECK(outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, true) == z);   /* same hold */
	c = cqe_of(0, IORING_CQE_F_NOTIF);
	outq_zc_complete(z, &c, &res);
	CHECK(outq_zc_busy(&q));                /* the second send is in flight */
	c = cqe_of((int)(len - 70000), IORING_CQE_F_MORE);
	outq_zc_complete(z, &c, &res);
	outq_clear(&q);
	CHECK_EQ(pin_total(), 1);
	c = cqe_of(0, IORING_CQE_F_NOTIF);
	outq_zc_complete(z, &c, &res);
	CHECK_EQ(pin_total(), 0);
	CHECK(!outq_zc_busy(&q));

	/* 2b. the notification ahead of its own send's completion (the counts
	 * pass through zero and back): nothing is let go before the send
	 * completes, and all of it once the queue is emptied */
	len = zc_fill(&q, &msg, iov, val);
	z = outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, true);
	c = cqe_of(0, IORING_CQE_F_NOTIF);
	outq_zc_complete(z, &c, &res);
	CHECK_EQ(pin_total(), 1);
	c = cqe_of((int)len, IORING_CQE_F_MORE);
	outq_zc_complete(z, &c, &res);
	CHECK_EQ(res, (long long)len);
	CHECK(!outq_zc_busy(&q));               /* both completions are in */
	outq_clear(&q);
	CHECK_EQ(pin_total(), 0);
	CHECK_EQ(q.held_bytes, 0);

	/* 3. a send the kernel completes without a notification to come
	 * (IORING_CQE_F_MORE clear): let go when the queue is emptied */
	zc_fill(&q, &msg, iov, val);
	z = outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, true);
	c = cqe_of(-EPIPE, 0);
	outq_zc_complete(z, &c, &res);
	CHECK_EQ(res, -EPIPE);
	CHECK(!outq_zc_busy(&q));
	outq_clear(&q);
	CHECK_EQ(pin_total(), 0);

	/* 4. the connection ends (its queues freed) with a notification due:
	 * only at exit, and nothing is left behind (ASan: no leak) */
	zc_fill(&q, &msg, iov, val);
	z = outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, true);
	c = cqe_of(10, IORING_CQE_F_MORE);
	outq_zc_complete(z, &c, &res);
	CHECK(outq_zc_busy(&q));
	outq_deinit(&q);
	CHECK_EQ(pin_total(), 0);
	CHECK_EQ(stats_get(&st->send_pins), 0);

	free(st);
}

/*
 * A kernel without IORING_SEND_ZC_REPORT_USAGE (6.0, 6.1 before the
 * backport) answers -EINVAL to every send that asks for usage reports.
 * Sends prepared before the first refusal came back (two connections in
 * one batch, or two shards) all ask, and all come back -EINVAL: each must
 * read as "send again without the reports", not the second one as "the
 * kernel refuses zero-copy sends" (a review found every send copying for
 * good after two such refusals).
 */
static void zc_usage_refused_twice(void)
{
	static uint8_t val[100000];
	struct io_uring_sqe sqe1, sqe2;
	struct iovec iov1[8], iov2[8];
	struct msghdr msg1, msg2;
	struct outq q1, q2;
	struct io_uring_cqe c;
	int owner, res;

	memset(&q1, 0, sizeof(q1));
	memset(&q2, 0, sizeof(q2));
	zc_fill(&q1, &msg1, iov1, val);
	zc_fill(&q2, &msg2, iov2, val);
	struct outq_zc *z1 = outq_prep_sendmsg(&q1, &owner, &sqe1, 3, &msg1, true);
	struct outq_zc *z2 = outq_prep_sendmsg(&q2, &owner, &sqe2, 4, &msg2, true);
	CHECK(z1 && z2);
	CHECK(sqe1.ioprio & (1u << 3));         /* IORING_SEND_ZC_REPORT_USAGE */
	CHECK(sqe2.ioprio & (1u << 3));
	c = cqe_of(-EINVAL, 0);
	outq_zc_complete(z1, &c, &res);
	CHECK_EQ(res, 0);                       /* nothing sent: send again */
	outq_zc_complete(z2, &c, &res);
	CHECK_EQ(res, 0);
	/* both are sent again zero-copy, without asking for usage reports */
	CHECK(outq_prep_sendmsg(&q1, &owner, &sqe1, 3, &msg1, true) == z1);
	CHECK_EQ(sqe1.opcode, IORING_OP_SENDMSG_ZC);
	CHECK(!(sqe1.ioprio & (1u << 3)));
	CHECK(outq_prep_sendmsg(&q2, &owner, &sqe2, 4, &msg2, true) == z2);
	CHECK_EQ(sqe2.opcode, IORING_OP_SENDMSG_ZC);
	c = cqe_of(4, IORING_CQE_F_MORE);         /* they go now */
	outq_zc_complete(z1, &c, &res);
	outq_zc_complete(z2, &c, &res);
	CHECK_EQ(res, 4);
	outq_deinit(&q1);
	outq_deinit(&q2);
	CHECK_EQ(pin_total(), 0);
}

/* 5. small sends copy; a refused send reads as nothing sent, and every
 * later one copies (last: it is for the whole process) */
static void zc_refused(void)
{
	static uint8_t val[100000];
	struct io_uring_sqe sqe;
	struct iovec iov[8];
	struct msghdr msg;
	struct outq q;
	int owner, res;
	struct io_uring_cqe c;

	memset(&q, 0, sizeof(q));
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	CHECK_EQ(outq_append(&q, "x", 1), 0);
	msg.msg_iovlen = outq_iov(&q, 0, iov, 8);
	CHECK(outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, true) == NULL);
	CHECK_EQ(sqe.opcode, IORING_OP_SENDMSG);
	outq_deinit(&q);
	zc_fill(&q, &msg, iov, val);
	struct outq_zc *z = outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, true);
	if (!z) {
		CHECK(!"zero-copy sends still on before the refusal");
		outq_deinit(&q);
		return;
	}
	c = cqe_of(-EOPNOTSUPP, 0);
	outq_zc_complete(z, &c, &res);
	CHECK_EQ(res, 0);
	CHECK(outq_prep_sendmsg(&q, &owner, &sqe, 3, &msg, true) == NULL);
	CHECK_EQ(sqe.opcode, IORING_OP_SENDMSG);
	outq_deinit(&q);
	CHECK_EQ(pin_total(), 0);
}

/*
 * outq_stalled() over a real loopback TCP connection, on a made-up
 * clock: a peer that acknowledges nothing is stalled once more than idle
 * has passed since the first look; one that acknowledged bytes since the
 * last look is not, and its clock starts again.
 */
static void zc_stalled(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), cl = socket(AF_INET, SOCK_STREAM, 0), sv;
	const uint64_t idle = 1000;
	struct outq q;
	char buf[4096];

	memset(&q, 0, sizeof(q));
	if (l == -1 || cl == -1 || bind(l, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &alen) ||
	    connect(cl, (struct sockaddr *)&a, sizeof(a)) || (sv = accept(l, NULL, NULL)) == -1) {
		CHECK(!"a loopback TCP connection");
		return;
	}
	CHECK(!outq_stalled(&q, sv, 5000, idle));    /* the first look */
	CHECK(!outq_stalled(&q, sv, 6000, idle));    /* idle, not more */
	CHECK(outq_stalled(&q, sv, 6001, idle));
	/* the peer reads what is sent: the kernel acknowledges it (waited for
	 * on the socket's own count, not a clock) */
	memset(buf, 'x', sizeof(buf));
	CHECK_EQ(send(sv, buf, sizeof(buf), 0), (long long)sizeof(buf));
	size_t got = 0;
	while (got < sizeof(buf)) {
		ssize_t n = recv(cl, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	CHECK_EQ(got, sizeof(buf));
	uint64_t t = 7000;
	bool moved = false;
	for (int i = 0; i < 1000000 && !moved; i++)
		moved = !outq_stalled(&q, sv, t, idle);
	CHECK(moved);                                   /* progress: not stalled */
	CHECK(!outq_stalled(&q, sv, t + idle, idle));
	CHECK(outq_stalled(&q, sv, t + idle + 1, idle));
	/* a socket it cannot ask counts as making no progress */
	CHECK(outq_stalled(&q, -1, t + idle + 1, idle));
	close(cl);
	close(sv);
	close(l);
}

int main(void)
{
	layouts();
	zc_holds();
	zc_usage_refused_twice();
	zc_refused();
	zc_stalled();
	return check_done("outq");
}
