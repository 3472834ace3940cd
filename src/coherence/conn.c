/*
 * conn.c - one Redis connection of the coherence thread: a non-blocking TCP
 * socket, an output buffer of RESP commands, hiredis' reply parser, and the
 * queue of replies still awaited.
 *
 * Why redisReader over our own sockets rather than hiredis' async API: the
 * thread already sleeps in one poll() on its eventfd and both sockets, and
 * it needs things the 0.14 async API does not give: a deadline per command
 * (the async API has none), a bulk string assembled from parts (a stored
 * value is its frame header plus the shard's bytes, copied once into the
 * output buffer; redisAsyncCommandArgv would want the frame contiguous, one
 * more copy of the value, and then formats it again), and full control of
 * when a connection is torn down and what happens to its pending commands.
 * The reader is the part of hiredis worth reusing: a tested incremental RESP
 * parser.
 *
 * Redis answers the commands of a connection in order, so the pending queue
 * is a FIFO: the n-th reply belongs to the n-th entry.  An entry whose
 * deadline passed stays in the queue (flagged) until its late reply arrives.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "url.h"

#define READ_CHUNK 65536
#define READS_PER_CALL 16
#define OUT_KEEP (1u << 20)     /* an emptied output buffer above this is freed */

void coh_conn_init(struct coh_conn *cn, const char *name)
{
	memset(cn, 0, sizeof(*cn));
	cn->fd = -1;
	cn->name = name;
	cn->state = COH_CONN_DOWN;
	cn->reply_max = COH_REPLY_MAX;
	cn->elements_max = COH_REPLY_ELEMENTS_MAX;
}

/* hiredis' createArray, refusing (NULL: the reader reports an error) an
 * array that would take the reply past elements_max. */
static void *create_array(const redisReadTask *task, int elements)
{
	struct coh_conn *cn = task->privdata;

	if (elements > 0) {
		if ((size_t)elements > cn->elements_max - cn->reply_elements)
			return NULL;
		cn->reply_elements += (size_t)elements;
	}
	return cn->base->createArray(task, elements);
}

static redisReader *reader_create(struct coh_conn *cn)
{
	redisReader *r = redisReaderCreate();

	if (!r)
		return NULL;
	cn->base = r->fn;
	cn->fns = *r->fn;
	cn->fns.createArray = create_array;
	r->fn = &cn->fns;
	r->privdata = cn;
	cn->reply_bytes = cn->reply_elements = 0;
	return r;
}

void coh_conn_close(struct coh_conn *cn)
{
	if (cn->fd != -1)
		close(cn->fd);
	cn->fd = -1;
	cn->state = COH_CONN_DOWN;
	cn->out.len = 0;
	cn->out_off = 0;
	if (cn->out.cap > OUT_KEEP)
		buf_deinit(&cn->out);
	if (cn->reader)
		redisReaderFree(cn->reader);
	cn->reader = NULL;
	cn->q_head = cn->q_len = cn->q_checked = 0;
}

void coh_conn_deinit(struct coh_conn *cn)
{
	coh_conn_close(cn);
	buf_deinit(&cn->out);
	free(cn->q);
	cn->q = NULL;
	cn->q_cap = 0;
}

/*
 * Name resolution uses getaddrinfo() in the coherence thread: a numeric
 * address or an /etc/hosts name costs nothing; a DNS name that resolves
 * slowly stalls this thread (never a shard) for that long.
 */
