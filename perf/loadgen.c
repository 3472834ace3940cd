/*
 * loadgen.c - an HTTP/1.1 GET load generator that reaches a server over TCP
 * or a Unix socket, so the two transports can be measured with one client
 * side by side (perf/compare.sh; wrk and wrk2 connect only to HOST:PORT).
 *
 *   loadgen --connect 127.0.0.1:8080|unix:/path [-c CONNS] [-d DEPTH]
 *           [-s SECS] [-p PATH]... [-k KEYS] [-H 'Name: value']... [-R RATE]
 *
 * One thread, one epoll set, non-blocking sockets.  Two ways to load:
 *
 *   closed loop (no --rate): every connection keeps DEPTH requests in flight;
 *     after each read that completed responses it sends as many new ones as
 *     were answered, in one write.  A request is timed from that write to
 *     the last byte of its response.  This measures peak throughput.
 *
 *   constant rate (--rate R): requests are due on a fixed schedule, whatever
 *     the server does: R per second over all connections, in groups of DEPTH
 *     (group g is due at start + g * DEPTH / R and belongs to connection
 *     g mod CONNS, like wrk2's batches of pipeline.lua).  A connection sends
 *     a due request as soon as it has fewer than DEPTH in flight, and the
 *     request is timed from when it was DUE, not when it went out: a stall
 *     is charged to every request it held back (no coordinated omission).
 *     The loop sleeps in epoll_pwait2 with a nanosecond timeout and 1 ns of
 *     timer slack, so unlike wrk2 it adds no millisecond rounding; how late
 *     it woke for its schedule is reported as sched_lag (its own floor).
 *
 * The run starts once every connection is up (all within --timeout, else
 * exit 1), lasts --duration, and then stops.  Requests sent and never
 * answered (in flight at the end, or on a connection that failed) are
 * reported as unanswered; in rate mode, those due and never sent as unsent.
 *
 * Every byte from the server is hostile.  A response is a status line
 * (HTTP/1.0 or 1.1), headers, and a body of exactly Content-Length bytes
 * (none for 1xx, 204, 304).  The head is bounded by --max-head; bodies are
 * counted and skipped, never stored, so memory does not depend on what the
 * server sends.  Refused with a message that quotes the bytes: a malformed
 * status line or header, control characters, bare CR or LF, a head larger
 * than --max-head, Transfer-Encoding (chunked is not supported), no
 * Content-Length, two different Content-Lengths, 101, a response nobody
 * asked for.  The connection is then counted as an error, closed and
 * opened again 10 ms later (100 ms after a failed connect); the first few
 * errors of each kind are printed.  A response with Connection: close (or
 * HTTP/1.0 without keep-alive) ends its connection, which is opened again.
 *
 * Output: a human line, then one line the bench scripts read (the keys of
 * perf/summary.lua, which wrk and wrk2 print, plus a few), latencies in µs:
 *
 *   summary: requests=N duration_us=D bytes=B non2xx=E errors=S samples=N
 *            p50=.. p90=.. p99=.. p99.9=.. max=.. rate=R connections=C
 *            depth=D unanswered=U unsent=U sched_lag_p99=.. transport=tcp|unix
 *
 * Exit status: 0 a clean run, 2 the run ended but had errors, 1 it could
 * not run (bad arguments, the server unreachable at the start).
 *
 * Latencies go into a log-bucket histogram (hist_*): exact below 256 ns,
 * then 128 buckets per power of two, so a percentile is at most 0.8% above
 * the true value; it reports a bucket's top, capped at the exact maximum.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- limits (all documented in --help) ---------------------------------- */

enum {
	CONNS_MAX = 10000,
	DEPTH_MAX = 1024,
	PATHS_MAX = 64,		/* --path given this often at most */
	REQUESTS_MAX = 65536,	/* paths x keys */
	PATH_LEN_MAX = 2048,
	HEADERS_MAX = 16,	/* --header */
	HEADER_LEN_MAX = 1024,
	HEAD_MAX_DEFAULT = 8192,
	HEAD_MAX_MIN = 256,
	HEAD_MAX_MAX = 65536,
	RESP_HEADERS_MAX = 100,	/* header lines in one response */
	RBUF_SIZE = 256 * 1024,	/* one read buffer, shared by every connection */
	EVENTS_MAX = 512,
	ERRORS_SHOWN = 3,	/* messages printed per kind of error */
};
#define DURATION_MAX 3600.0
#define RATE_MAX 1e8
#define CONTENT_LENGTH_MAX (UINT64_C(1) << 40)
#define NS 1000000000ull

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

/* ---- histogram ----------------------------------------------------------
 *
 * HDR-like: values (ns) below 2^HIST_SUB_BITS * 2 are counted exactly; above,
 * each power of two [2^e, 2^(e+1)) is cut into 2^HIST_SUB_BITS equal buckets.
 *
 *   index:   0 .. 255        256 .. 383       384 .. 511    ...
 *   values:  0 .. 255 (1 ns) 256 .. 511 (2 ns) 512 .. 1023 (4 ns) ...
 *
 * Values of 2^HIST_TOP_BITS ns (73 minutes) and more count as the top bucket.
 */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_TOP_BITS 42
#define HIST_BUCKETS ((HIST_TOP_BITS - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t max;
	uint64_t n[HIST_BUCKETS];
};

static unsigned hist_index(uint64_t v)
{
	unsigned e, shift;

	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	if (v >= (UINT64_C(1) << HIST_TOP_BITS))
		return HIST_BUCKETS - 1;
	e = 63u - (unsigned)__builtin_clzll(v);
	shift = e - HIST_SUB_BITS;
	return (shift + 1) * HIST_SUB + (unsigned)(v >> shift) - HIST_SUB;
}

