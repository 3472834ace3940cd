/*
 * fuzz_coh_read.c - libFuzzer target for a shard's own read connection
 * (src/coherence/read.c): what it makes of the bytes a hostile Redis sends.
 * The module is created as the daemon creates it but not started; a read
 * connection is made ready by hand (the test plays the shard's loop and
 * the published address), reads are put in flight, and the input after the
 * first two bytes is fed as the replies, in pieces.
 *
 * Byte 0: (low 2 bits) + 1 reads in flight; 0x04 the gate moves while they
 * are out (a subscription loss); 0x08 their deadlines pass before any reply;
 * 0x10 the handshake is still open (the bytes answer the PING first).
 * Byte 1: the size of each piece fed (0 means all at once).
 *
 * Properties (abort on failure):
 *  - every read comes back exactly once, through coh_read_done(), by the
 *    end (coh_read_lost() ends what Redis never answered);
 *  - its status is one of the documented ones; an OK carries a value inside
 *    its own memory, a content type coh_ctype_valid() accepts, and
 *    COH_F_NOCACHE exactly when the gate moved;
 *  - a deadline that passed first makes it COH_TIMEOUT, whatever follows;
 *  - what the connection wrote is well-formed RESP: PING, then GET and PTTL
 *    of <prefix><key> for each read, in order.
 * tests/fuzz/replay.c runs corpus/coh-read through it in the normal build.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <unistd.h>

#include "coherence/format.h"
#include "coherence/state.h"
#include "fuzz.h"
#include "ringcache/clock.h"
#include "ringcache/hash.h"

#define MAX_READS 4

static const char *const keys[MAX_READS] = { "k0", "key1", "k\0y2", "k3" };
static const size_t key_lens[MAX_READS] = { 2, 4, 4, 2 };

static bool bulk_is(const redisReply *r, const char *s, size_t n)
{
	return r->type == REDIS_REPLY_STRING && r->len == n && !memcmp(r->str, s, n);
}

/* The commands written: PING, then GET k + PTTL k per read. */
static void check_commands(const struct buf *out, unsigned nreads)
{
	redisReader *rd = redisReaderCreate();
	char name[64];
	unsigned i = 0;
	void *rp;

	FUZZ_ASSERT(rd && redisReaderFeed(rd, out->data, out->len) == REDIS_OK);
	for (;; i++) {
		FUZZ_ASSERT(redisReaderGetReply(rd, &rp) == REDIS_OK);
		if (!rp)
			break;
		redisReply *r = rp;
		FUZZ_ASSERT(r->type == REDIS_REPLY_ARRAY);
		if (i == 0) {
			FUZZ_ASSERT(r->elements == 1 && bulk_is(r->element[0], "PING", 4));
		} else {
			unsigned k = (i - 1) / 2;
			FUZZ_ASSERT(k < nreads && r->elements == 2);
			FUZZ_ASSERT(bulk_is(r->element[0], i % 2 ? "GET" : "PTTL", i % 2 ? 3 : 4));
			memcpy(name, "ringcache:", 10);
			memcpy(name + 10, keys[k], key_lens[k]);
			FUZZ_ASSERT(bulk_is(r->element[1], name, 10 + key_lens[k]));
		}
		freeReplyObject(r);
	}
	FUZZ_ASSERT(i == 1 + 2 * nreads && rd->pos == rd->len);
	redisReaderFree(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct coh_config cfg = { .redis_url = "redis://127.0.0.1:1", .instance_id = "fuzz",
				  .nshards = 1, .cpu = -1 };
	struct coh_msg *m[MAX_READS];
	bool seen[MAX_READS] = { false };
	struct buf out = { 0 }, piece = { 0 };
	struct coh *c;
	struct coh_read *r;
	const void *addr;
	uint32_t len;
	int fd;

	if (size < 2)
		return 0;
	unsigned nreads = (data[0] & 3) + 1, step = data[1];
	bool moves = data[0] & 0x04, late = data[0] & 0x08, handshake = data[0] & 0x10;
	uint64_t now = 1000 * COH_MS;

	FUZZ_ASSERT(coh_create(&c, &cfg, NULL, NULL) == 0);
	struct sockaddr_in *sa = (struct sockaddr_in *)&c->addr;
	sa->sin_family = AF_INET;
	sa->sin_port = htons(1);
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->addr_len = sizeof(*sa);
	atomic_store(&c->gate, 0);
	FUZZ_ASSERT(coh_read_create(&r, c, 0) == 0);
	r->cn.reply_max = 1 << 16;
	r->cn.elements_max = 64;
	FUZZ_ASSERT(coh_read_open(r, now, &fd, &addr, &len) == 0);
	close(fd);
	FUZZ_ASSERT(coh_read_connected(r, 0, now) == 0);
	if (!handshake)
		FUZZ_ASSERT(coh_read_input(r, "+PONG\r\n", 7, now) == 0);
	/* before the handshake's answer nothing can be sent on it */
	FUZZ_ASSERT(coh_read_output(r, &piece) == 14);
	FUZZ_ASSERT(buf_append(&out, piece.data, piece.len) == 0);
	piece.len = 0;

	unsigned sent = 0;
	for (unsigned i = 0; i < nreads; i++) {
		m[i] = coh_msg_create(COH_GET, 0, hash_key(keys[i], key_lens[i]), keys[i],
				      key_lens[i], NULL, 0, 0);
		FUZZ_ASSERT(m[i] != NULL);
		m[i]->cookie = m[i];
		int rc = coh_read_get(r, m[i], now);
		FUZZ_ASSERT(rc == (handshake ? -EAGAIN : 0));
		if (rc) {
			coh_msg_destroy(m[i]);
			seen[i] = true;
		} else {
			sent++;
		}
	}
	if (coh_read_output(r, &piece)) {
		FUZZ_ASSERT(buf_append(&out, piece.data, piece.len) == 0);
		piece.len = 0;
	}
	check_commands(&out, sent);
	if (moves)
		atomic_store(&c->gate, 2);
	bool dropped = false;
	if (late && coh_read_timers(r, now + c->timeout_ns) < 0)
		dropped = true;

	char *resp = fuzz_copy(data + 2, size - 2);
	for (size_t off = 0; off < size - 2 && !dropped;) {
		size_t n = step ? step : size - 2;
		if (n > size - 2 - off)
			n = size - 2 - off;
		if (coh_read_input(r, resp + off, n, now) < 0)
			dropped = true;
		off += n;
	}
	free(resp);
	coh_read_lost(r, now);      /* ends whatever Redis never answered */

	struct coh_msg *d;
	while ((d = coh_read_done(r))) {
		unsigned i = 0;
		while (i < nreads && d != m[i])
			i++;
		FUZZ_ASSERT(i < nreads && !seen[i] && d->cookie == d);
		seen[i] = true;
		FUZZ_ASSERT(d->status <= COH_BAD_DATA && d->status != COH_SKIPPED);
		if (late)
			FUZZ_ASSERT(d->status == COH_TIMEOUT);
		if (d->status == COH_OK) {
			FUZZ_ASSERT(d->value_mem && d->value >= (char *)d->value_mem);
			FUZZ_ASSERT(coh_ctype_valid(d->ctype, d->ctype_len));
			FUZZ_ASSERT(d->ctype_len == 0 || d->ctype >= (char *)d->value_mem);
			FUZZ_ASSERT(!!(d->flags & COH_F_NOCACHE) == moves);
		}
		coh_msg_destroy(d);
	}
	for (unsigned i = 0; i < nreads; i++)
		FUZZ_ASSERT(seen[i]);
	coh_read_destroy(r);
	coh_destroy(c);
	buf_deinit(&out);
	buf_deinit(&piece);
	return 0;
}