int coh_conn_open(struct coh_conn *cn, const struct coh_url *u)
{
	struct addrinfo hints, *res, *ai;
	int fd = -1, err = -EHOSTUNREACH, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(u->host, u->port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd == -1) {
			err = -errno;
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (ai->ai_addrlen <= sizeof(cn->addr)) {
			memcpy(&cn->addr, ai->ai_addr, ai->ai_addrlen);
			cn->addr_len = (uint32_t)ai->ai_addrlen;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			cn->state = COH_CONN_HANDSHAKE;
			break;
		}
		if (errno == EINPROGRESS) {
			cn->state = COH_CONN_CONNECTING;
			break;
		}
		err = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		return err;
	cn->reader = reader_create(cn);
	if (!cn->reader) {
		close(fd);
		cn->state = COH_CONN_DOWN;
		return -ENOMEM;
	}
	cn->fd = fd;
	cn->out.len = 0;
	cn->out_off = 0;
	return 0;
}

int coh_conn_hello(struct coh_conn *cn, const struct coh_url *u, bool select_db,
		   const char *channel)
{
	int rc = 0;

	if (u->auth) {
		bool user = u->user[0] != '\0';
		rc |= coh_conn_array(cn, user ? 3 : 2);
		rc |= coh_conn_bulk(cn, "AUTH", 4);
		if (user)
			rc |= coh_conn_bulk(cn, u->user, strlen(u->user));
		rc |= coh_conn_bulk(cn, u->password, strlen(u->password));
		rc |= coh_conn_push(cn, COH_P_HANDSHAKE, 0, 0, NULL);
	}
	if (select_db && u->db) {
		rc |= coh_conn_array(cn, 2);
		rc |= coh_conn_bulk(cn, "SELECT", 6);
		rc |= coh_conn_bulk_u64(cn, u->db);
		rc |= coh_conn_push(cn, COH_P_HANDSHAKE, 0, 0, NULL);
	}
	if (channel) {
		rc |= coh_conn_array(cn, 2);
		rc |= coh_conn_bulk(cn, "SUBSCRIBE", 9);
		rc |= coh_conn_bulk(cn, channel, strlen(channel));
	} else {
		rc |= coh_conn_array(cn, 1);
		rc |= coh_conn_bulk(cn, "PING", 4);
	}
	rc |= coh_conn_push(cn, COH_P_READY, 0, 0, NULL);
	return rc ? -ENOMEM : 0;
}

bool coh_reply_is(const redisReply *r, const char *s)
{
	size_t n = strlen(s);
	return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
	       r->len == n && !strncasecmp(r->str, s, n);
}

bool coh_conn_hello_ok(uint8_t kind, const redisReply *r, bool sub)
{
	if (kind == COH_P_HANDSHAKE)
		return r->type != REDIS_REPLY_ERROR;
	if (sub)
		return r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
		       coh_reply_is(r->element[0], "subscribe");
	return coh_reply_is(r, "PONG");
}

void coh_conn_backoff(struct coh_conn *cn, uint64_t now, bool was_ready, uint64_t *rng,
		      uint32_t min_ms, uint32_t max_ms)
{
	uint32_t ms;

	if (was_ready)
		cn->backoff_ms = min_ms;
	ms = cn->backoff_ms;
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	ms = ms - ms / 4 + (uint32_t)(*rng % (ms / 2 + 1));
	cn->retry_at = now + (uint64_t)ms * 1000000u;
	if (!was_ready) {
		uint64_t next = (uint64_t)cn->backoff_ms * 2;
		cn->backoff_ms = next > max_ms ? max_ms : (uint32_t)next;
	}
}

int coh_conn_connected(struct coh_conn *cn)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
		return -errno;
	if (soerr)
		return -soerr;
	cn->state = COH_CONN_HANDSHAKE;
	return 0;
}

bool coh_conn_wants_write(const struct coh_conn *cn)
{
	return cn->fd != -1 &&
	       (cn->state == COH_CONN_CONNECTING || cn->out_off < cn->out.len);
}