/* the largest value bucket i holds */
static uint64_t hist_top(unsigned i)
{
	unsigned shift;

	if (i < 2 * HIST_SUB)
		return i;
	shift = i / HIST_SUB - 1;
	return (((uint64_t)(i % HIST_SUB + HIST_SUB)) << shift) + (UINT64_C(1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->n[hist_index(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

/* the value at percentile q (0 < q <= 100): the top of the bucket that holds
 * the ceil(q% * count)-th smallest sample, capped at the maximum; 0 if empty */
static uint64_t hist_pct(const struct hist *h, double q)
{
	uint64_t rank, seen = 0;
	unsigned i;

	if (!h->count)
		return 0;
	rank = (uint64_t)ceil(q / 100.0 * (double)h->count);
	if (rank < 1)
		rank = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->n[i];
		if (seen >= rank)
			break;
	}
	return i < HIST_BUCKETS && hist_top(i) < h->max ? hist_top(i) : h->max;
}

/* ---- response heads -----------------------------------------------------
 *
 * resp_parse() reads one response head from the bytes a connection has
 * received.  It never allocates and never reads past len.
 */
struct resp_head {
	unsigned status;
	uint64_t content_length;	/* 0 when the status has no body */
	bool close;			/* the server closes after this response */
};

/* byte classes, filled once by resp_setup() */
enum { C_TCHAR = 1, C_VALUE = 2 };
static uint8_t byte_class[256];

static void resp_setup(void)
{
	const char *tspecial = "!#$%&'*+-.^_`|~";
	unsigned c;

	for (c = 0; c < 256; c++) {
		if (c == '\t' || (c >= 0x20 && c != 0x7f))
			byte_class[c] |= C_VALUE;	/* HTAB, SP, VCHAR, obs-text */
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c && strchr(tspecial, (int)c)))
			byte_class[c] |= C_TCHAR;
	}
}

static bool name_is(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && !strncasecmp(name, want, len);
}

/* does a comma-separated header value hold the token want (any case)? */
static bool has_token(const char *v, size_t len, const char *want)
{
	size_t i = 0, wl = strlen(want);

	while (i < len) {
		size_t s, e;

		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < len && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == wl && !strncasecmp(v + s, want, wl))
			return true;
	}
	return false;
}

/*
 * resp_parse - one response head at buf[0, len).
 * Returns the head's length (through the blank line) and fills *h; -EAGAIN
 * if the head is not complete yet (and may still fit in max_head bytes);
 * -EPROTO if it is malformed or too large, with *why saying what and *at
 * the offset of the offending bytes.  *h is untouched on failure.
 */
static int resp_parse(const char *buf, size_t len, size_t max_head, struct resp_head *h,
		      const char **why, size_t *at)
{
	struct resp_head r = { 0 };
	const char *end, *line, *eol;
	bool have_length = false, keep_alive = false;
	unsigned minor, nheaders = 0;
	size_t head, i;

	/* fail at once on what cannot become a status line */
	if (memcmp(buf, "HTTP/1.", len < 7 ? len : 7)) {
		*why = "not an HTTP/1.x status line";
		*at = 0;
		return -EPROTO;
	}
	end = memmem(buf, len < max_head ? len : max_head, "\r\n\r\n", 4);
	if (!end) {
		if (len >= max_head) {
			*why = "response head larger than --max-head";
			*at = 0;
			return -EPROTO;
		}
		return -EAGAIN;
	}
	head = (size_t)(end - buf) + 4;

	/* status line: HTTP/1.x SP 3DIGIT SP reason CRLF (the reason may be empty) */
	eol = memchr(buf, '\n', head);
	*at = 0;
	if (eol - buf < 13 || eol[-1] != '\r' || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' ||
	    buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' ||
	    buf[11] > '9' || buf[12] != ' ') {
		/* "HTTP/1.1 200\r\n" (no SP, no reason) is allowed too */
		if (!(eol - buf == 13 && eol[-1] == '\r' && (buf[7] == '0' || buf[7] == '1') &&
		      buf[8] == ' ' && buf[9] >= '1' && buf[9] <= '5' && buf[10] >= '0' &&
		      buf[10] <= '9' && buf[11] >= '0' && buf[11] <= '9')) {
			*why = "malformed status line";
			return -EPROTO;
		}
	}
	minor = (unsigned)(buf[7] - '0');
	r.status = (unsigned)(buf[9] - '0') * 100 + (unsigned)(buf[10] - '0') * 10 +
		   (unsigned)(buf[11] - '0');
	for (i = 13; buf + i < eol - 1; i++) {
		if (!(byte_class[(uint8_t)buf[i]] & C_VALUE)) {
			*why = "control character in the status line";
			*at = i;
			return -EPROTO;
		}
	}

	/* header lines: token ":" OWS value OWS CRLF */
	for (line = eol + 1; line < buf + head - 2; line = eol + 1) {
		const char *colon, *v, *ve;
		size_t nl;

		eol = memchr(line, '\n', (size_t)(buf + head - line));
		*at = (size_t)(line - buf);
		if (eol == line || eol[-1] != '\r') {
			*why = "header line not ended by CRLF (bare LF)";
			return -EPROTO;
		}
		if (++nheaders > RESP_HEADERS_MAX) {
			*why = "more than 100 header lines";
			return -EPROTO;
		}
		for (colon = line; colon < eol - 1 && (byte_class[(uint8_t)*colon] & C_TCHAR); colon++)
			;
		if (colon == line || *colon != ':') {
			*why = "malformed header name";
			return -EPROTO;
		}
		for (v = colon + 1; v < eol - 1; v++) {
			if (!(byte_class[(uint8_t)*v] & C_VALUE)) {
				*why = "control character in a header value (bare CR?)";
				*at = (size_t)(v - buf);
				return -EPROTO;
			}
		}
		v = colon + 1;
		ve = eol - 1;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		nl = (size_t)(colon - line);
		if (name_is(line, nl, "content-length")) {
			uint64_t n = 0;
			const char *d;

			if (v == ve || ve - v > 13) {
				*why = "Content-Length empty or over 13 digits";
				return -EPROTO;
			}
			for (d = v; d < ve; d++) {
				if (*d < '0' || *d > '9') {
					*why = "Content-Length not a number";
					return -EPROTO;
				}
				n = n * 10 + (uint64_t)(*d - '0');
			}
			if (n > CONTENT_LENGTH_MAX) {
				*why = "Content-Length over 1 TiB";
				return -EPROTO;
			}
			if (have_length && n != r.content_length) {
				*why = "two different Content-Lengths";
				return -EPROTO;
			}
			have_length = true;
			r.content_length = n;
		} else if (name_is(line, nl, "transfer-encoding")) {
			*why = "Transfer-Encoding (chunked) is not supported";
			return -EPROTO;
		} else if (name_is(line, nl, "connection")) {
			if (has_token(v, (size_t)(ve - v), "close"))
				r.close = true;
			if (has_token(v, (size_t)(ve - v), "keep-alive"))
				keep_alive = true;
		}
	}

	*at = 0;
	if (r.status == 101) {
		*why = "101 Switching Protocols";
		return -EPROTO;
	}
	if (r.status < 200 || r.status == 204 || r.status == 304) {
		r.content_length = 0;	/* no body, whatever the header says */
	} else if (!have_length) {
		*why = "no Content-Length (a body up to the close is not supported)";
		return -EPROTO;
	}
	if (minor == 0 && !keep_alive)
		r.close = true;
	*h = r;
	return (int)head;
}

/* ---- the run ------------------------------------------------------------ */

enum err_kind { E_CONNECT, E_READ, E_WRITE, E_CLOSED, E_TIMEOUT, E_PROTOCOL, E_KINDS };
static const char *const err_name[E_KINDS] = { "connect", "read", "write", "closed",
					       "timeout", "protocol" };

enum conn_state { C_DOWN, C_CONNECTING, C_UP };

struct conn {
	int fd;
	enum conn_state state;
	unsigned index;
	/* requests in flight: their start times (sent, or due in rate mode),
	 * oldest first, in a ring of depth entries */
	uint64_t *start;
	unsigned head, inflight;
	/* bytes written to nobody yet (a short write), in out[off, len) */
	char *out;
	size_t off, len;
	/* received bytes of an incomplete head, kept for the next read */
	char *carry;
	size_t carry_len;
	uint64_t body_left;	/* body bytes of the current response still to come */
	unsigned status;	/* of the current response */
	bool in_body, close_after;
	/* rate mode: groups due and not (all) sent, oldest first: group q_group
	 * (q_sent of its requests already sent), then q_group + conns, ... */
	uint64_t q_group, q_groups;
	unsigned q_sent;
	uint64_t last_rx, opened;	/* for --timeout */
	uint64_t retry_at;		/* C_DOWN: when to connect again */
	bool dirty;			/* on the dirty list this turn */
	bool out_armed;			/* EPOLLOUT asked for */
};

struct lg {
	/* what to do */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	bool unix_sock;
	const char *target;
	unsigned conns, depth;
	double duration, rate, timeout;
	size_t max_head;
	/* the requests, round robin: req[i] is reqbuf + req_off[i], req_len[i] bytes */
	char *reqbuf;
	size_t *req_off, *req_len, req_max;
	unsigned nreq, next_req;
	/* state */
	int ep;
	struct conn *c;
	unsigned ndown;			/* connections in C_DOWN */
	uint64_t next_retry;		/* the earliest retry_at among them */
	struct conn **dirty;
	unsigned ndirty;
	char *rbuf;
	bool running;			/* the measured window is open */
	uint64_t t0, deadline;
	double group_ns;		/* rate mode: ns between groups */
	uint64_t next_group;
	bool have_pwait2;
	/* results */
	struct hist lat, lag;
	uint64_t responses, non2xx, bytes;
	uint64_t unanswered;	/* sent, never answered: in flight at a failure or the end */
	uint64_t unsent;	/* rate mode: due before the end, never sent */
	uint64_t errors[E_KINDS];
	unsigned shown[E_KINDS];
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("loadgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* prints up to 48 bytes of p, escaping what is not printable */
static void quote(FILE *f, const char *p, size_t n)
{
	size_t i;

	fputc('"', f);
	for (i = 0; i < n && i < 48; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch == '\r')
			fputs("\\r", f);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\x%02x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
	if (n > 48)
		fputs("...", f);
}

static uint64_t due_of(const struct lg *g, uint64_t group)
{
	return g->t0 + (uint64_t)((double)group * g->group_ns);
}

static void conn_fill(struct lg *g, struct conn *c, uint64_t now);

static void conn_set_events(struct lg *g, struct conn *c, bool want_out)
{
	struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c };

	if (c->out_armed == want_out)
		return;
	if (epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
	c->out_armed = want_out;
}

/* closes c's socket; what was in flight is lost (counted as unanswered);
 * rate mode keeps its due groups, sent after the reconnect with their
 * original due times */
static void conn_close(struct lg *g, struct conn *c, uint64_t now, uint64_t delay)
{
	if (c->fd != -1)
		close(c->fd);	/* also leaves the epoll set */
	c->fd = -1;
	if (g->running)
		g->unanswered += c->inflight;
	c->inflight = c->head = 0;
	c->off = c->len = c->carry_len = 0;
	c->body_left = 0;
	c->in_body = c->close_after = c->out_armed = false;
	c->state = C_DOWN;
	c->retry_at = now + delay;
	if (!g->ndown++ || c->retry_at < g->next_retry)
		g->next_retry = c->retry_at;
}

/* an error on c: counted, shown (the first few of each kind), c closed */
static void conn_fail(struct lg *g, struct conn *c, enum err_kind k, uint64_t now,
		      const char *bytes, size_t nbytes, const char *fmt, ...)
{
	va_list ap;

	g->errors[k]++;
	if (g->shown[k]++ < ERRORS_SHOWN) {
		fprintf(stderr, "loadgen: connection %u: %s error: ", c->index, err_name[k]);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		if (bytes) {
			fputs(": ", stderr);
			quote(stderr, bytes, nbytes);
		}
		if (g->shown[k] == ERRORS_SHOWN)
			fprintf(stderr, " (further %s errors not shown)", err_name[k]);
		fputc('\n', stderr);
	}
	/* opened again after 10 ms, a refused connect after 100 ms: a broken
	 * server is not hammered in a hot loop */
	conn_close(g, c, now, k == E_CONNECT ? NS / 10 : NS / 100);
}

static void conn_open(struct lg *g, struct conn *c, uint64_t now)
{
	struct epoll_event ev = { .data.ptr = c };
	int fd, one = 1;

	fd = socket(g->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		die("socket: %s", strerror(errno));
	if (!g->unix_sock && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		die("setsockopt TCP_NODELAY: %s", strerror(errno));
	g->ndown--;
	c->fd = fd;
	c->opened = c->last_rx = now;
	if (connect(fd, (struct sockaddr *)&g->addr, g->addrlen) == 0) {
		c->state = C_UP;
	} else if (errno == EINPROGRESS) {
		c->state = C_CONNECTING;
	} else if (errno == EAGAIN) {
		/* a Unix socket's listen backlog is full: not an error, try again */
		conn_close(g, c, now, NS / 1000);
		return;
	} else {
		conn_fail(g, c, E_CONNECT, now, NULL, 0, "%s: %s", g->target, strerror(errno));
		return;
	}
	/* EPOLLOUT until connected (and after, only while a write is short) */
	c->out_armed = c->state == C_CONNECTING;
	ev.events = EPOLLIN | (c->out_armed ? EPOLLOUT : 0);
	if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
	conn_fill(g, c, now);
}

/* writes what c has pending; false if c failed */
static bool conn_write(struct lg *g, struct conn *c, uint64_t now)
{
	while (c->off < c->len) {
		ssize_t n = send(c->fd, c->out + c->off, c->len - c->off, MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_fail(g, c, E_WRITE, now, NULL, 0, "%s", strerror(errno));
			return false;
		}
		c->off += (size_t)n;
	}
	if (c->off == c->len)
		c->off = c->len = 0;
	conn_set_events(g, c, c->len != 0);
	return true;
}

/* queues requests on c up to its depth (closed loop: as many as fit; rate
 * mode: the due ones) and writes them */
static void conn_fill(struct lg *g, struct conn *c, uint64_t now)
{
	unsigned n = 0;

	if (c->state != C_UP || !g->running || c->close_after)
		return;
	if (c->off) {	/* make room at the end of out */
		memmove(c->out, c->out + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	while (c->inflight < g->depth) {
		uint64_t start = now;
		unsigned r;

		if (g->rate > 0) {
			if (!c->q_groups)
				break;
			start = due_of(g, c->q_group);
			if (++c->q_sent == g->depth) {
				c->q_sent = 0;
				c->q_group += g->conns;
				c->q_groups--;
			}
		}
		r = g->next_req;
		g->next_req = r + 1 == g->nreq ? 0 : r + 1;
		memcpy(c->out + c->len, g->reqbuf + g->req_off[r], g->req_len[r]);
		c->len += g->req_len[r];
		c->start[(c->head + c->inflight) % g->depth] = start;
		c->inflight++;
		n++;
	}
	if (n)
		conn_write(g, c, now);
}

static void mark_dirty(struct lg *g, struct conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		g->dirty[g->ndirty++] = c;
	}
}

/* one response of c is complete */
static void conn_answered(struct lg *g, struct conn *c, unsigned status, uint64_t now)
{
	uint64_t start = c->start[c->head];

	c->head = c->head + 1 == g->depth ? 0 : c->head + 1;
	c->inflight--;
	if (!g->running)
		return;
	g->responses++;
	if (status < 200 || status > 299)
		g->non2xx++;
	hist_add(&g->lat, now > start ? now - start : 0);
}

/* reads what c has; completes responses; refills */
static void conn_read(struct lg *g, struct conn *c)
{
	char *buf = g->rbuf, *p, *end;
	uint64_t now;
	ssize_t n;

	if (c->carry_len)
		memcpy(buf, c->carry, c->carry_len);
	do
		n = recv(c->fd, buf + c->carry_len, RBUF_SIZE, 0);
	while (n == -1 && errno == EINTR);
	now = now_ns();
	if (n == -1) {
		if (errno != EAGAIN)
			conn_fail(g, c, E_READ, now, NULL, 0, "%s", strerror(errno));
		return;
	}
	if (n == 0) {
		if (c->inflight || c->carry_len || c->in_body)
			conn_fail(g, c, E_CLOSED, now, NULL, 0,
				  "the server closed the connection with %u requests unanswered",
				  c->inflight);
		else
			conn_fail(g, c, E_CLOSED, now, NULL, 0,
				  "the server closed an idle connection");
		return;
	}
	if (g->running)
		g->bytes += (uint64_t)n;
	c->last_rx = now;
	p = buf;
	end = buf + c->carry_len + n;
	c->carry_len = 0;
	while (p < end) {
		struct resp_head h;
		const char *why = "";
		size_t at = 0;
		int r;

		if (c->in_body) {
			size_t take = (size_t)(end - p) < c->body_left ? (size_t)(end - p)
								       : (size_t)c->body_left;

			p += take;
			c->body_left -= take;
			if (c->body_left)
				break;
			c->in_body = false;
			conn_answered(g, c, c->status, now);
			if (c->close_after)
				break;
			continue;
		}
		r = resp_parse(p, (size_t)(end - p), g->max_head, &h, &why, &at);
		if (r == -EAGAIN) {
			if (!c->carry && !(c->carry = malloc(g->max_head)))
				die("out of memory");
			c->carry_len = (size_t)(end - p);
			memcpy(c->carry, p, c->carry_len);
			break;
		}
		if (r < 0) {
			conn_fail(g, c, E_PROTOCOL, now, p + at, (size_t)(end - p) - at, "%s", why);
			return;
		}
		if (h.status < 200) {	/* an interim response: the final one follows */
			p += r;
			continue;
		}
		if (!c->inflight) {
			conn_fail(g, c, E_PROTOCOL, now, p, (size_t)(end - p),
				  "a response nobody asked for");
			return;
		}
		p += r;
		c->close_after = h.close;
		c->status = h.status;
		if (h.content_length) {	/* timed at the body's last byte */
			c->in_body = true;
			c->body_left = h.content_length;
			continue;
		}
		conn_answered(g, c, c->status, now);
		if (c->close_after)
			break;
	}
	if (c->close_after && !c->in_body) {
		/* the server said it closes: take the connection down ourselves
		 * (requests still in flight are lost) and open a new one */
		if (c->inflight && g->running) {
			g->errors[E_CLOSED]++;
			if (g->shown[E_CLOSED]++ < ERRORS_SHOWN)
				fprintf(stderr, "loadgen: connection %u: closed error: the server "
					"answered Connection: close with %u requests in flight\n",
					c->index, c->inflight);
		}
		conn_close(g, c, now, 0);
		return;
	}
	conn_fill(g, c, now);
}

/* a connect finished (EPOLLOUT on a C_CONNECTING socket) */
static void conn_connected(struct lg *g, struct conn *c, uint64_t now)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err) {
		conn_fail(g, c, E_CONNECT, now, NULL, 0, "%s: %s", g->target, strerror(err));
		return;
	}
	c->state = C_UP;
	c->last_rx = now;
	conn_set_events(g, c, false);
	conn_fill(g, c, now);
}

static void on_event(struct lg *g, struct conn *c, uint32_t ev)
{
	uint64_t now;

	if (c->state == C_CONNECTING) {
		if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			conn_connected(g, c, now_ns());
		return;
	}
	if (c->state != C_UP)
		return;
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		conn_read(g, c);
		if (c->state != C_UP)
			return;
	}
	if (ev & EPOLLOUT) {
		now = now_ns();
		conn_write(g, c, now);	/* disarms EPOLLOUT once nothing is left */
	}
}

/* rate mode: hands the groups due by now to their connections, sends */
static void sched_run(struct lg *g, uint64_t now)
{
	uint64_t due = due_of(g, g->next_group);
	unsigned i;

	if (due > now)
		return;
	hist_add(&g->lag, now - due);	/* how late this loop woke for its schedule */
	do {
		struct conn *c = &g->c[g->next_group % g->conns];

		if (!c->q_groups) {
			c->q_group = g->next_group;
			c->q_sent = 0;
		}
		c->q_groups++;
		mark_dirty(g, c);
		g->next_group++;
	} while (due_of(g, g->next_group) <= now);
	for (i = 0; i < g->ndirty; i++) {
		g->dirty[i]->dirty = false;
		conn_fill(g, g->dirty[i], now);
	}
	g->ndirty = 0;
}

/* opens again the connections whose retry time has come */
static void reopen(struct lg *g, uint64_t now)
{
	unsigned i;

	g->next_retry = UINT64_MAX;
	for (i = 0; i < g->conns && g->ndown; i++) {
		struct conn *c = &g->c[i];

		if (c->state != C_DOWN)
			continue;
		if (now >= c->retry_at)
			conn_open(g, c, now);	/* may fail and go down again */
		if (c->state == C_DOWN && c->retry_at < g->next_retry)
			g->next_retry = c->retry_at;
	}
}

/* connections with no answer (or no connect) for --timeout */
static void sweep(struct lg *g, uint64_t now)
{
	uint64_t limit = (uint64_t)(g->timeout * 1e9);
	unsigned i;

	for (i = 0; i < g->conns; i++) {
		struct conn *c = &g->c[i];

		if (c->state == C_CONNECTING) {
			if (now - c->opened > limit)
				conn_fail(g, c, E_TIMEOUT, now, NULL, 0,
					  "connect took more than %g s", g->timeout);
		} else if ((c->inflight || c->len) && now - c->last_rx > limit &&
			   now - c->start[c->head] > limit) {
			conn_fail(g, c, E_TIMEOUT, now, NULL, 0,
				  "no response for %g s with %u requests in flight", g->timeout,
				  c->inflight);
		}
	}
}

/* waits for events until `until` (ns, absolute) at the latest */
static int wait_events(struct lg *g, struct epoll_event *ev, uint64_t until)
{
	uint64_t now = now_ns(), left = until > now ? until - now : 0;

#ifdef HAVE_EPOLL_PWAIT2
	if (g->have_pwait2) {
		struct timespec ts = { .tv_sec = (time_t)(left / NS), .tv_nsec = (long)(left % NS) };
		int n = epoll_pwait2(g->ep, ev, EVENTS_MAX, &ts, NULL);
		if (n != -1 || errno != ENOSYS)
			return n;
		g->have_pwait2 = false;
	}
#endif
	/* milliseconds, rounded down: the loop spins through the last one
	 * rather than wake late (only without epoll_pwait2, Linux < 5.11) */
	return epoll_wait(g->ep, ev, EVENTS_MAX, (int)(left / 1000000));
}

static void run(struct lg *g)
{
	struct epoll_event ev[EVENTS_MAX];
	uint64_t now, next_sweep, connect_by;
	unsigned i, up;
	int n;

	/* connect every connection before the clock starts */
	now = now_ns();
	connect_by = now + (uint64_t)(g->timeout * 1e9);
	for (i = 0; i < g->conns; i++)
		conn_open(g, &g->c[i], now);
	for (;;) {
		for (up = 0, i = 0; i < g->conns; i++)
			up += g->c[i].state == C_UP;
		if (up == g->conns)
			break;
		if (g->errors[E_CONNECT] || g->errors[E_TIMEOUT] || stop_flag)
			die("could not open %u connections to %s (%u up)%s", g->conns, g->target, up,
			    stop_flag ? ": interrupted" : "");
		now = now_ns();
		if (now > connect_by)
			die("%u of %u connections to %s still not up after %g s", g->conns - up,
			    g->conns, g->target, g->timeout);
		n = wait_events(g, ev, now + NS / 1000);	/* a backlog retry */
		if (n == -1 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < (unsigned)(n > 0 ? n : 0); i++)
			on_event(g, ev[i].data.ptr, ev[i].events);
		now = now_ns();
		sweep(g, now);
		if (g->ndown && now >= g->next_retry)
			reopen(g, now);	/* what met a full backlog */
	}

	g->running = true;
	g->t0 = now = now_ns();
	g->deadline = g->t0 + (uint64_t)(g->duration * 1e9);
	next_sweep = now + NS / 10;
	if (g->rate == 0) {
		for (i = 0; i < g->conns; i++)
			conn_fill(g, &g->c[i], now);
	}
	while (!stop_flag) {
		uint64_t until;

		now = now_ns();
		if (now >= g->deadline)
			break;
		if (g->rate > 0)
			sched_run(g, now);
		if (now >= next_sweep) {
			sweep(g, now);
			next_sweep = now + NS / 10;
		}
		if (g->ndown && now >= g->next_retry)
			reopen(g, now);
		until = g->deadline < next_sweep ? g->deadline : next_sweep;
		if (g->ndown && g->next_retry < until)
			until = g->next_retry;
		if (g->rate > 0 && due_of(g, g->next_group) < until)
			until = due_of(g, g->next_group);
		n = wait_events(g, ev, until);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (i = 0; i < (unsigned)n; i++)
			on_event(g, ev[i].data.ptr, ev[i].events);
	}
	now = now_ns();
	if (now > g->deadline && !stop_flag)
		now = g->deadline;	/* the window, not the last wake-up */
	g->running = false;
	for (i = 0; i < g->conns; i++) {
		struct conn *c = &g->c[i];

		g->unanswered += c->inflight;
		if (g->rate > 0 && c->q_groups)
			g->unsent += c->q_groups * g->depth - c->q_sent;
	}
	if (g->rate > 0) {	/* due by the end and never handed to a connection */
		uint64_t due_by_end = (uint64_t)floor((double)(now - g->t0) / g->group_ns) + 1;

		if (due_by_end > g->next_group)
			g->unsent += (due_by_end - g->next_group) * g->depth;
	}
	g->deadline = now;	/* the end of the window, for report() */
}

static void report(const struct lg *g)
{
	double secs = (double)(g->deadline - g->t0) / 1e9;
	uint64_t errors = 0;
	unsigned k;

	for (k = 0; k < E_KINDS; k++)
		errors += g->errors[k];

#define US(ns) ((double)(ns) / 1000.0)
	printf("loadgen: %s, %u connections, depth %u, ", g->target, g->conns, g->depth);
	if (g->rate > 0)
		printf("rate %.0f/s", g->rate);
	else
		printf("closed loop");
	printf(", %.2f s: %.0f req/s (%llu responses, %llu non-2xx, %llu errors, %llu unanswered",
	       secs, (double)g->responses / secs, (unsigned long long)g->responses,
	       (unsigned long long)g->non2xx, (unsigned long long)errors,
	       (unsigned long long)g->unanswered);
	if (g->rate > 0)
		printf(", %llu due and unsent", (unsigned long long)g->unsent);
	printf("); latency us p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f\n",
	       US(hist_pct(&g->lat, 50)),
	       US(hist_pct(&g->lat, 90)), US(hist_pct(&g->lat, 99)), US(hist_pct(&g->lat, 99.9)),
	       US(g->lat.max));
	if (errors) {
		printf("loadgen: errors:");
		for (k = 0; k < E_KINDS; k++)
			printf(" %s %llu%s", err_name[k], (unsigned long long)g->errors[k],
			       k + 1 < E_KINDS ? "," : "\n");
	}
	if (g->rate > 0) {
		printf("loadgen: schedule: woke p50 %.1f p99 %.1f max %.1f us after a due time\n",
		       US(hist_pct(&g->lag, 50)), US(hist_pct(&g->lag, 99)), US(g->lag.max));
		if ((double)g->responses < 0.95 * g->rate * secs)
			printf("loadgen: warning: achieved %.0f req/s, under 95%% of --rate %.0f: "
			       "the latencies measure the queue that built\n",
			       (double)g->responses / secs, g->rate);
	}
	printf("summary: requests=%llu duration_us=%.0f bytes=%llu non2xx=%llu errors=%llu "
	       "samples=%llu p50=%.1f p90=%.1f p99=%.1f p99.9=%.1f max=%.1f rate=%.0f "
	       "connections=%u depth=%u unanswered=%llu unsent=%llu sched_lag_p99=%.1f "
	       "transport=%s\n",
	       (unsigned long long)g->responses, secs * 1e6, (unsigned long long)g->bytes,
	       (unsigned long long)g->non2xx, (unsigned long long)errors,
	       (unsigned long long)g->lat.count, US(hist_pct(&g->lat, 50)),
	       US(hist_pct(&g->lat, 90)), US(hist_pct(&g->lat, 99)), US(hist_pct(&g->lat, 99.9)),
	       US(g->lat.max), g->rate, g->conns, g->depth, (unsigned long long)g->unanswered,
	       (unsigned long long)g->unsent, US(hist_pct(&g->lag, 99)), g->unix_sock ? "unix" : "tcp");
#undef US
}

/* ---- the command line ---------------------------------------------------
 *
 * One table: getopt_long's options and --help come from it.
 */
#define OPTIONS(X)                                                                              \
	X("connect", 'a', "ADDR", "HOST:PORT, [V6]:PORT or unix:PATH (required)")              \
	X("connections", 'c', "N", "connections, 1-10000 [64]")                                \
	X("depth", 'd', "N", "requests in flight per connection (pipelining), 1-1024 [1]")     \
	X("duration", 's', "SECS", "length of the measured run, up to 3600 [10]")              \
	X("path", 'p', "PATH", "GET this path; repeat for several (up to 64), round robin "    \
			       "[/cache/bench]")                                                \
	X("keys", 'k', "N", "each PATH becomes PATH0 .. PATH<N-1> (paths x N at most 65536)")  \
	X("header", 'H', "'NAME: VALUE'", "add a request header; up to 16, 1024 bytes each")   \
	X("rate", 'R', "N", "constant rate, requests/s over all connections, in groups of "    \
			    "DEPTH; latency from each request's due time [closed loop]")        \
	X("timeout", 't', "SECS", "a connection with no answer this long is an error [5]")     \
	X("max-head", 'm', "BYTES", "largest response head accepted, 256-65536 [8192]")        \
	X("help", 'h', NULL, "this text")

#define X_LONG(name, ch, arg, help) { name, arg ? required_argument : no_argument, NULL, ch },
static const struct option long_opts[] = { OPTIONS(X_LONG){ NULL, 0, NULL, 0 } };
#undef X_LONG

static void usage(FILE *f)
{
	char opt[64];

#define X_HELP(name, ch, arg, help)                                                    \
	snprintf(opt, sizeof(opt), "--%s%s%s", name, arg ? " " : "", arg ? arg : "");          \
	fprintf(f, "  -%c, %-28s %s\n", ch, opt, help);
	fputs("usage: loadgen --connect ADDR [options]\n"
	      "HTTP/1.1 GET load over TCP or a Unix socket; prints a summary: line (perf/loadgen.c)\n",
	      f);
	OPTIONS(X_HELP)
#undef X_HELP
	fputs("Responses must carry Content-Length (chunked is refused); heads are bounded by\n"
	      "--max-head, bodies are skipped.  Exit: 0 clean, 2 the run had errors, 1 it could not run.\n",
	      f);
}

static unsigned long parse_uint(const char *opt, const char *s, unsigned long lo, unsigned long hi)
{
	char *e;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &e, 10);
	if (errno || e == s || *e || *s == '-' || *s == '+' || v < lo || v > hi)
		die("--%s %s: give a whole number from %lu to %lu", opt, s, lo, hi);
	return v;
}

static double parse_pos(const char *opt, const char *s, double hi)
{
	char *e;
	double v;

	errno = 0;
	v = strtod(s, &e);
	if (errno || e == s || *e || !(v > 0) || v > hi)
		die("--%s %s: give a number above 0, at most %g", opt, s, hi);
	return v;
}

/* the target: sets addr, addrlen, unix_sock; returns the Host header value */
static const char *parse_target(struct lg *g, const char *s)
{
	if (!strncmp(s, "unix:", 5)) {
		struct sockaddr_un *un = (struct sockaddr_un *)&g->addr;
		size_t len = strlen(s + 5);

		if (!len || len >= sizeof(un->sun_path))
			die("--connect %s: a Unix socket path is 1 to %zu bytes", s,
			    sizeof(un->sun_path) - 1);
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, s + 5, len + 1);
		g->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
		g->unix_sock = true;
		return "localhost";
	} else {
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					  .ai_flags = AI_NUMERICSERV }, *ai;
		char host[256];
		const char *colon = strrchr(s, ':'), *h = s;
		size_t hl;
		int r;

		if (!colon || colon == s || !colon[1])
			die("--connect %s: give HOST:PORT, [V6]:PORT or unix:PATH", s);
		hl = (size_t)(colon - s);
		if (*s == '[') {
			if (colon[-1] != ']')
				die("--connect %s: an IPv6 address goes in brackets: [::1]:8080", s);
			h = s + 1;
			hl -= 2;
		}
		if (hl == 0 || hl >= sizeof(host))
			die("--connect %s: bad host", s);
		memcpy(host, h, hl);
		host[hl] = 0;
		parse_uint("connect port", colon + 1, 1, 65535);
		r = getaddrinfo(host, colon + 1, &hints, &ai);
		if (r)
			die("--connect %s: %s", s, gai_strerror(r));
		memcpy(&g->addr, ai->ai_addr, ai->ai_addrlen);
		g->addrlen = ai->ai_addrlen;
		freeaddrinfo(ai);
		return s;
	}
}

