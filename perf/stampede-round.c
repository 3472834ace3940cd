/*
 * stampede-round.c - one round of cache-aside clients at once, in C, for
 * perf/bench-stampede.py (issue 9, docs/cache-aside.md): the Python
 * driver's own cost of sending 75 requests and parsing 75 answers (2-3 ms
 * on the development VM) hid what the server does.
 *
 * N keep-alive connections (round-robin over the given ports) are opened
 * first; then every client sends its GET at once (with X-Cache-Fill: lease
 * when -l), and one epoll loop runs each client's loop: a 200 ends it; any
 * other status is a miss: the origin "fetch" is a timer of -f microseconds
 * (counted as an execution), then a PUT of the value (with the
 * X-Cache-Lease token if one came, and the -q query), whose answer ends it.
 * Each client's latency runs from its GET's send to the value in hand.
 *
 * Output, one line per client: "<latency_us> <fetched 0|1>", then
 * "executions <n>".  Exit 0, or 1 with a message (a connection failed or
 * closed, an answer that does not parse, the round took over 30 s).
 *
 * usage: stampede-round -n N -k KEY [-l] [-f FETCH_US] [-q QUERY] PORT...
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS_MAX 10000
#define ANSWER_MAX 8192         /* a head and a small value: ours are 200 B */
#define VALUE_LEN 200

enum state { GET_OUT, FETCHING, PUT_OUT, DONE };

struct client {
	int fd;
	enum state st;
	uint64_t t0, due, done;
	bool fetched;
	char token[80];
	char in[ANSWER_MAX];
	size_t in_len;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "stampede-round: %s\n", what);
	exit(1);
}

static int connect_port(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("connect failed");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("send failed");
		p += w;
		n -= (size_t)w;
	}
}