int coh_conn_write(struct coh_conn *cn)
{
	if (cn->fd == -1 || cn->state == COH_CONN_CONNECTING)
		return 0;
	while (cn->out_off < cn->out.len) {
		ssize_t n = send(cn->fd, cn->out.data + cn->out_off, cn->out.len - cn->out_off,
				 MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		cn->out_off += (size_t)n;
	}
	cn->out.len = 0;
	cn->out_off = 0;
	if (cn->out.cap > OUT_KEEP)
		buf_deinit(&cn->out);
	return 0;
}

int coh_conn_read(struct coh_conn *cn)
{
	char chunk[READ_CHUNK];

	if (cn->fd == -1 || cn->state == COH_CONN_CONNECTING)
		return 0;
	for (int i = 0; i < READS_PER_CALL; i++) {
		ssize_t n = recv(cn->fd, chunk, sizeof(chunk), 0);
		if (n == 0)
			return -ECONNRESET;
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (coh_conn_feed(cn, chunk, (size_t)n))
			return -ENOMEM;
		if ((size_t)n < sizeof(chunk))
			return 0;
	}
	return 0;
}

int coh_conn_feed(struct coh_conn *cn, const char *p, size_t n)
{
	if (!cn->reader && !(cn->reader = reader_create(cn)))
		return -ENOMEM;
	if (redisReaderFeed(cn->reader, p, n) != REDIS_OK)
		return -ENOMEM;
	cn->reply_bytes += n;
	return 0;
}

/*
 * hiredis looks for the end of a line (a status, an error, an integer, the
 * length of a bulk string or an array) from the line's start each time
 * bytes arrive.  A line that does not end is scanned whole at every
 * receive (16 KiB at a time on a shard's read connection, READ_CHUNK on the
 * coherence thread's): a Redis that sent an endless error line kept a
 * shard's loop busy for seconds per iteration once a few tens of MiB had
 * come (its L1 hits waited behind it, /stats timed out), and the
 * coherence thread reading 174 MB in 20 s, long before the reply bound
 * (COH_REPLY_MAX) ended it.  No reply to anything ringcached sends has a
 * line near this long (Redis' own error messages are short; values are
 * bulk strings, whose length line ends within 22 bytes), so a longer one
 * is a protocol error.
 */
#define READ_LINE_MAX 65536

/*
 * Whether the item the reader waits on is a line longer than READ_LINE_MAX.
 * What the reader holds from `pos` on is that item after its type byte: a
 * line, or a length followed by the first bytes of a bulk string (its end
 * of line within the first 22 bytes).  So at most READ_LINE_MAX + 2 bytes
 * are looked at, and only once that many wait.
 */
static bool line_over(const redisReader *rd)
{
	if (!rd || rd->len - rd->pos < READ_LINE_MAX + 2)
		return false;
	return !memmem(rd->buf + rd->pos, READ_LINE_MAX + 2, "\r\n", 2);
}

int coh_conn_reply(struct coh_conn *cn, redisReply **out)
{
	void *r = NULL;

	if (!cn->reader)
		return 0;
	if (redisReaderGetReply(cn->reader, &r) != REDIS_OK)
		return -EPROTO;
	if (!r)
		return cn->reply_bytes > cn->reply_max || line_over(cn->reader) ? -EPROTO : 0;
	/* what is left in the reader belongs to the replies after this one */
	size_t left = cn->reader->len - cn->reader->pos;
	size_t size = cn->reply_bytes - left;
	cn->reply_bytes = left;
	cn->reply_elements = 0;
	if (size > cn->reply_max) {
		freeReplyObject(r);
		return -EPROTO;
	}
	*out = r;
	return 1;
}

static int put_header(struct coh_conn *cn, char type, uint64_t n)
{
	char tmp[24];
	int len = snprintf(tmp, sizeof(tmp), "%c%" PRIu64 "\r\n", type, n);
	return buf_append(&cn->out, tmp, (size_t)len);
}

int coh_conn_array(struct coh_conn *cn, unsigned n)
{
	return put_header(cn, '*', n);
}

int coh_conn_bulk3(struct coh_conn *cn, const void *a, size_t an, const void *b, size_t bn,
		   const void *c, size_t cn_)
{
	size_t n = an + bn + cn_;

	if (put_header(cn, '$', n) || buf_reserve(&cn->out, n + 2))
		return -ENOMEM;
	buf_append(&cn->out, a, an);
	buf_append(&cn->out, b, bn);
	buf_append(&cn->out, c, cn_);
	buf_append(&cn->out, "\r\n", 2);
	return 0;
}

int coh_conn_bulk2(struct coh_conn *cn, const void *a, size_t an, const void *b, size_t bn)
{
	return coh_conn_bulk3(cn, a, an, b, bn, NULL, 0);
}

int coh_conn_bulk(struct coh_conn *cn, const void *p, size_t n)
{
	return coh_conn_bulk2(cn, p, n, NULL, 0);
}

int coh_conn_bulk_u64(struct coh_conn *cn, uint64_t v)
{
	char tmp[24];
	int len = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	return coh_conn_bulk(cn, tmp, (size_t)len);
}

int coh_conn_reserve(struct coh_conn *cn, uint32_t n)
{
	if (cn->q_cap - cn->q_len < n) {
		uint32_t cap = cn->q_cap ? cn->q_cap : 64;
		while (cap - cn->q_len < n)
			cap *= 2;
		struct coh_pend *q = malloc(sizeof(*q) * cap);
		if (!q)
			return -ENOMEM;
		for (uint32_t i = 0; i < cn->q_len; i++)
			q[i] = cn->q[(cn->q_head + i) & (cn->q_cap - 1)];
		free(cn->q);
		cn->q = q;
		cn->q_cap = cap;
		cn->q_head = 0;
	}
	return 0;
}

int coh_conn_push(struct coh_conn *cn, uint8_t kind, uint8_t flags, uint64_t deadline, void *p)
{
	if (coh_conn_reserve(cn, 1))
		return -ENOMEM;
	struct coh_pend *e = &cn->q[(cn->q_head + cn->q_len) & (cn->q_cap - 1)];
	e->kind = kind;
	e->flags = flags;
	e->deadline = deadline;
	e->p = p;
	cn->q_len++;
	return 0;
}

struct coh_pend *coh_conn_at(struct coh_conn *cn, uint32_t i)
{
	return i < cn->q_len ? &cn->q[(cn->q_head + i) & (cn->q_cap - 1)] : NULL;
}

struct coh_pend *coh_conn_front(struct coh_conn *cn)
{
	return coh_conn_at(cn, 0);
}

void coh_conn_pop(struct coh_conn *cn)
{
	if (!cn->q_len)
		return;
	cn->q_head = (cn->q_head + 1) & (cn->q_cap - 1);
	cn->q_len--;
	if (cn->q_checked)
		cn->q_checked--;
}