static void check_path(const char *p)
{
	size_t i, n = strlen(p);

	if (p[0] != '/' || n > PATH_LEN_MAX)
		die("--path %s: starts with / and is at most %d bytes", p, PATH_LEN_MAX);
	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			die("--path: byte %zu is a space, control or non-ASCII byte (percent-encode it)",
			    i);
}

static void check_header(const char *h)
{
	size_t i, n = strlen(h);
	const char *colon = strchr(h, ':');

	if (!colon || colon == h || n > HEADER_LEN_MAX)
		die("--header '%s': give 'Name: value', at most %d bytes", h, HEADER_LEN_MAX);
	for (i = 0; h + i < colon; i++)
		if (!(byte_class[(unsigned char)h[i]] & C_TCHAR))
			die("--header '%s': the name has a byte a header name cannot have", h);
	for (i = (size_t)(colon - h) + 1; i < n; i++)
		if (!(byte_class[(unsigned char)h[i]] & C_VALUE))
			die("--header: the value has a control character (CR, LF, ...)");
}

/* builds every request once: reqbuf, req_off, req_len, req_max */
static void build_requests(struct lg *g, const char *host, char **paths, unsigned npaths,
			   unsigned keys, char **headers, unsigned nheaders)
{
	size_t extra = 0, cap = 0, at = 0;
	unsigned i, k, per = keys ? keys : 1;

	for (i = 0; i < nheaders; i++)
		extra += strlen(headers[i]) + 2;
	if ((unsigned long)npaths * per > REQUESTS_MAX)
		die("--path x --keys is %lu requests; at most %d", (unsigned long)npaths * per,
		    REQUESTS_MAX);
	g->nreq = npaths * per;
	for (i = 0; i < npaths; i++)
		cap += (strlen(paths[i]) + 48 + strlen(host) + extra) * per;
	g->reqbuf = malloc(cap);
	g->req_off = calloc(g->nreq, sizeof(*g->req_off));
	g->req_len = calloc(g->nreq, sizeof(*g->req_len));
	if (!g->reqbuf || !g->req_off || !g->req_len)
		die("out of memory");
	for (i = 0; i < npaths; i++) {
		for (k = 0; k < per; k++) {
			unsigned r = i * per + k;
			char key[16] = "";
			unsigned h;
			int n;

			if (keys)
				snprintf(key, sizeof(key), "%u", k);
			n = snprintf(g->reqbuf + at, cap - at, "GET %s%s HTTP/1.1\r\nHost: %s\r\n",
				     paths[i], key, host);
			g->req_off[r] = at;
			at += (size_t)n;
			for (h = 0; h < nheaders; h++)
				at += (size_t)snprintf(g->reqbuf + at, cap - at, "%s\r\n", headers[h]);
			at += (size_t)snprintf(g->reqbuf + at, cap - at, "\r\n");
			g->req_len[r] = at - g->req_off[r];
			if (g->req_len[r] > g->req_max)
				g->req_max = g->req_len[r];
		}
	}
}

