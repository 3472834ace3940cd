/*
 * test_outq.c - bytes to send with values by reference (outq.h): outq_iov()
 * against a flat copy of the same queue over random layouts, send offsets,
 * iovec limits and partial sends; pins released as their bytes are sent
 * (outq_release_sent), each exactly once, and the rest by outq_clear().
 * (The randomized check began as a review's reproducer.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ringcache/store.h"
#include "shard/outq.h"

#define ITERS 20000

static _Atomic uint32_t pins[16];

static uint32_t pin_total(void)
{
	uint32_t n = 0;
	for (unsigned i = 0; i < 16; i++)
		n += atomic_load(&pins[i]);
	return n;
}

int main(void)
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
	return check_done("outq");
}