/* The value of header `name` (lowercase) in head[0..len), or NULL. */
static const char *header(const char *head, size_t len, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = memchr(head, '\n', len), *end = head + len;

	while (p && p + 1 < end) {
		const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			break;
		if ((size_t)(eol - line) > nl && line[nl] == ':' && !strncasecmp(line, name, nl)) {
			const char *v = line + nl + 1;
			while (v < eol && *v == ' ')
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

/* One whole answer at the front of c->in: its status (and its token), the
 * bytes consumed; 0 when incomplete. */
static size_t answer(struct client *c, int *status)
{
	char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
	size_t head, vlen, body = 0;
	const char *v;

	if (!end)
		return 0;
	head = (size_t)(end - c->in) + 4;
	if (c->in_len < 12 || memcmp(c->in, "HTTP/1.1 ", 9) != 0)
		die("an answer that is not HTTP/1.1");
	*status = atoi(c->in + 9);
	if ((v = header(c->in, head, "content-length", &vlen)) != NULL)
		body = strtoul(v, NULL, 10);
	if (body > ANSWER_MAX)
		die("an answer larger than expected");
	if (c->in_len < head + body)
		return 0;
	c->token[0] = 0;
	if ((v = header(c->in, head, "x-cache-lease", &vlen)) != NULL && vlen < sizeof(c->token)) {
		memcpy(c->token, v, vlen);
		c->token[vlen] = 0;
	}
	return head + body;
}

/* The answers epoll reported: each client's loop moves on. */
static void handle(struct client *cl, const struct epoll_event *evs, int k, uint64_t fetch_ns,
		   unsigned *execs, unsigned *left)
{
	for (int e = 0; e < k; e++) {
		struct client *c = &cl[evs[e].data.u32];
		ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
		if (r <= 0)
			die("a connection closed");
		c->in_len += (size_t)r;
		int status;
		size_t used = answer(c, &status);
		if (!used)
			continue;
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		if (c->st == GET_OUT && status != 200) {
			(*execs)++;
			c->fetched = true;
			c->st = FETCHING;
			c->due = now_ns() + fetch_ns;
			continue;
		}
		if (c->st == PUT_OUT && (status < 200 || status > 299) && status != 409)
			die("the PUT was not stored");
		c->done = now_ns();
		c->st = DONE;
		(*left)--;
	}
}

int main(int argc, char **argv)
{
	unsigned n = 0, nports = 0;
	const char *key = NULL, *query = "";
	bool lease = false;
	uint64_t fetch_ns = 5000000;
	int ports[64], opt;

	while ((opt = getopt(argc, argv, "n:k:lf:q:")) != -1) {
		switch (opt) {
		case 'n': n = (unsigned)atoi(optarg); break;
		case 'k': key = optarg; break;
		case 'l': lease = true; break;
		case 'f': fetch_ns = strtoull(optarg, NULL, 10) * 1000u; break;
		case 'q': query = optarg; break;
		default: die("usage: stampede-round -n N -k KEY [-l] [-f FETCH_US] [-q QUERY] PORT...");
		}
	}
	for (; optind < argc && nports < 64; optind++)
		ports[nports++] = atoi(argv[optind]);
	if (!n || n > CLIENTS_MAX || !key || strlen(key) > 512 || strlen(query) > 512 || !nports)
		die("usage: stampede-round -n N(1..10000) -k KEY [-l] [-f FETCH_US] [-q QUERY] PORT...");

	struct client *cl = calloc(n, sizeof(*cl));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	char get[1200], put[2048 + VALUE_LEN], value[VALUE_LEN];
	int getn = snprintf(get, sizeof(get), "GET /cache/%s HTTP/1.1\r\nHost: bench\r\n%s\r\n", key,
			    lease ? "X-Cache-Fill: lease\r\n" : "");

	if (!cl || ep < 0)
		die("out of memory");
	memset(value, 'v', sizeof(value));
	for (unsigned i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
		cl[i].fd = connect_port(ports[i % nports]);
		if (epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &ev) != 0)
			die("epoll_ctl failed");
	}
	unsigned left = n, execs = 0;
	struct epoll_event evs[256];
	/* the clients are independent: what arrives while the others are still
	 * being sent is handled at once (one send to loopback costs ~15 us
	 * here, so the last GET goes out ~1 ms after the first) */
	for (unsigned i = 0; i < n; i++) {
		cl[i].t0 = now_ns();
		send_all(cl[i].fd, get, (size_t)getn);
		int k = epoll_wait(ep, evs, 256, 0);
		if (k > 0)
			handle(cl, evs, k, fetch_ns, &execs, &left);
	}

	uint64_t give_up = now_ns() + 30000000000ull;
	while (left) {
		uint64_t now = now_ns(), next = UINT64_MAX;
		if (now > give_up)
			die("the round took over 30 s");
		for (unsigned i = 0; i < n; i++) {
			if (cl[i].st != FETCHING)
				continue;
			if (cl[i].due <= now) {
				int pn = snprintf(put, sizeof(put) - VALUE_LEN,
						  "PUT /cache/%s%s HTTP/1.1\r\nHost: bench\r\n"
						  "Content-Length: %d\r\n%s%s%s\r\n",
						  key, query, VALUE_LEN, cl[i].token[0] ? "X-Cache-Lease: " : "",
						  cl[i].token, cl[i].token[0] ? "\r\n" : "");
				memcpy(put + pn, value, sizeof(value));        /* one write */
				send_all(cl[i].fd, put, (size_t)pn + sizeof(value));
				cl[i].st = PUT_OUT;
			} else if (cl[i].due < next) {
				next = cl[i].due;
			}
		}
		/* sleep to the next fetch's end with nanosecond resolution */
		struct timespec ts = { 0, 0 };
		uint64_t wait = next == UINT64_MAX ? 100000000u : next - now;
		ts.tv_sec = (time_t)(wait / 1000000000u);
		ts.tv_nsec = (long)(wait % 1000000000u);
		int k = epoll_pwait2(ep, evs, 256, &ts, NULL);
		if (k < 0 && errno != EINTR)
			die("epoll failed");
		handle(cl, evs, k, fetch_ns, &execs, &left);
	}
	for (unsigned i = 0; i < n; i++) {
		printf("%.1f %d\n", (double)(cl[i].done - cl[i].t0) / 1000.0, cl[i].fetched);
		close(cl[i].fd);
	}
	printf("executions %u\n", execs);
	free(cl);
	return 0;
}