int main(int argc, char **argv)
{
	static struct lg lg;	/* static: the histograms are 70 KB */
	struct lg *g = &lg;
	char *paths[PATHS_MAX], *headers[HEADERS_MAX], shorts[64] = "";
	unsigned npaths = 0, nheaders = 0, keys = 0, i;
	const char *target = NULL, *host;
	struct sigaction sa = { .sa_handler = on_signal };
	struct rlimit rl;
	uint64_t errors = 0;
	int ch;

	resp_setup();
	for (i = 0; long_opts[i].name; i++) {
		size_t l = strlen(shorts);

		shorts[l] = (char)long_opts[i].val;
		shorts[l + 1] = long_opts[i].has_arg ? ':' : 0;
		shorts[l + 2] = 0;
	}
	g->conns = 64;
	g->depth = 1;
	g->duration = 10;
	g->timeout = 5;
	g->max_head = HEAD_MAX_DEFAULT;
	while ((ch = getopt_long(argc, argv, shorts, long_opts, NULL)) != -1) {
		switch (ch) {
		case 'a': target = optarg; break;
		case 'c': g->conns = (unsigned)parse_uint("connections", optarg, 1, CONNS_MAX); break;
		case 'd': g->depth = (unsigned)parse_uint("depth", optarg, 1, DEPTH_MAX); break;
		case 's': g->duration = parse_pos("duration", optarg, DURATION_MAX); break;
		case 'p':
			if (npaths == PATHS_MAX)
				die("--path: at most %d", PATHS_MAX);
			check_path(optarg);
			paths[npaths++] = optarg;
			break;
		case 'k': keys = (unsigned)parse_uint("keys", optarg, 1, REQUESTS_MAX); break;
		case 'H':
			if (nheaders == HEADERS_MAX)
				die("--header: at most %d", HEADERS_MAX);
			check_header(optarg);
			headers[nheaders++] = optarg;
			break;
		case 'R': g->rate = parse_pos("rate", optarg, RATE_MAX); break;
		case 't': g->timeout = parse_pos("timeout", optarg, DURATION_MAX); break;
		case 'm':
			g->max_head = parse_uint("max-head", optarg, HEAD_MAX_MIN, HEAD_MAX_MAX);
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind < argc)
		die("unexpected argument %s (see --help)", argv[optind]);
	if (!target)
		die("--connect ADDR is required (see --help)");
	if (!npaths)
		paths[npaths++] = "/cache/bench";
	g->target = target;
	host = parse_target(g, target);
	build_requests(g, host, paths, npaths, keys, headers, nheaders);

	/* every connection is a descriptor: ask for what we need up to the hard limit */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < g->conns + 16) {
		rl.rlim_cur = rl.rlim_max < g->conns + 16 ? rl.rlim_max : g->conns + 16;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < g->conns + 16)
			die("%u connections need %u descriptors; the limit is %llu (ulimit -n)",
			    g->conns, g->conns + 16, (unsigned long long)rl.rlim_cur);
	}
	g->c = calloc(g->conns, sizeof(*g->c));
	g->dirty = calloc(g->conns, sizeof(*g->dirty));
	g->rbuf = malloc(RBUF_SIZE + g->max_head);
	if (!g->c || !g->dirty || !g->rbuf)
		die("out of memory");
	for (i = 0; i < g->conns; i++) {
		struct conn *c = &g->c[i];

		c->fd = -1;
		c->index = i;
		c->start = calloc(g->depth, sizeof(*c->start));
		c->out = malloc((size_t)g->depth * g->req_max);
		if (!c->start || !c->out)
			die("out of memory");
	}
	g->ndown = g->conns;
	if (g->rate > 0)
		g->group_ns = (double)g->depth * 1e9 / g->rate;
	g->ep = epoll_create1(EPOLL_CLOEXEC);
	if (g->ep == -1)
		die("epoll_create1: %s", strerror(errno));
#ifdef HAVE_EPOLL_PWAIT2
	g->have_pwait2 = true;
#endif
	/* wake-ups on time, not up to 50 us late (the default timer slack) */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	run(g);
	report(g);
	for (i = 0; i < E_KINDS; i++)
		errors += g->errors[i];
	return errors ? 2 : 0;
}
