/*
 * test_coherence.c - the coherence module against a real redis-server on a
 * free loopback port.  Test threads play the shards: they submit requests,
 * park on an eventfd the module's wake callback rings (the same Dekker
 * protocol the daemon's shards use), and poll replies.  A separate hiredis
 * connection looks at Redis directly to check what the module wrote.
 *
 * Covered: the formats (URL, value frame, invalidation frame, JSON check),
 * write-through, GET hit/miss/raw/bad data, coalescing counted with INFO
 * commandstats, NOCACHE on a read overtaken by a write, backlog when a
 * shard's ring is full, invalidations between two instances and from a bare
 * PUBLISH, own messages ignored, the registry and reaping, GET /cluster,
 * SIGSTOP (timeouts, breaker, fail fast, FLUSH, replay) and kill + restart.
 * Nothing asserts on time; every wait is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cache/repr.h"
#include "check.h"
#include "coherence/conn.h"
#include "coherence/format.h"
#include "coherence/msg.h"
#include "coherence/state.h"
#include "coherence/url.h"
#include "ringcache/clock.h"
#include "ringcache/coherence.h"
#include "ringcache/hash.h"

#define NSHARDS 2

/* L1 keeps at most REPR_TYPE_MAX bytes of Content-Type: a longer type in Redis
 * could never be served, so the format's limit is the same number. */
_Static_assert(COH_CTYPE_MAX == REPR_TYPE_MAX, "L2 content types fit L1's");
#define WAIT_MS 10000

/* --- redis-server --- */

static pid_t redis_pid = -1;
static int redis_port;

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd != -1 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd != -1)
		close(fd);
	return port;
}

static void redis_kill(void)
{
	if (redis_pid > 0) {
		kill(redis_pid, SIGCONT);
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
	}
	redis_pid = -1;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static redisContext *redis_connect(void)
{
	struct timeval tv = { 1, 0 };
	redisContext *rc = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
	if (rc && rc->err) {
		redisFree(rc);
		return NULL;
	}
	if (rc)
		redisSetTimeout(rc, tv);
	return rc;
}

/* Starts redis-server on redis_port and waits (at most 10 s) until it answers PING. */
static int redis_start(void)
{
	char port[16];

	snprintf(port, sizeof(port), "%d", redis_port);
	redis_pid = fork();
	if (redis_pid == -1)
		return -1;
	if (redis_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive the test */
		int null = open("/dev/null", 1);
		if (null != -1) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid) {
			redis_pid = -1;
			return -1;
		}
		redisContext *rc = redis_connect();
		if (rc) {
			redisReply *r = redisCommand(rc, "PING");
			bool ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
			if (r)
				freeReplyObject(r);
			redisFree(rc);
			if (ok)
				return 0;
		}
		sleep_ms(50);
	}
	return -1;
}

static redisContext *direct;

static redisReply *cmd(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(direct, fmt, ap);
	va_end(ap);
	return r;
}

static long long cmd_int(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(direct, fmt, ap);
	va_end(ap);
	long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
	if (r)
		freeReplyObject(r);
	return v;
}

static void cmd_ok(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(direct, fmt, ap);
	va_end(ap);
	CHECK(r && r->type != REDIS_REPLY_ERROR);
	if (r)
		freeReplyObject(r);
}

static void direct_reconnect(void)
{
	if (direct)
		redisFree(direct);
	direct = redis_connect();
}

/* Calls of a command since the last CONFIG RESETSTAT (INFO commandstats). */
static long long calls_of(const char *command)
{
	redisReply *r = cmd("INFO commandstats");
	char name[64];
	long long calls = 0;

	snprintf(name, sizeof(name), "cmdstat_%s:calls=", command);
	if (r && r->type == REDIS_REPLY_STRING) {
		const char *p = strstr(r->str, name);
		if (p)
			calls = atoll(p + strlen(name));
	}
	if (r)
		freeReplyObject(r);
	return calls;
}

static long long get_calls(void)
{
	return calls_of("get");
}

/* --- shards played by the test --- */

struct tshard {
	struct coh *c;
	unsigned id;
	int efd;
	_Atomic int parked;
	struct coh_msg *unsol[256];   /* INVALIDATE/FLUSH seen while waiting for replies */
	unsigned nunsol;
};

struct tinst {
	struct coh *c;
	struct tshard sh[NSHARDS];
};

static void t_wake(void *arg, unsigned shard)
{
	struct tinst *t = arg;
	struct tshard *s = &t->sh[shard];
	static const uint64_t one = 1;

	if (atomic_load_explicit(&s->parked, memory_order_seq_cst)) {
		ssize_t n = write(s->efd, &one, sizeof(one));
		(void)n;
	}
}

static uint64_t now_ms(void)
{
	return clock_mono_ns() / 1000000ull;
}

/* The next message for this shard, parking like a shard does; NULL after ms. */
static struct coh_msg *t_await(struct tshard *s, unsigned ms)
{
	uint64_t deadline = now_ms() + ms;

	for (;;) {
		struct coh_msg *m = coh_poll(s->c, s->id);
		if (m)
			return m;
		atomic_store_explicit(&s->parked, 1, memory_order_seq_cst);
		if (!coh_pending(s->c, s->id)) {
			uint64_t now = now_ms();
			if (now >= deadline) {
				atomic_store_explicit(&s->parked, 0, memory_order_relaxed);
				return NULL;
			}
			struct pollfd p = { s->efd, POLLIN, 0 };
			if (poll(&p, 1, (int)(deadline - now)) > 0) {
				uint64_t v;
				ssize_t n = read(s->efd, &v, sizeof(v));
				(void)n;
			}
		}
		atomic_store_explicit(&s->parked, 0, memory_order_relaxed);
	}
}

static void t_stash(struct tshard *s, struct coh_msg *m)
{
	if (s->nunsol < sizeof(s->unsol) / sizeof(s->unsol[0]))
		s->unsol[s->nunsol++] = m;
	else
		coh_msg_destroy(m);
}

static void t_submit(struct tshard *s, struct coh_msg *m)
{
	while (!coh_submit(s->c, s->id, m)) {
		coh_flush(s->c, s->id);
		sched_yield();
	}
}

/* Sends m and returns its reply (the same message), stashing unsolicited ones. */
static struct coh_msg *t_call(struct tshard *s, struct coh_msg *m)
{
	if (!m)
		return NULL;
	m->cookie = m;
	t_submit(s, m);
	coh_flush(s->c, s->id);
	for (;;) {
		struct coh_msg *r = t_await(s, WAIT_MS);
		if (!r)
			return NULL;
		if (r->op == COH_INVALIDATE || r->op == COH_FLUSH) {
			t_stash(s, r);
			continue;
		}
		CHECK(r == m && r->cookie == m);
		return r;
	}
}

/*
 * Waits for an unsolicited message of op, with key[0..klen) if key is given
 * and, for FLUSH, older_than > after (older ones are dropped); NULL after ms.
 */
static struct coh_msg *t_unsol(struct tshard *s, uint8_t op, const char *key, size_t klen,
			       uint32_t after, unsigned ms)
{
	uint64_t deadline = now_ms() + ms;

	for (;;) {
		for (unsigned i = 0; i < s->nunsol; i++) {
			struct coh_msg *m = s->unsol[i];
			if (m->op == COH_FLUSH && op == COH_FLUSH && m->older_than <= after) {
				coh_msg_destroy(m);
				memmove(&s->unsol[i], &s->unsol[i + 1], (s->nunsol - i - 1) * sizeof(m));
				s->nunsol--;
				i--;
				continue;
			}
			if (m->op == op && (!key || (m->key_len == klen &&
						     !memcmp(m->key, key, klen)))) {
				memmove(&s->unsol[i], &s->unsol[i + 1], (s->nunsol - i - 1) * sizeof(m));
				s->nunsol--;
				return m;
			}
		}
		uint64_t now = now_ms();
		if (now >= deadline)
			return NULL;
		struct coh_msg *m = t_await(s, (unsigned)(deadline - now));
		if (!m)
			return NULL;
		t_stash(s, m);
	}
}

static struct coh_msg *t_unsolicited(struct tshard *s, uint8_t op, const char *key, unsigned ms)
{
	return t_unsol(s, op, key, key ? strlen(key) : 0, 0, ms);
}

static void t_drop_unsolicited(struct tshard *s)
{
	for (unsigned i = 0; i < s->nunsol; i++)
		coh_msg_destroy(s->unsol[i]);
	s->nunsol = 0;
}

static unsigned shard_of(const char *key)
{
	return hash_shard(hash_key(key, strlen(key)), NSHARDS);
}

static struct coh_msg *msg(enum coh_op op, const char *key, const char *ctype, const char *value,
			   uint32_t ttl)
{
	size_t kl = key ? strlen(key) : 0, cl = ctype ? strlen(ctype) : 0;
	size_t vl = value ? strlen(value) : 0;
	struct coh_msg *m = coh_msg_create(op, key ? shard_of(key) : 0,
					   key ? hash_key(key, kl) : 0,
					   key, kl, ctype, cl, vl);
	if (m && vl)
		memcpy(m->value, value, vl);
	if (m)
		m->ttl = ttl;
	return m;
}

/* Runs one request on the key's shard and returns the reply status (-1: none). */
static int t_do(struct tinst *t, struct coh_msg *m, struct coh_msg **keep)
{
	if (!m)
		return -1;
	struct coh_msg *r = t_call(&t->sh[m->shard], m);
	if (!r)
		return -1;
	int st = r->status;
	if (keep)
		*keep = r;
	else
		coh_msg_destroy(r);
	return st;
}

static struct coh_stats stats_of(struct tinst *t)
{
	struct coh_stats s;
	coh_stats(t->c, &s);
	return s;
}

/* Polls a counter until `field cmp` holds (at most WAIT_MS); yields its value. */
#define WAIT_STAT(t, field, cmp)                                                     \
	({                                                                           \
		uint64_t wait_deadline_ = now_ms() + WAIT_MS;                         \
		struct coh_stats ws_;                                                \
		for (;;) {                                                           \
			ws_ = stats_of(t);                                           \
			if ((ws_.field cmp) || now_ms() >= wait_deadline_)           \
				break;                                               \
			sleep_ms(5);                                                 \
		}                                                                    \
		ws_.field;                                                           \
	})

static char url[64];

static int t_create(struct tinst *t, const char *id, struct coh_config *cfg)
{
	memset(t, 0, sizeof(*t));
	cfg->redis_url = url;
	cfg->instance_id = id;
	cfg->nshards = NSHARDS;
	cfg->cpu = -1;
	if (!cfg->advertise)
		cfg->advertise = "127.0.0.1:1234";
	int rc = coh_create(&t->c, cfg, t_wake, t);
	if (rc)
		return rc;
	for (unsigned s = 0; s < NSHARDS; s++) {
		t->sh[s].c = t->c;
		t->sh[s].id = s;
		t->sh[s].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
	return coh_start(t->c);
}

static void t_destroy(struct tinst *t)
{
	coh_destroy(t->c);
	for (unsigned s = 0; s < NSHARDS; s++) {
		t_drop_unsolicited(&t->sh[s]);
		close(t->sh[s].efd);
	}
	t->c = NULL;
}

static void wait_up(struct tinst *t)
{
	uint64_t v = WAIT_STAT(t, breaker_open, == 0);
	CHECK_EQ(v, 0);
}

/* --- tests that need no server --- */

static void test_formats(void)
{
	struct coh_url u;

	CHECK_EQ(coh_url_parse("redis://127.0.0.1:6380/3", &u), 0);
	CHECK(!strcmp(u.host, "127.0.0.1") && !strcmp(u.port, "6380") && u.db == 3 && !u.auth);
	CHECK_EQ(coh_url_parse("redis://localhost", &u), 0);
	CHECK(!strcmp(u.port, "6379") && u.db == 0);
	CHECK_EQ(coh_url_parse("redis://bob:p%40ss:w@[::1]:7000/", &u), 0);
	CHECK(!strcmp(u.host, "::1") && !strcmp(u.port, "7000"));
	CHECK(u.auth && !strcmp(u.user, "bob") && !strcmp(u.password, "p@ss:w"));
	CHECK_EQ(coh_url_parse("redis://:secret@h:1", &u), 0);
	CHECK(u.auth && !u.user[0] && !strcmp(u.password, "secret"));
	CHECK_EQ(coh_url_parse("redis://secret@h", &u), 0);
	CHECK(u.auth && !strcmp(u.password, "secret"));
	CHECK_EQ(coh_url_parse("http://h:1", &u), -EINVAL);
	CHECK_EQ(coh_url_parse("redis://h:0", &u), -EINVAL);
	CHECK_EQ(coh_url_parse("redis://h:70000", &u), -EINVAL);
	CHECK_EQ(coh_url_parse("redis://:1", &u), -EINVAL);
	CHECK_EQ(coh_url_parse("redis://h:1/x", &u), -EINVAL);
	CHECK_EQ(coh_url_parse("redis://h:1?db=2", &u), -EINVAL);
	CHECK_EQ(coh_url_parse("redis://u:%4@h", &u), -EINVAL);
	CHECK_EQ(coh_url_parse(NULL, &u), -EINVAL);

	char hdr[COH_MAGIC_LEN + COH_CTYPE_MAX + 1];
	size_t hn = coh_value_header(hdr, "text/plain", 10), co, cl, vo;
	char framed[64];
	memcpy(framed, hdr, hn);
	memcpy(framed + hn, "v\nx", 3);
	CHECK_EQ(coh_value_decode(framed, hn + 3, &co, &cl, &vo), 0);
	CHECK(cl == 10 && !memcmp(framed + co, "text/plain", 10) && vo == hn);
	CHECK_EQ(coh_value_decode("hello", 5, &co, &cl, &vo), 1);
	CHECK_EQ(vo, 0);
	CHECK_EQ(coh_value_decode("\0RCV", 4, &co, &cl, &vo), 1);      /* too short for the magic */
	CHECK_EQ(coh_value_decode("\0RCV1text", 9, &co, &cl, &vo), -EINVAL);
	CHECK_EQ(coh_value_decode("\0RCV1a\x01\n", 8, &co, &cl, &vo), -EINVAL);
	CHECK_EQ(coh_value_decode("\0RCV1\n", 6, &co, &cl, &vo), 0);
	CHECK(cl == 0 && vo == 6);
	CHECK(!coh_ctype_valid("a\nb", 3));

	/* content types: exactly what L1 accepts (src/cache/exec.c put_type): any
	 * byte but the CTLs other than tab and DEL, obs-text (0x80-0xFF) included,
	 * at most REPR_TYPE_MAX bytes */
	char ct[COH_CTYPE_MAX + 2];
	for (unsigned ch = 0; ch < 256; ch++) {
		ct[0] = (char)ch;
		bool l1 = ch == '\t' || (ch >= 0x20 && ch != 0x7f);
		CHECK_EQ(coh_ctype_valid(ct, 1), l1);
	}
	CHECK(coh_ctype_valid("text/plain; charset=\xe9\x80\xff", 23));
	memset(ct, 'a', sizeof(ct));
	CHECK(coh_ctype_valid(ct, COH_CTYPE_MAX));
	CHECK(!coh_ctype_valid(ct, COH_CTYPE_MAX + 1));
	struct coh_msg *om = coh_msg_create(COH_SET, 0, 0, "k", 1, "x/\xc3\xa9\xff", 5, 0);
	CHECK(om != NULL);
	coh_msg_destroy(om);
	CHECK(coh_msg_create(COH_SET, 0, 0, "k", 1, ct, COH_CTYPE_MAX + 1, 0) == NULL);
	/* a frame whose type is longer than L1 keeps is corrupt, not a value */
	char longf[COH_MAGIC_LEN + COH_CTYPE_MAX + 8];
	memcpy(longf, COH_VALUE_MAGIC, COH_MAGIC_LEN);
	memset(longf + COH_MAGIC_LEN, 'a', COH_CTYPE_MAX + 1);
	longf[COH_MAGIC_LEN + COH_CTYPE_MAX + 1] = '\n';
	CHECK_EQ(coh_value_decode(longf, COH_MAGIC_LEN + COH_CTYPE_MAX + 2, &co, &cl, &vo), -EINVAL);
	longf[COH_MAGIC_LEN + COH_CTYPE_MAX] = '\n';
	CHECK_EQ(coh_value_decode(longf, COH_MAGIC_LEN + COH_CTYPE_MAX + 2, &co, &cl, &vo), 0);
	CHECK(cl == COH_CTYPE_MAX && vo == COH_MAGIC_LEN + COH_CTYPE_MAX + 1);

	/* RCV2 (issue 9): an extension header between the type and the value,
	 * its length in two bytes; every bad length is corrupt, never a read
	 * past the string */
	static char h2[COH_VALUE_HEADER2_MAX];
	size_t eo, el;
	hn = coh_value_header2(h2, "text/plain", 10, "\x01WXYZ", 5);
	CHECK_EQ(hn, COH_MAGIC_LEN + 10 + 1 + 2 + 5);
	memcpy(framed, h2, hn);
	memcpy(framed + hn, "val", 3);
	CHECK_EQ(coh_value_decode_ext(framed, hn + 3, &co, &cl, &eo, &el, &vo), 0);
	CHECK(cl == 10 && !memcmp(framed + co, "text/plain", 10));
	CHECK(el == 5 && !memcmp(framed + eo, "\x01WXYZ", 5) && vo == hn);
	CHECK_EQ(coh_value_decode(framed, hn + 3, &co, &cl, &vo), 0);  /* ext skipped */
	CHECK_EQ(vo, hn);
	for (size_t cut = COH_MAGIC_LEN; cut < hn; cut++)
		CHECK_EQ(coh_value_decode_ext(framed, cut, &co, &cl, &eo, &el, &vo), -EINVAL);
	CHECK_EQ(coh_value_decode_ext("\0RCV2\n\0\0v", 9, &co, &cl, &eo, &el, &vo), -EINVAL);
	static char big2[COH_MAGIC_LEN + 3 + COH_EXT_MAX + 8];
	memcpy(big2, "\0RCV2\n\x01\x08", 8);         /* 2049 */
	CHECK_EQ(coh_value_decode_ext(big2, sizeof(big2), &co, &cl, &eo, &el, &vo), -EINVAL);
	memcpy(big2, "\0RCV2\n\x00\x08", 8);         /* 2048: the most */
	CHECK_EQ(coh_value_decode_ext(big2, sizeof(big2), &co, &cl, &eo, &el, &vo), 0);
	CHECK(el == COH_EXT_MAX && vo == 8 + COH_EXT_MAX);
	CHECK_EQ(coh_value_decode_ext("\0RCV1\nab", 8, &co, &cl, &eo, &el, &vo), 0);
	CHECK(el == 0 && eo == 0 && vo == 6);
	/* a SET's extension rides in front of its value, and survives a copy
	 * (the replay queue keeps copies) */
	om = coh_msg_create(COH_SET, 0, 0, "k", 1, NULL, 0, 3 + 2);
	memcpy(om->value, "EEEvv", 5);
	CHECK_EQ(coh_msg_split_ext(om, 0), -EINVAL);
	CHECK_EQ(coh_msg_split_ext(om, 6), -EINVAL);
	CHECK_EQ(coh_msg_split_ext(om, 3), 0);
	CHECK(om->ext_len == 3 && !memcmp(om->ext, "EEE", 3));
	CHECK(om->value_len == 2 && !memcmp(om->value, "vv", 2));
	struct coh_msg *oc = coh_msg_copy(om);
	CHECK(oc && oc->ext_len == 3 && !memcmp(oc->ext, "EEE", 3) && oc->value_len == 2 &&
	      !memcmp(oc->value, "vv", 2));
	coh_msg_destroy(oc);
	coh_msg_destroy(om);

	const char *id, *key;
	size_t idl, kl;
	CHECK_EQ(coh_inval_decode("user:42", 7, &id, &idl, &key, &kl), 0);
	CHECK(id == NULL && kl == 7 && !memcmp(key, "user:42", 7));
	CHECK_EQ(coh_inval_decode("\0RCI1inst\0k\0y", 13, &id, &idl, &key, &kl), 1);
	CHECK(idl == 4 && !memcmp(id, "inst", 4) && kl == 3 && !memcmp(key, "k\0y", 3));
	CHECK_EQ(coh_inval_decode("\0RCI1inst", 9, &id, &idl, &key, &kl), -EINVAL);
	CHECK_EQ(coh_inval_decode("\0RCI1inst\0", 10, &id, &idl, &key, &kl), -EINVAL);
	CHECK_EQ(coh_inval_decode("", 0, &id, &idl, &key, &kl), -EINVAL);

#define JV(s) coh_json_object_valid(s, strlen(s))
	CHECK(JV("{\"a\":[1,-2.5e3,\"x\\u00e9\\n\",true,null,{}],\"b\":{\"c\":false}}"));
	CHECK(JV(" {} "));
	CHECK(!JV("{}}"));
	CHECK(!JV("[1]"));
	CHECK(!JV("{\"a\":}"));
	CHECK(!JV("{\"a\":\"\x01\"}"));
	CHECK(!JV("{\"a\":1"));
	CHECK(!JV("{\"a\":01x}"));
	/* no leading zeros (RFC 8259): /cluster passes values on as they are */
	CHECK(!JV("{\"a\":01}"));
	CHECK(!JV("{\"a\":-00.5}"));
	CHECK(!JV("{\"a\":[00]}"));
	CHECK(JV("{\"a\":[0,-0,0.01,-0.5e-07,10,0e1]}"));
	CHECK(!JV("{\"a\":\"\\q\"}"));
	/* JSON text is UTF-8 (RFC 8259): /cluster must not pass on other bytes */
	CHECK(JV("{\"a\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}"));
	CHECK(!JV("{\"a\":\"\xff\"}"));
	CHECK(!JV("{\"a\":\"\x80\"}"));
	CHECK(!JV("{\"a\":\"\xc0\xaf\"}"));            /* overlong '/' */
	CHECK(!JV("{\"a\":\"\xe0\x80\xaf\"}"));        /* overlong */
	CHECK(!JV("{\"a\":\"\xed\xa0\x80\"}"));        /* a surrogate */
	CHECK(!JV("{\"a\":\"\xf4\x90\x80\x80\"}"));    /* past U+10FFFF */
	CHECK(!JV("{\"a\":\"\xe2\x82\"}"));            /* cut short */
	CHECK(!JV("{\"\xc3\":1}"));
#undef JV
	/* coh_json_str() writes valid JSON for any bytes: bad UTF-8 becomes U+FFFD */
	struct buf jb = { 0 };
	CHECK_EQ(coh_json_str(&jb, "a\"\\\x01\x7f\xc3\xa9\xff\xc3", 9), 0);
	static const char jwant[] = "\"a\\\"\\\\\\u0001\\u007f\xc3\xa9\\ufffd\\ufffd\"";
	CHECK(jb.len == sizeof(jwant) - 1 && !memcmp(jb.data, jwant, jb.len));
	buf_deinit(&jb);

	struct coh_msg *m = coh_msg_create(COH_GET, 0, 0, "", 0, NULL, 0, 0);
	CHECK(m == NULL);
	m = coh_msg_create(COH_SET, 0, 0, "k", 1, "a\r\nb", 4, 1);
	CHECK(m == NULL);
	m = coh_msg_create(COH_CLUSTER, 0, 0, NULL, 0, NULL, 0, 0);
	CHECK(m != NULL);
	coh_msg_destroy(m);
	coh_msg_destroy(NULL);

	struct coh_config cfg = { .redis_url = "redis://h:1", .nshards = 1, .cpu = -1 };
	struct coh *c = NULL;
	cfg.nshards = 0;
	CHECK_EQ(coh_create(&c, &cfg, NULL, NULL), -EINVAL);
	cfg.nshards = 1;
	cfg.ring_size = 3;
	CHECK_EQ(coh_create(&c, &cfg, NULL, NULL), -EINVAL);
	cfg.ring_size = 0;
	cfg.instance_id = "has space";
	CHECK_EQ(coh_create(&c, &cfg, NULL, NULL), -EINVAL);
	cfg.instance_id = NULL;
	cfg.redis_url = "redis://";
	CHECK_EQ(coh_create(&c, &cfg, NULL, NULL), -EINVAL);
	cfg.redis_url = "redis://h:1";
	CHECK_EQ(coh_create(&c, &cfg, NULL, NULL), 0);
	CHECK(c && strlen(coh_instance_id(c)) > 0);

	/* registry names: the same rule as the shards applied before the names moved here */
#define RESERVED(k) coh_key_reserved(c, k, sizeof(k) - 1)
	CHECK(RESERVED("instances"));
	CHECK(RESERVED("instance:"));
	CHECK(RESERVED("instance:x"));
	CHECK(RESERVED("instance:\0bin"));
	CHECK(!RESERVED("instance"));
	CHECK(!RESERVED("instancesx"));
	CHECK(!RESERVED("Instances"));
	CHECK(!RESERVED("invalidate"));    /* a channel, not a key: no clash */
	CHECK(!RESERVED("x"));
#undef RESERVED
	CHECK(!coh_key_reserved(NULL, "instances", 9));
	coh_destroy(c);         /* never started */
	coh_destroy(NULL);
}

/*
 * Feeds `bytes` to a coh_conn from a listener that plays a hostile Redis,
 * and returns what coh_conn_reply() makes of them: the first non-zero result
 * (1: a reply, whose type is stored in *type; -EPROTO), or 0 if nothing came
 * within WAIT_MS.
 */
static int conn_feed(const char *bytes, size_t n, size_t reply_max, size_t elements_max,
		     int *type, unsigned replies)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), sfd = -1, rc = 0;
	char urlbuf[64];
	struct coh_url u;
	struct coh_conn cn;

	coh_conn_init(&cn, "test");
	cn.reply_max = reply_max;
	cn.elements_max = elements_max;
	if (lfd == -1 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen))
		goto out;
	snprintf(urlbuf, sizeof(urlbuf), "redis://127.0.0.1:%d", ntohs(a.sin_port));
	if (coh_url_parse(urlbuf, &u) || coh_conn_open(&cn, &u))
		goto out;
	sfd = accept(lfd, NULL, NULL);
	if (sfd == -1 || write(sfd, bytes, n) != (ssize_t)n)
		goto out;
	if (cn.state == COH_CONN_CONNECTING) {
		struct pollfd p = { cn.fd, POLLOUT, 0 };
		if (poll(&p, 1, WAIT_MS) != 1 || coh_conn_connected(&cn))
			goto out;
	}
	uint64_t deadline = now_ms() + WAIT_MS;
	while (rc == 0 && now_ms() < deadline) {
		redisReply *r;
		struct pollfd p = { cn.fd, POLLIN, 0 };
		poll(&p, 1, 100);
		if (coh_conn_read(&cn))
			break;
		while ((rc = coh_conn_reply(&cn, &r)) == 1) {
			*type = r->type;
			freeReplyObject(r);
			if (--replies)
				continue;
			break;
		}
	}
out:
	if (sfd != -1)
		close(sfd);
	if (lfd != -1)
		close(lfd);
	coh_conn_deinit(&cn);
	return rc;
}

/* Replies past COH_REPLY_MAX bytes or COH_REPLY_ELEMENTS_MAX elements, and
 * malformed lengths, are protocol errors, never unbounded memory. */
static void test_conn_limits(void)
{
	static char big[2100];
	int type = 0;

	CHECK(COH_REPLY_MAX >= (size_t)512 << 20 && COH_REPLY_ELEMENTS_MAX >= 1u << 20);
#define FEED(s, max, emax) conn_feed(s, sizeof(s) - 1, max, emax, &type, 1)
	CHECK_EQ(FEED("$5\r\nhello\r\n", 1000, 10), 1);
	CHECK_EQ(type, REDIS_REPLY_STRING);
	CHECK_EQ(FEED("$-1\r\n", 1000, 10), 1);
	CHECK_EQ(type, REDIS_REPLY_NIL);
	CHECK_EQ(FEED("$-5\r\n", 1000, 10), -EPROTO);
	CHECK_EQ(FEED("*-5\r\n", 1000, 10), -EPROTO);
	CHECK_EQ(FEED("*3000000000\r\n", 1000, 10), -EPROTO);
	CHECK_EQ(FEED(":12x\r\n", 1000, 10), -EPROTO);
	/* elements of every array in the reply count */
	CHECK_EQ(FEED("*2\r\n*4\r\n:1\r\n:1\r\n:1\r\n:1\r\n*2\r\n:1\r\n:1\r\n", 1000, 8), 1);
	CHECK_EQ(type, REDIS_REPLY_ARRAY);
	CHECK_EQ(FEED("*2\r\n*4\r\n:1\r\n:1\r\n:1\r\n:1\r\n*3\r\n:1\r\n:1\r\n:1\r\n", 1000, 8),
		 -EPROTO);
	CHECK_EQ(FEED("*9\r\n", 1000, 8), -EPROTO);
	/* bytes: a bulk string announced or received past the bound */
	int n = snprintf(big, sizeof(big), "$%d\r\n", 1000 - 8);
	memset(big + n, 'x', 1000 - 8);
	memcpy(big + n + 1000 - 8, "\r\n", 2);
	CHECK_EQ(conn_feed(big, (size_t)n + 1000 - 8 + 2, 1000, 8, &type, 1), 1);   /* 999 bytes */
	n = snprintf(big, sizeof(big), "$%d\r\n", 1000 - 7);
	memset(big + n, 'x', 1000 - 7);
	memcpy(big + n + 1000 - 7, "\r\n", 2);
	CHECK_EQ(conn_feed(big, (size_t)n + 1000 - 7 + 2, 1000, 8, &type, 1), -EPROTO);
	n = snprintf(big, sizeof(big), "$%d\r\n", 1 << 30);
	memset(big + n, 'x', 1500);
	CHECK_EQ(conn_feed(big, (size_t)n + 1500, 1000, 8, &type, 1), -EPROTO);   /* never completes */
	/* the bound is per reply: three of 600 bytes in one read are fine */
	n = 0;
	for (int i = 0; i < 3; i++) {
		n += snprintf(big + n, sizeof(big) - (size_t)n, "$590\r\n");
		memset(big + n, 'y', 590);
		memcpy(big + n + 590, "\r\n", 2);
		n += 592;
	}
	CHECK_EQ(conn_feed(big, (size_t)n, 1000, 8, &type, 3), 1);
#undef FEED
}

/* r is the answer to a GET of what test_write_through_and_reads() and
 * test_read_conn() write: "hello", text/plain, a TTL of 100 s.  Destroys it. */
static void check_hello(struct coh_msg *r)
{
	if (r) {
		CHECK(r->value_len == 5 && !memcmp(r->value, "hello", 5));
		CHECK(r->ctype_len == 10 && !memcmp(r->ctype, "text/plain", 10));
		CHECK(r->ttl >= 1 && r->ttl <= 100);
		CHECK_EQ(r->flags, 0);
		coh_msg_destroy(r);
	}
}

/* --- a shard's read connection (read.c), the test playing the shard's loop --- */

/*
 * Blocking socket calls stand in for the shard's io_uring: the protocol
 * object is the same, only the bytes move differently.  trd_drop() is what
 * l2read.c does when a call says the connection must go.
 */
struct trd {
	struct coh_read *r;
	int fd;
	struct buf out;
};

static void trd_init(struct trd *t, struct coh *c, unsigned shard)
{
	memset(t, 0, sizeof(*t));
	t->fd = -1;
	CHECK_EQ(coh_read_create(&t->r, c, shard), 0);
}

static void trd_drop(struct trd *t)
{
	if (t->fd != -1)
		close(t->fd);
	t->fd = -1;
	t->out.len = 0;
	coh_read_lost(t->r, clock_mono_ns());
}

static void trd_deinit(struct trd *t)
{
	if (t->fd != -1)
		close(t->fd);
	coh_read_destroy(t->r);
	buf_deinit(&t->out);
}

/* One turn of the loop: send what is queued, wait up to ms for bytes and
 * feed them, run the deadlines.  0, or the first -errno a call returned. */
static int trd_pump(struct trd *t, unsigned ms)
{
	if (t->fd == -1)
		return -ENOTCONN;
	if (coh_read_output(t->r, &t->out)) {
		for (size_t off = 0; off < t->out.len;) {
			ssize_t n = send(t->fd, t->out.data + off, t->out.len - off, MSG_NOSIGNAL);
			if (n <= 0) {
				struct pollfd p = { t->fd, POLLOUT, 0 };
				if (n == -1 && errno == EAGAIN && poll(&p, 1, WAIT_MS) == 1)
					continue;
				return -EPIPE;
			}
			off += (size_t)n;
		}
		t->out.len = 0;
	}
	struct pollfd p = { t->fd, POLLIN, 0 };
	if (poll(&p, 1, (int)ms) == 1) {
		static char chunk[65536];
		ssize_t n = recv(t->fd, chunk, sizeof(chunk), 0);
		if (n <= 0)
			return -ECONNRESET;
		int rc = coh_read_input(t->r, chunk, (size_t)n, clock_mono_ns());
		if (rc)
			return rc;
	}
	return coh_read_timers(t->r, clock_mono_ns());
}

/* Connects and shakes hands (waiting out the backoff); true when ready,
 * false after ms.  *err: the last -errno a failed attempt gave. */
static bool trd_up(struct trd *t, unsigned ms, int *err)
{
	uint64_t deadline = now_ms() + ms;

	while (now_ms() < deadline) {
		if (t->fd == -1) {
			const void *addr;
			uint32_t len;
			int fd, rc;
			if (coh_read_open(t->r, clock_mono_ns(), &fd, &addr, &len)) {
				sleep_ms(5);
				continue;
			}
			t->fd = fd;
			rc = connect(fd, addr, len) == 0 ? 0 : -errno;
			if (rc == -EINPROGRESS) {
				struct pollfd p = { fd, POLLOUT, 0 };
				int soerr = 0;
				socklen_t sl = sizeof(soerr);
				rc = poll(&p, 1, WAIT_MS) == 1 &&
				     getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 ? -soerr
											      : -ETIMEDOUT;
			}
			if ((rc = coh_read_connected(t->r, rc, clock_mono_ns())) < 0) {
				if (err)
					*err = rc;
				trd_drop(t);
				continue;
			}
		}
		int rc = trd_pump(t, 10);
		if (rc < 0) {
			if (err)
				*err = rc;
			trd_drop(t);
			continue;
		}
		if (coh_read_state(t->r) == COH_READ_READY)
			return true;
	}
	return false;
}

static struct coh_msg *get_msg(const char *key)
{
	size_t kl = strlen(key);
	return coh_msg_create(COH_GET, shard_of(key), hash_key(key, kl), key, kl, NULL, 0, 0);
}

/* Pumps until m comes back (the connection dropped if a call says so);
 * NULL after WAIT_MS.  *rc: the first error a call returned, else 0. */
static struct coh_msg *trd_wait(struct trd *t, const struct coh_msg *m, int *rc)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	struct coh_msg *d;

	if (rc)
		*rc = 0;
	for (;;) {
		while ((d = coh_read_done(t->r))) {
			if (d == m)
				return d;
			coh_msg_destroy(d);
		}
		if (now_ms() >= deadline || t->fd == -1)
			return NULL;
		int e = trd_pump(t, 10);
		if (e < 0) {
			if (rc && !*rc)
				*rc = e;
			trd_drop(t);
		}
	}
}

/* A GET on the read connection: its completed message (caller destroys), or
 * NULL; *rc as coh_read_get() or the pump said. */
static struct coh_msg *trd_get(struct trd *t, const char *key, int *rc)
{
	struct coh_msg *m = get_msg(key);
	int e = coh_read_get(t->r, m, clock_mono_ns());

	if (e) {
		if (rc)
			*rc = e;
		coh_msg_destroy(m);
		return NULL;
	}
	return trd_wait(t, m, rc);
}

/* What a read on a shard's own connection returns, counted as the thread's are. */
static void test_read_conn(struct tinst *a)
{
	struct trd t;
	struct coh_msg *r;
	int rc;

	trd_init(&t, a->c, 0);
	CHECK(trd_up(&t, WAIT_MS, NULL));
	CHECK_EQ(stats_of(a).shard_conns, 1);
	struct coh_stats s0 = stats_of(a);
	long long calls = get_calls();

	CHECK_EQ(t_do(a, msg(COH_SET, "rk", "text/plain", "hello", 100), NULL), COH_OK);
	r = trd_get(&t, "rk", &rc);
	CHECK(r && r->status == COH_OK);
	check_hello(r);
	cmd_ok("SET ringcache:rplain %b", "plain", (size_t)5);
	r = trd_get(&t, "rplain", &rc);
	CHECK(r && r->status == COH_OK && r->value_len == 5 && r->ctype_len == 0 && r->ttl == 0);
	coh_msg_destroy(r);
	r = trd_get(&t, "rabsent", &rc);
	CHECK(r && r->status == COH_MISS);
	coh_msg_destroy(r);
	cmd_ok("LPUSH ringcache:rlist x");
	r = trd_get(&t, "rlist", &rc);
	CHECK(r && r->status == COH_BAD_DATA);
	coh_msg_destroy(r);
	cmd_ok("SET ringcache:rcorrupt %b", "\0RCV1text", (size_t)9);
	r = trd_get(&t, "rcorrupt", &rc);
	CHECK(r && r->status == COH_BAD_DATA);
	coh_msg_destroy(r);

	/* pipelined: three reads out before any reply is read, answered in order */
	struct coh_msg *m[3] = { get_msg("rk"), get_msg("rabsent"), get_msg("rplain") };
	for (int i = 0; i < 3; i++)
		CHECK_EQ(coh_read_get(t.r, m[i], clock_mono_ns()), 0);
	for (int i = 0; i < 3; i++) {
		r = trd_wait(&t, m[i], &rc);
		CHECK(r == m[i] && r->status == (i == 1 ? COH_MISS : COH_OK));
		coh_msg_destroy(r);
	}

	struct coh_stats s1 = stats_of(a);
	CHECK_EQ(s1.shard_reads - s0.shard_reads, 8);
	CHECK_EQ(s1.redis_gets - s0.redis_gets, 8);
	CHECK_EQ(s1.gets - s0.gets, 8);
	CHECK_EQ(s1.get_hits - s0.get_hits, 4);
	CHECK_EQ(s1.get_misses - s0.get_misses, 4);
	CHECK_EQ(s1.bad_data - s0.bad_data, 2);
	CHECK_EQ(s1.raw_values - s0.raw_values, 2);
	CHECK_EQ(get_calls() - calls, 8);
	trd_deinit(&t);
}

/* A read in flight while the subscription is lost (CLIENT KILL): answered,
 * but COH_F_NOCACHE, since an invalidation of its key may have been missed. */
static void test_read_nocache(struct tinst *a, struct tinst *b)
{
	struct trd t;
	int rc;

	trd_init(&t, a->c, 0);
	CHECK(trd_up(&t, WAIT_MS, NULL));
	CHECK_EQ(t_do(a, msg(COH_SET, "rn", NULL, "v", 0), NULL), COH_OK);
	struct coh_msg *m = get_msg("rn");
	CHECK_EQ(coh_read_get(t.r, m, clock_mono_ns()), 0);
	/* the GET goes out; its reply waits in the socket while the feed dies */
	CHECK(coh_read_output(t.r, &t.out) > 0);
	CHECK_EQ(send(t.fd, t.out.data, t.out.len, MSG_NOSIGNAL), (ssize_t)t.out.len);
	t.out.len = 0;
	uint64_t flushes = stats_of(a).flushes;
	cmd_ok("CLIENT KILL TYPE pubsub");
	/* once the FLUSH is sent, the new epoch was published long before */
	uint64_t f = WAIT_STAT(a, flushes, > flushes);
	CHECK(f > flushes);
	struct coh_msg *r = trd_wait(&t, m, &rc);
	CHECK(r && r->status == COH_OK && (r->flags & COH_F_NOCACHE));
	coh_msg_destroy(r);
	/* a read sent after the loss is fresh */
	r = trd_get(&t, "rn", &rc);
	CHECK(r && r->status == COH_OK && r->flags == 0);
	coh_msg_destroy(r);
	trd_deinit(&t);
	/* B lost its subscription too: both are back before the next test */
	wait_up(a);
	wait_up(b);
	for (unsigned i = 0; i < NSHARDS; i++) {
		coh_msg_destroy(t_unsol(&b->sh[i], COH_FLUSH, NULL, 0, 0, WAIT_MS));
		t_drop_unsolicited(&a->sh[i]);
		t_drop_unsolicited(&b->sh[i]);
	}
}

/*
 * Redis hangs: each read times out (COH_TIMEOUT), breaker_failures (3) in a
 * row drop the connection and trip the thread's breaker; then reads are
 * SKIPPED at once, and a write made meanwhile is unsettled until Redis has
 * the replay.
 */
static void test_read_timeouts(struct tinst *a)
{
	struct trd t;
	struct coh_msg *r;
	unsigned s = shard_of("ru");
	int rc;

	trd_init(&t, a->c, s);
	CHECK(trd_up(&t, WAIT_MS, NULL));
	uint64_t trips = stats_of(a).shard_trips, timeouts = stats_of(a).timeouts;
	kill(redis_pid, SIGSTOP);
	for (int i = 0; i < 3; i++) {
		r = trd_get(&t, "rslow", &rc);
		CHECK(r && r->status == COH_TIMEOUT);
		CHECK_EQ(rc, i < 2 ? 0 : -ETIMEDOUT);
		coh_msg_destroy(r);
	}
	CHECK_EQ(t.fd, -1);     /* dropped on the third */
	CHECK(stats_of(a).timeouts >= timeouts + 3);   /* heartbeats may time out too */
	uint64_t n = WAIT_STAT(a, shard_trips, > trips);
	CHECK(n > trips);
	uint64_t open = WAIT_STAT(a, breaker_open, == 1);
	CHECK_EQ(open, 1);
	struct coh_msg *m = get_msg("rslow");
	CHECK_EQ(coh_read_get(t.r, m, clock_mono_ns()), -ECANCELED);
	CHECK_EQ(m->status, COH_SKIPPED);
	coh_msg_destroy(m);

	CHECK_EQ(t_do(a, msg(COH_SET, "ru", NULL, "during", 0), NULL), COH_SKIPPED);
	CHECK_EQ(atomic_load(&a->c->shards[s].unsettled), 1);
	kill(redis_pid, SIGCONT);
	wait_up(a);
	for (int i = 0; i < 1000 && atomic_load(&a->c->shards[s].unsettled); i++)
		sleep_ms(10);
	CHECK_EQ(atomic_load(&a->c->shards[s].unsettled), 0);
	CHECK(trd_up(&t, WAIT_MS, NULL));
	r = trd_get(&t, "ru", &rc);
	CHECK(r && r->status == COH_OK && r->value_len == 6 && !memcmp(r->value, "during", 6));
	coh_msg_destroy(r);
	t_drop_unsolicited(&a->sh[0]);
	t_drop_unsolicited(&a->sh[1]);
	trd_deinit(&t);
}

/*
 * A write that timed out may still reach Redis: until its late reply, reads
 * of that shard must not go on a connection that could overtake it
 * (-EAGAIN: through the coherence thread instead).  Redis is made to hold
 * writes with CLIENT PAUSE WRITE; heartbeats and the breaker are set so that
 * nothing else fails meanwhile.
 */
static void test_read_unsettled(void)
{
	struct tinst t;
	struct trd rd;
	struct coh_config cfg = { .breaker_failures = 100, .heartbeat_ms = 5000,
				  .heartbeat_ttl_ms = 15000 };
	unsigned s = shard_of("unsettled");
	int rc;

	CHECK_EQ(t_create(&t, "inst-unsettled", &cfg), 0);
	wait_up(&t);
	trd_init(&rd, t.c, s);
	CHECK(trd_up(&rd, WAIT_MS, NULL));
	cmd_ok("CLIENT PAUSE 20000 WRITE");
	CHECK_EQ(t_do(&t, msg(COH_SET, "unsettled", NULL, "written", 0), NULL), COH_TIMEOUT);
	CHECK_EQ(atomic_load(&t.c->shards[s].unsettled), 1);
	struct coh_msg *m = get_msg("unsettled");
	CHECK_EQ(coh_read_state(rd.r), COH_READ_READY);
	CHECK_EQ(stats_of(&t).breaker_open, 0);
	CHECK_EQ(coh_read_get(rd.r, m, clock_mono_ns()), -EAGAIN);
	coh_msg_destroy(m);
	cmd_ok("CLIENT UNPAUSE");
	for (int i = 0; i < 1000 && atomic_load(&t.c->shards[s].unsettled); i++)
		sleep_ms(10);
	CHECK_EQ(atomic_load(&t.c->shards[s].unsettled), 0);
	struct coh_msg *r = trd_get(&rd, "unsettled", &rc);
	CHECK(r && r->status == COH_OK && r->value_len == 7 && !memcmp(r->value, "written", 7));
	coh_msg_destroy(r);
	trd_deinit(&rd);
	t_destroy(&t);
}

/* A module that is not started, with a read connection made ready by hand:
 * what it makes of bytes a hostile Redis could send. */
static struct coh *hostile_module(void)
{
	struct coh_config cfg = { .redis_url = "redis://127.0.0.1:1", .instance_id = "hostile",
				  .nshards = 1, .cpu = -1 };
	struct coh *c = NULL;
	struct sockaddr_in *sa;

	CHECK_EQ(coh_create(&c, &cfg, NULL, NULL), 0);
	sa = (struct sockaddr_in *)&c->addr;
	sa->sin_family = AF_INET;
	sa->sin_port = htons(1);
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->addr_len = sizeof(*sa);
	atomic_store(&c->gate, 0);     /* breaker closed, epoch 0 */
	return c;
}

static struct coh_read *hostile_read(struct coh *c)
{
	struct coh_read *r = NULL;
	const void *addr;
	uint32_t len;
	int fd = -1;

	CHECK_EQ(coh_read_create(&r, c, 0), 0);
	CHECK_EQ(coh_read_open(r, clock_mono_ns(), &fd, &addr, &len), 0);
	close(fd);      /* the bytes are fed by hand */
	CHECK_EQ(coh_read_connected(r, 0, clock_mono_ns()), 0);
	struct buf hello = { 0 };
	CHECK(coh_read_output(r, &hello) == 14 && !memcmp(hello.data, "*1\r\n$4\r\nPING\r\n", 14));
	buf_deinit(&hello);
	CHECK_EQ(coh_read_input(r, "+PONG\r\n", 7, 0), 0);
	CHECK_EQ(coh_read_state(r), COH_READ_READY);
	return r;
}

/* Feeds one read's reply bytes; returns coh_read_input's result, and the
 * completed read's status in *st (-1: none). */
static int hostile_feed(const char *bytes, size_t n, size_t reply_max, int *st, uint32_t *ttl)
{
	struct coh *c = hostile_module();
	struct coh_read *r = hostile_read(c);
	struct coh_msg *m = get_msg("k"), *d;
	int rc;

	r->cn.reply_max = reply_max;
	r->cn.elements_max = 8;
	CHECK_EQ(coh_read_get(r, m, clock_mono_ns()), 0);
	rc = coh_read_input(r, bytes, n, 0);
	*st = -1;
	if ((d = coh_read_done(r))) {
		*st = d->status;
		if (ttl)
			*ttl = d->ttl;
		if (d->status == COH_OK)
			CHECK(d->value >= (char *)d->value_mem &&
			      coh_ctype_valid(d->ctype, d->ctype_len));
		coh_msg_destroy(d);
	}
	coh_read_destroy(r);    /* frees m if it is still in flight */
	coh_destroy(c);
	return rc;
}

static void test_read_hostile(void)
{
	static char big[300];
	uint32_t ttl = 0;
	int st;

#define HFEED(s) hostile_feed(s, sizeof(s) - 1, 1000, &st, &ttl)
	CHECK_EQ(HFEED("$2\r\nhi\r\n:1500\r\n"), 0);
	CHECK_EQ(st, COH_OK);
	CHECK_EQ(ttl, 2);
	CHECK_EQ(HFEED("$-1\r\n:-2\r\n"), 0);
	CHECK_EQ(st, COH_MISS);
	CHECK_EQ(HFEED("$2\r\nhi\r\n:-2\r\n"), 0);      /* gone between GET and PTTL */
	CHECK_EQ(st, COH_MISS);
	CHECK_EQ(HFEED("-ERR nope\r\n:-2\r\n"), 0);
	CHECK_EQ(st, COH_ERROR);
	CHECK_EQ(HFEED("-WRONGTYPE x\r\n:-1\r\n"), 0);
	CHECK_EQ(st, COH_BAD_DATA);
	CHECK_EQ(HFEED("*1\r\n$1\r\nx\r\n:5\r\n"), 0);
	CHECK_EQ(st, COH_BAD_DATA);
	CHECK_EQ(HFEED(":7\r\n:5\r\n"), 0);
	CHECK_EQ(st, COH_BAD_DATA);
	CHECK_EQ(HFEED("$6\r\n\0RCV1x\r\n:-1\r\n"), 0);  /* magic, no end of type */
	CHECK_EQ(st, COH_BAD_DATA);
	CHECK_EQ(HFEED("$2\r\nhi\r\n+OK\r\n"), 0);      /* PTTL not an integer */
	CHECK_EQ(st, COH_ERROR);
	CHECK_EQ(HFEED("$-5\r\n"), -EPROTO);
	CHECK_EQ(st, -1);
	CHECK_EQ(HFEED("*9\r\n"), -EPROTO);             /* past elements_max */
	CHECK_EQ(HFEED("$2\r\nhi\r\n:5\r\n:5\r\n"), -EPROTO);   /* a reply to nothing */
	CHECK_EQ(st, COH_OK);
	int n = snprintf(big, sizeof(big), "$%d\r\n", 250);
	memset(big + n, 'x', sizeof(big) - (size_t)n);
	CHECK_EQ(hostile_feed(big, sizeof(big), 200, &st, NULL), -EPROTO);   /* past reply_max */
	CHECK_EQ(st, -1);
#undef HFEED

	struct coh *c = hostile_module();
	struct coh_read *r;
	struct coh_msg *m[5], *d;

	/* a handshake answered with anything but PONG is refused */
	CHECK_EQ(coh_read_create(&r, c, 0), 0);
	const void *addr;
	uint32_t len;
	int fd;
	CHECK_EQ(coh_read_open(r, clock_mono_ns(), &fd, &addr, &len), 0);
	close(fd);
	CHECK_EQ(coh_read_connected(r, 0, clock_mono_ns()), 0);
	CHECK_EQ(coh_read_input(r, "-NOAUTH x\r\n", 11, 0), -EACCES);
	coh_read_lost(r, clock_mono_ns());
	CHECK_EQ(coh_read_state(r), COH_READ_DOWN);
	CHECK_EQ(coh_read_open(r, clock_mono_ns(), &fd, &addr, &len), -EAGAIN);  /* backoff */
	coh_read_destroy(r);

	/* deadlines: each read times out; the fifth in a row trips the breaker
	 * (breaker_failures 5) and says the connection must go; late replies
	 * complete nothing */
	r = hostile_read(c);
	uint64_t now = clock_mono_ns();
	for (int i = 0; i < 5; i++) {
		m[i] = get_msg("slow");
		CHECK_EQ(coh_read_get(r, m[i], now), 0);
	}
	CHECK_EQ(coh_read_waiting_since(r), now);
	CHECK_EQ(coh_read_timers(r, now + 10 * COH_MS), 0);
	CHECK_EQ(coh_read_timers(r, now + 60 * COH_MS), -ETIMEDOUT);
	CHECK_EQ(atomic_load(&c->shards[0].trips), 1);
	for (int i = 0; i < 5; i++) {
		d = coh_read_done(r);
		CHECK(d == m[i] && d->status == COH_TIMEOUT);
		coh_msg_destroy(d);
	}
	CHECK_EQ(coh_read_waiting_since(r), 0);
	CHECK_EQ(coh_read_input(r, "$2\r\nhi\r\n:5\r\n", 12, 0), 0);
	CHECK(coh_read_done(r) == NULL);
	/* lost: what is in flight completes COH_ERROR */
	m[0] = get_msg("a");
	m[1] = get_msg("b");
	CHECK_EQ(coh_read_get(r, m[0], now), 0);
	CHECK_EQ(coh_read_get(r, m[1], now), 0);
	coh_read_lost(r, now);
	for (int i = 0; i < 2; i++) {
		d = coh_read_done(r);
		CHECK(d == m[i] && d->status == COH_ERROR);
		coh_msg_destroy(d);
	}
	coh_read_destroy(r);

	/* the breaker open: SKIPPED, nothing sent; unsettled writes: EAGAIN */
	r = hostile_read(c);
	struct buf out = { 0 };
	atomic_store(&c->gate, COH_GATE_OPEN);
	m[0] = get_msg("k");
	CHECK_EQ(coh_read_get(r, m[0], now), -ECANCELED);
	CHECK_EQ(m[0]->status, COH_SKIPPED);
	atomic_store(&c->gate, 0);
	atomic_store(&c->shards[0].unsettled, 1);
	CHECK_EQ(coh_read_get(r, m[0], now), -EAGAIN);
	CHECK_EQ(coh_read_output(r, &out), 0);
	atomic_store(&c->shards[0].unsettled, 0);
	/* a gate that moved while the read was out: NOCACHE */
	CHECK_EQ(coh_read_get(r, m[0], now), 0);
	CHECK(coh_read_output(r, &out) > 0);
	CHECK(out.len > 0 && memmem(out.data, out.len, "ringcache:k", 11) != NULL);
	atomic_store(&c->gate, 2);     /* epoch 1, closed */
	CHECK_EQ(coh_read_input(r, "$1\r\nv\r\n:-1\r\n", 12, 0), 0);
	d = coh_read_done(r);
	CHECK(d == m[0] && d->status == COH_OK && (d->flags & COH_F_NOCACHE));
	coh_msg_destroy(d);
	buf_deinit(&out);
	coh_read_destroy(r);
	coh_destroy(c);
}

/* --- the main flows --- */

static void test_write_through_and_reads(struct tinst *a)
{
	struct coh_msg *r;

	CHECK_EQ(t_do(a, msg(COH_SET, "k1", "text/plain", "hello", 100), NULL), COH_OK);
	redisReply *v = cmd("GET ringcache:k1");
	CHECK(v && v->type == REDIS_REPLY_STRING && v->len == 21 &&
	      !memcmp(v->str, "\0RCV1text/plain\nhello", 21));
	if (v)
		freeReplyObject(v);
	long long pttl = cmd_int("PTTL ringcache:k1");
	CHECK(pttl > 0 && pttl <= 100000);

	CHECK_EQ(t_do(a, msg(COH_GET, "k1", NULL, NULL, 0), &r), COH_OK);
	check_hello(r);

	/* no TTL, no content type, binary value */
	struct coh_msg *m = coh_msg_create(COH_SET, shard_of("k2"), hash_key("k2", 2),
					   "k2", 2, NULL, 0, 3);
	memcpy(m->value, "a\0b", 3);
	CHECK_EQ(t_do(a, m, NULL), COH_OK);
	CHECK_EQ(cmd_int("PTTL ringcache:k2"), -1);
	CHECK_EQ(t_do(a, msg(COH_GET, "k2", NULL, NULL, 0), &r), COH_OK);
	if (r) {
		CHECK(r->value_len == 3 && !memcmp(r->value, "a\0b", 3) && r->ctype_len == 0);
		CHECK_EQ(r->ttl, 0);
		coh_msg_destroy(r);
	}

	CHECK_EQ(t_do(a, msg(COH_GET, "absent", NULL, NULL, 0), NULL), COH_MISS);

	/* a plain value another application wrote */
	cmd_ok("SET ringcache:raw %b", "plain", (size_t)5);
	CHECK_EQ(t_do(a, msg(COH_GET, "raw", NULL, NULL, 0), &r), COH_OK);
	if (r) {
		CHECK(r->value_len == 5 && !memcmp(r->value, "plain", 5) && r->ctype_len == 0);
		coh_msg_destroy(r);
	}
	CHECK_EQ(stats_of(a).raw_values, 1);

	/* bad data: wrong type, corrupt frame */
	cmd_ok("HSET ringcache:hash f v");
	cmd_ok("SET ringcache:corrupt %b", "\0RCV1text", (size_t)9);
	uint64_t bad = stats_of(a).bad_data;
	CHECK_EQ(t_do(a, msg(COH_GET, "hash", NULL, NULL, 0), NULL), COH_BAD_DATA);
	CHECK_EQ(t_do(a, msg(COH_GET, "corrupt", NULL, NULL, 0), NULL), COH_BAD_DATA);
	CHECK_EQ(stats_of(a).bad_data, bad + 2);

	/* a content type L1 accepts, obs-text included, goes to Redis and back unchanged */
	static const char obs[] = "text/plain; title=\"caf\xc3\xa9\"; x=\x80\xff\t";
	const size_t obs_len = sizeof(obs) - 1;
	CHECK_EQ(t_do(a, msg(COH_SET, "obs", obs, "v8", 0), NULL), COH_OK);
	v = cmd("GET ringcache:obs");
	CHECK(v && v->type == REDIS_REPLY_STRING && v->len == COH_MAGIC_LEN + obs_len + 1 + 2);
	if (v && v->type == REDIS_REPLY_STRING && v->len > COH_MAGIC_LEN + obs_len) {
		CHECK(!memcmp(v->str, COH_VALUE_MAGIC, COH_MAGIC_LEN));
		CHECK(!memcmp(v->str + COH_MAGIC_LEN, obs, obs_len));
	}
	if (v)
		freeReplyObject(v);
	r = NULL;
	CHECK_EQ(t_do(a, msg(COH_GET, "obs", NULL, NULL, 0), &r), COH_OK);
	if (r) {
		CHECK(r->ctype_len == obs_len && !memcmp(r->ctype, obs, obs_len));
		CHECK(r->value_len == 2 && !memcmp(r->value, "v8", 2));
		coh_msg_destroy(r);
	}

	/* content types of 255 bytes are served; 256 and 1024 bytes are bad data, counted */
	char frame[COH_MAGIC_LEN + 1024 + 8];
	bad = stats_of(a).bad_data;
	const size_t tlens[] = { 255, 256, 1024 };
	for (unsigned i = 0; i < 3; i++) {
		size_t tl = tlens[i];
		r = NULL;
		memcpy(frame, COH_VALUE_MAGIC, COH_MAGIC_LEN);
		memset(frame + COH_MAGIC_LEN, 't', tl);
		memcpy(frame + COH_MAGIC_LEN + tl, "\nval", 4);
		cmd_ok("SET ringcache:longtype %b", frame, COH_MAGIC_LEN + tl + 4);
		int st = t_do(a, msg(COH_GET, "longtype", NULL, NULL, 0), &r);
		CHECK_EQ(st, tl <= 255 ? COH_OK : COH_BAD_DATA);
		if (st == COH_OK && r)
			CHECK(r->ctype_len == tl && r->value_len == 3 && !memcmp(r->value, "val", 3));
		coh_msg_destroy(r);
	}
	CHECK_EQ(stats_of(a).bad_data, bad + 2);

	CHECK_EQ(t_do(a, msg(COH_DEL, "k1", NULL, NULL, 0), NULL), COH_OK);
	CHECK_EQ(cmd_int("EXISTS ringcache:k1"), 0);
	CHECK_EQ(t_do(a, msg(COH_GET, "k1", NULL, NULL, 0), NULL), COH_MISS);
}

static void test_invalidation(struct tinst *a, struct tinst *b)
{
	struct coh_msg *m;
	uint64_t own = stats_of(a).invalidations_own;

	/* A writes: B is told, A ignores its own message */
	CHECK_EQ(t_do(a, msg(COH_SET, "shared", NULL, "1", 0), NULL), COH_OK);
	m = t_unsolicited(&b->sh[shard_of("shared")], COH_INVALIDATE, "shared", WAIT_MS);
	CHECK(m != NULL);
	if (m) {
		CHECK_EQ(m->shard, shard_of("shared"));
		CHECK_EQ(m->hash, hash_key("shared", 6));
		coh_msg_destroy(m);
	}
	uint64_t seen = WAIT_STAT(a, invalidations_own, > own);
	CHECK(seen > own);
	/* A bare-key marker on the same shard: anything for "shared" would be before it. */
	char marker[32];
	for (int i = 0;; i++) {
		snprintf(marker, sizeof(marker), "marker-%d", i);
		if (shard_of(marker) == shard_of("shared"))
			break;
	}
	cmd_ok("PUBLISH ringcache:invalidate %s", marker);
	struct tshard *as = &a->sh[shard_of("shared")];
	m = t_unsolicited(as, COH_INVALIDATE, marker, WAIT_MS);
	CHECK(m != NULL);
	coh_msg_destroy(m);
	CHECK(t_unsolicited(as, COH_INVALIDATE, "shared", 0) == NULL);

	/* an application publishes a bare key: every instance, the owning shard */
	const char *key = "user:42";
	unsigned owner = shard_of(key);
	cmd_ok("PUBLISH ringcache:invalidate %s", key);
	for (int i = 0; i < 2; i++) {
		struct tinst *t = i ? b : a;
		m = t_unsolicited(&t->sh[owner], COH_INVALIDATE, key, WAIT_MS);
		CHECK(m != NULL);
		if (m) {
			CHECK_EQ(m->shard, owner);
			CHECK(m->key_len == 7 && !memcmp(m->key, key, 7));
			coh_msg_destroy(m);
		}
	}
	/* framed by some other instance; and malformed */
	uint64_t badinv = stats_of(a).invalidations_bad;
	cmd_ok("PUBLISH ringcache:invalidate %b", "\0RCI1other-1\0k\0bin", (size_t)18);
	m = t_unsol(&a->sh[hash_shard(hash_key("k\0bin", 5), NSHARDS)],
		    COH_INVALIDATE, "k\0bin", 5, 0, WAIT_MS);
	CHECK(m && m->key_len == 5 && !memcmp(m->key, "k\0bin", 5));
	coh_msg_destroy(m);
	cmd_ok("PUBLISH ringcache:invalidate %b", "\0RCI1no-key", (size_t)11);
	uint64_t nb = WAIT_STAT(a, invalidations_bad, > badinv);
	CHECK_EQ(nb, badinv + 1);

	/* DEL on B invalidates A */
	CHECK_EQ(t_do(b, msg(COH_DEL, "shared", NULL, NULL, 0), NULL), COH_OK);
	m = t_unsolicited(&a->sh[shard_of("shared")], COH_INVALIDATE, "shared", WAIT_MS);
	CHECK(m != NULL);
	coh_msg_destroy(m);
}

struct burst {
	struct tinst *t;
	unsigned shard;
	unsigned n;
	const char *key;
	_Atomic unsigned submitted;
	unsigned ok, wrong;
};

static void *burst_thread(void *arg)
{
	struct burst *bu = arg;
	struct tshard *s = &bu->t->sh[bu->shard];
	size_t kl = strlen(bu->key);
	uint64_t h = hash_key(bu->key, kl);

	for (unsigned i = 0; i < bu->n; i++) {
		/* the origin shard is whoever asks; hash routing is the caller's business */
		struct coh_msg *m = coh_msg_create(COH_GET, bu->shard, h, bu->key, kl, NULL, 0, 0);
		t_submit(s, m);
	}
	coh_flush(s->c, s->id);
	atomic_store(&bu->submitted, bu->n);
	for (unsigned got = 0; got < bu->n;) {
		struct coh_msg *r = t_await(s, WAIT_MS);
		if (!r)
			break;
		if (r->op == COH_GET) {
			got++;
			if (r->status == COH_OK && r->value_len == 6 && !memcmp(r->value, "shared", 6))
				bu->ok++;
			else
				bu->wrong++;
		}
		coh_msg_destroy(r);
	}
	return NULL;
}

/* 75 GETs from two shards while Redis is paused: one Redis GET, 75 answers. */
static void test_coalescing(void)
{
	struct tinst t;
	struct coh_config cfg = { .timeout_ms = 5000, .ring_size = 128 };

	CHECK_EQ(t_create(&t, "coalesce", &cfg), 0);
	wait_up(&t);
	cmd_ok("SET ringcache:hot %b", "shared", (size_t)6);
	cmd_ok("CONFIG RESETSTAT");

	kill(redis_pid, SIGSTOP);
	struct burst b[2] = {
		{ .t = &t, .shard = 0, .n = 40, .key = "hot" },
		{ .t = &t, .shard = 1, .n = 35, .key = "hot" },
	};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, burst_thread, &b[i]);
	uint64_t gets = WAIT_STAT(&t, gets, >= 75);
	CHECK_EQ(gets, 75);
	kill(redis_pid, SIGCONT);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(b[0].ok + b[1].ok, 75);
	CHECK_EQ(b[0].wrong + b[1].wrong, 0);
	struct coh_stats s = stats_of(&t);
	CHECK_EQ(s.redis_gets, 1);
	CHECK_EQ(s.coalesced, 74);
	CHECK_EQ(get_calls(), 1);

	/* A write overtakes a read in flight: the reply must not be cached. */
	kill(redis_pid, SIGSTOP);
	struct coh_msg *g = msg(COH_GET, "hot", NULL, NULL, 0);
	struct tshard *sh = &t.sh[g->shard];
	t_submit(sh, g);
	coh_flush(t.c, sh->id);
	WAIT_STAT(&t, gets, >= 76);
	struct coh_msg *w = msg(COH_SET, "hot", NULL, "newer", 0);
	t_submit(sh, w);
	coh_flush(t.c, sh->id);
	WAIT_STAT(&t, sets, >= 1);
	kill(redis_pid, SIGCONT);
	struct coh_msg *r1 = t_await(sh, WAIT_MS), *r2 = t_await(sh, WAIT_MS);
	CHECK(r1 == g && r2 == w);
	if (r1 == g) {
		CHECK_EQ(r1->status, COH_OK);
		CHECK(r1->flags & COH_F_NOCACHE);
	}
	if (r2 == w)
		CHECK_EQ(r2->status, COH_OK);
	coh_msg_destroy(r1);
	coh_msg_destroy(r2);
	t_destroy(&t);
}

/* A shard that does not poll: replies wait in the backlog, none is lost. */
static void test_backlog(void)
{
	struct tinst t;
	struct coh_config cfg = { .ring_size = 2 };
	enum { N = 20 };

	CHECK_EQ(t_create(&t, "backlog", &cfg), 0);
	wait_up(&t);
	struct tshard *s = &t.sh[0];
	for (unsigned i = 0; i < N; i++) {
		char key[16];
		snprintf(key, sizeof(key), "bl%u", i);
		struct coh_msg *m = coh_msg_create(COH_GET, 0, hash_key(key, strlen(key)),
						   key, strlen(key), NULL, 0, 0);
		t_submit(s, m);
		coh_flush(t.c, 0);
	}
	uint64_t bl = WAIT_STAT(&t, backlog, >= N - 2);
	CHECK_EQ(bl, N - 2);
	unsigned got = 0;
	struct coh_msg *m;
	while (got < N && (m = t_await(s, WAIT_MS))) {
		if (m->op == COH_GET && m->status == COH_MISS)
			got++;
		coh_msg_destroy(m);
	}
	CHECK_EQ(got, N);
	bl = WAIT_STAT(&t, backlog, == 0);
	CHECK_EQ(bl, 0);
	t_destroy(&t);
}

/*
 * Invalidations published faster than the shards take them (here: shards
 * that do not poll): once COH_BACKLOG_UNSOL_MAX wait in the backlogs the
 * subscription is dropped, so the backlog stops there instead of growing
 * with the flood, and once it is back every shard gets a FLUSH.
 */
static void test_flood(void)
{
	struct tinst t;
	/* rings of 4096: the backlog moves into them a ring's worth at a time */
	struct coh_config cfg = { .ring_size = 4096 };
	enum { N = COH_BACKLOG_UNSOL_MAX + 3 * 4096 };

	CHECK_EQ(t_create(&t, "flood", &cfg), 0);
	wait_up(&t);
	uint32_t before = clock_store_now();
	uint64_t flushes = stats_of(&t).flushes;
	for (unsigned i = 0; i < N; i++)
		redisAppendCommand(direct, "PUBLISH ringcache:invalidate flood-%u", i);
	unsigned published = 0;
	for (unsigned i = 0; i < N; i++) {
		void *r = NULL;
		if (redisGetReply(direct, &r) == REDIS_OK && r)
			published++;
		if (r)
			freeReplyObject(r);
	}
	CHECK_EQ(published, N);
	/*
	 * The subscription is dropped at the bound (sub_overflows), or before
	 * it when the coherence thread reads so slowly (sanitizers) that its
	 * PING's answer, behind the flood, misses its period: either way the
	 * backlog stops growing and the shards are FLUSHed.
	 */
	uint64_t deadline = now_ms() + WAIT_MS;
	struct coh_stats st = stats_of(&t);
	while (!st.sub_overflows && st.flushes == flushes && now_ms() < deadline) {
		sleep_ms(5);
		st = stats_of(&t);
	}
	CHECK(st.sub_overflows == 1 || st.flushes > flushes);
	/*
	 * The bound holds the invalidations; the backlog figure also counts
	 * the FLUSH each recovery queues for every shard (these shards take
	 * nothing), and the thread may recover before this read.  The thread
	 * counts a flush before it publishes the backlog, so a later read of
	 * flushes covers every FLUSH st.backlog can hold.
	 */
	uint64_t recoveries = stats_of(&t).flushes - flushes;
	CHECK(st.backlog <= COH_BACKLOG_UNSOL_MAX + recoveries * NSHARDS);
	if (st.sub_overflows)   /* the message at the bound, at least, was dropped */
		CHECK(st.invalidations_received < N);

	/* the shards take what waits, then a FLUSH newer than the flood */
	for (unsigned s = 0; s < NSHARDS; s++) {
		bool flushed = false;
		struct coh_msg *m;
		while (!flushed && (m = t_await(&t.sh[s], WAIT_MS))) {
			flushed = m->op == COH_FLUSH && m->older_than > before;
			coh_msg_destroy(m);
		}
		CHECK(flushed);
	}
	CHECK(stats_of(&t).flushes >= flushes + 1);
	uint64_t bl = WAIT_STAT(&t, backlog, == 0);
	CHECK_EQ(bl, 0);
	/* subscribed again: an invalidation comes through */
	uint64_t sub = WAIT_STAT(&t, subscribed, == 1);
	CHECK_EQ(sub, 1);
	cmd_ok("PUBLISH ringcache:invalidate after-flood");
	struct coh_msg *m = t_unsolicited(&t.sh[shard_of("after-flood")], COH_INVALIDATE,
					  "after-flood", WAIT_MS);
	CHECK(m != NULL);
	coh_msg_destroy(m);
	t_destroy(&t);
}

static bool hexists(const char *field)
{
	return cmd_int("HEXISTS ringcache:instances %s", field) == 1;
}

static bool hexists_b(const char *field, size_t len)
{
	return cmd_int("HEXISTS ringcache:instances %b", field, len) == 1;
}

/*
 * A registry stuffed with 3000 dead entries: each heartbeat checks at most
 * 1024 of them (one EXISTS each), so a huge registry costs a bounded amount
 * of memory and commands per period; all of them are still reaped.
 */
static void test_registry_many(struct tinst *a, struct tinst *b)
{
	enum { N = 3000, PER_BEAT = 1024 };
	static char names[N][16];
	static const char *argv[2 + 2 * N];
	uint64_t reaped = stats_of(a).instances_reaped + stats_of(b).instances_reaped;

	argv[0] = "HSET";
	argv[1] = "ringcache:instances";
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "many-%d", i);
		argv[2 + 2 * i] = names[i];
		argv[3 + 2 * i] = "{}";
	}
	cmd_ok("CONFIG RESETSTAT");
	redisReply *r = redisCommandArgv(direct, 2 + 2 * N, argv, NULL);
	CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == N);
	if (r)
		freeReplyObject(r);
	for (int i = 0; i < WAIT_MS / 20 &&
			stats_of(a).instances_reaped + stats_of(b).instances_reaped < reaped + N;
	     i++)
		sleep_ms(20);
	CHECK_EQ(stats_of(a).instances_reaped + stats_of(b).instances_reaped, reaped + N);
	CHECK_EQ(cmd_int("HLEN ringcache:instances"), 2);
	long long hkeys = calls_of("hkeys"), exists = calls_of("exists");
	CHECK(hkeys > 0 && exists >= N && exists <= hkeys * PER_BEAT);
}

/*
 * Registry fields are bytes: one with a NUL inside and no heartbeat key is
 * reaped (the HDEL names the whole field, not the part before the NUL), and
 * one with a NUL whose heartbeat key exists stays and is listed.
 */
static void test_registry_binary_ids(struct tinst *a, struct tinst *b)
{
	static const char dead[] = "dead\0tail", dead0[] = "\0lead", alive[] = "al\0ive";
	static const char alive_key[] = "ringcache:instance:al\0ive";
	uint64_t reaped = stats_of(a).instances_reaped + stats_of(b).instances_reaped;

	cmd_ok("HSET ringcache:instances dead %s", "{\"id\":\"dead\"}");   /* the truncated name */
	cmd_ok("HSET ringcache:instances %b %s", dead, sizeof(dead) - 1, "{\"id\":\"d\"}");
	cmd_ok("HSET ringcache:instances %b %s", dead0, sizeof(dead0) - 1, "{\"id\":\"d0\"}");
	cmd_ok("SET %b x PX 60000", alive_key, sizeof(alive_key) - 1);
	cmd_ok("HSET ringcache:instances %b %s", alive, sizeof(alive) - 1, "{\"id\":\"al-ive\"}");
	for (int i = 0; i < WAIT_MS / 20 &&
			(hexists_b(dead, sizeof(dead) - 1) || hexists_b(dead0, sizeof(dead0) - 1) ||
			 hexists("dead") ||
			 stats_of(a).instances_reaped + stats_of(b).instances_reaped < reaped + 3);
	     i++)
		sleep_ms(20);
	CHECK(!hexists_b(dead, sizeof(dead) - 1));
	CHECK(!hexists_b(dead0, sizeof(dead0) - 1));
	CHECK(!hexists("dead"));
	CHECK_EQ(stats_of(a).instances_reaped + stats_of(b).instances_reaped, reaped + 3);
	CHECK(hexists_b(alive, sizeof(alive) - 1));

	struct coh_msg *m;
	CHECK_EQ(t_do(a, msg(COH_CLUSTER, NULL, NULL, NULL, 0), &m), COH_OK);
	if (m) {
		CHECK(coh_json_object_valid(m->value, m->value_len));
		CHECK(memmem(m->value, m->value_len, "\"al-ive\"", 8) != NULL);
		/* sorted by field bytes: "al\0ive" < "inst-a" */
		const char *x = memmem(m->value, m->value_len, "\"al-ive\"", 8);
		const char *y = memmem(m->value, m->value_len, "\"id\":\"inst-a\"", 13);
		CHECK(x && y && x < y);
		coh_msg_destroy(m);
	}
	cmd_ok("DEL %b", alive_key, sizeof(alive_key) - 1);
	cmd_ok("HDEL ringcache:instances %b", alive, sizeof(alive) - 1);
}

static void test_registry(struct tinst *a, struct tinst *b)
{
	redisReply *r = cmd("HGET ringcache:instances inst-a");
	CHECK(r && r->type == REDIS_REPLY_STRING);
	if (r && r->type == REDIS_REPLY_STRING) {
		CHECK(strstr(r->str, "\"id\":\"inst-a\"") != NULL);
		CHECK(strstr(r->str, "\"address\":\"127.0.0.1:1234\"") != NULL);
		CHECK(strstr(r->str, "\"version\":\"") != NULL);
		CHECK(strstr(r->str, "\"started\":") != NULL);
		CHECK(coh_json_object_valid(r->str, r->len));
	}
	if (r)
		freeReplyObject(r);
	long long pttl = cmd_int("PTTL ringcache:instance:inst-a");
	CHECK(pttl > 0);

	/* every name the registry wrote is reserved as a cache key, so a PUT cannot reach it */
	r = cmd("KEYS ringcache:*");
	unsigned names = 0;
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *k = r->element[i];
		const size_t pl = strlen("ringcache:");
		bool registry = k->len > pl && (!strcmp(k->str + pl, "instances") ||
						!strncmp(k->str + pl, "instance:inst-", 14));
		CHECK_EQ(coh_key_reserved(a->c, k->str + pl, k->len - pl), registry);
		names += registry;
	}
	CHECK_EQ(names, 3);    /* the hash and the heartbeats of inst-a and inst-b */
	if (r)
		freeReplyObject(r);

	/* a dead instance (no heartbeat) is reaped; one with a heartbeat stays */
	uint64_t reaped = stats_of(a).instances_reaped + stats_of(b).instances_reaped;
	cmd_ok("SET ringcache:instance:alive-1 x PX 60000");
	cmd_ok("HSET ringcache:instances alive-1 %s", "{\"id\":\"alive-1\"}");
	cmd_ok("HSET ringcache:instances dead-1 %s", "{\"id\":\"dead-1\"}");
	cmd_ok("HSET ringcache:instances junk %s", "not json");
	/* the thread counts a reap when HDEL's reply is read, after Redis applied it */
	for (int i = 0; i < WAIT_MS / 20 &&
			(hexists("dead-1") || hexists("junk") ||
			 stats_of(a).instances_reaped + stats_of(b).instances_reaped < reaped + 2);
	     i++)
		sleep_ms(20);
	/* either instance may have reaped them */
	CHECK_EQ(stats_of(a).instances_reaped + stats_of(b).instances_reaped, reaped + 2);
	CHECK(!hexists("dead-1"));
	CHECK(!hexists("junk"));
	CHECK(hexists("alive-1"));
	CHECK(hexists("inst-a"));

	/* GET /cluster */
	cmd_ok("HSET ringcache:instances junk2 %s", "{broken");
	cmd_ok("SET ringcache:instance:junk2 x PX 60000");
	cmd_ok("HSET ringcache:instances junk3 %s", "{\"id\":\"not-\xff-utf8\"}");
	cmd_ok("SET ringcache:instance:junk3 x PX 60000");
	uint64_t bad = stats_of(a).bad_data;
	struct coh_msg *m;
	CHECK_EQ(t_do(a, msg(COH_CLUSTER, NULL, NULL, NULL, 0), &m), COH_OK);
	if (m) {
		CHECK(coh_json_object_valid(m->value, m->value_len));
		char *s = strndup(m->value, m->value_len);
		CHECK(strstr(s, "\"self\":\"inst-a\"") != NULL);
		CHECK(strstr(s, "\"id\":\"inst-a\"") != NULL);
		CHECK(strstr(s, "\"id\":\"inst-b\"") != NULL);
		CHECK(strstr(s, "\"id\":\"alive-1\"") != NULL);
		CHECK(strstr(s, "broken") == NULL);
		CHECK(strstr(s, "not-") == NULL);
		/* sorted by id */
		CHECK(strstr(s, "alive-1") < strstr(s, "\"id\":\"inst-a\""));
		free(s);
		coh_msg_destroy(m);
	}
	CHECK_EQ(stats_of(a).bad_data, bad + 2);
	cmd_ok("DEL ringcache:instance:alive-1 ringcache:instance:junk2 ringcache:instance:junk3");
	cmd_ok("HDEL ringcache:instances alive-1 junk2 junk3");
}

/* AUTH user password and SELECT from the URL; a wrong password never comes up. */
static void test_auth_select(void)
{
	struct tinst t;
	struct coh_config cfg = { .prefix = "authtest:", .backoff_max_ms = 100 };
	char good[128];
	char saved[64];

	cmd_ok("ACL SETUSER bob on >s3cr%%t ~* &* +@all");
	strcpy(saved, url);
	snprintf(good, sizeof(good), "redis://bob:s3cr%%25t@127.0.0.1:%d/2", redis_port);
	strcpy(url, good);
	CHECK_EQ(t_create(&t, "auth-ok", &cfg), 0);
	wait_up(&t);
	CHECK_EQ(t_do(&t, msg(COH_SET, "k", NULL, "v", 0), NULL), COH_OK);
	CHECK_EQ(cmd_int("EXISTS authtest:k"), 0);
	cmd_ok("SELECT 2");
	CHECK_EQ(cmd_int("EXISTS authtest:k"), 1);
	cmd_ok("SELECT 0");
	/* a shard's read connection authenticates and selects the same way */
	struct trd rd;
	int rc, err = 0;
	trd_init(&rd, t.c, 0);
	CHECK(trd_up(&rd, WAIT_MS, NULL));
	struct coh_msg *r = trd_get(&rd, "k", &rc);
	CHECK(r && r->status == COH_OK && r->value_len == 1 && r->value[0] == 'v');
	coh_msg_destroy(r);
	/* once the password stops working, its handshake is refused (retried) */
	cmd_ok("ACL SETUSER bob resetpass >changed");
	trd_drop(&rd);
	uint64_t failures = stats_of(&t).connect_failures;
	CHECK(!trd_up(&rd, 1000, &err));
	CHECK_EQ(err, -EACCES);
	CHECK(stats_of(&t).connect_failures > failures);
	trd_deinit(&rd);
	t_destroy(&t);

	snprintf(url, sizeof(url), "redis://bob:wrong@127.0.0.1:%d", redis_port);
	CHECK_EQ(t_create(&t, "auth-bad", &cfg), 0);
	uint64_t fails = WAIT_STAT(&t, connect_failures, >= 4);
	CHECK(fails >= 4);
	CHECK_EQ(stats_of(&t).breaker_open, 1);
	CHECK_EQ(t_do(&t, msg(COH_GET, "k", NULL, NULL, 0), NULL), COH_SKIPPED);
	t_destroy(&t);
	strcpy(url, saved);
	cmd_ok("ACL DELUSER bob");
}

/* Redis hangs: deadlines, the breaker, fail-fast, then FLUSH and replay. */
static void test_sigstop(struct tinst *a)
{
	struct coh_msg *r;
	uint32_t before = clock_store_now();
	uint64_t opens = stats_of(a).breaker_opens;

	CHECK_EQ(t_do(a, msg(COH_SET, "gone", NULL, "x", 0), NULL), COH_OK);
	t_drop_unsolicited(&a->sh[0]);
	t_drop_unsolicited(&a->sh[1]);

	kill(redis_pid, SIGSTOP);
	/* breaker_failures is 3: three timeouts open it */
	for (int i = 0; i < 3; i++) {
		char key[16];
		snprintf(key, sizeof(key), "slow%d", i);
		int st = t_do(a, msg(COH_GET, key, NULL, NULL, 0), NULL);
		CHECK(st == COH_TIMEOUT || st == COH_SKIPPED);
	}
	uint64_t open = WAIT_STAT(a, breaker_open, == 1);
	CHECK_EQ(open, 1);
	CHECK(stats_of(a).breaker_opens > opens);
	CHECK(stats_of(a).timeouts >= 1);
	CHECK_EQ(t_do(a, msg(COH_GET, "k2", NULL, NULL, 0), NULL), COH_SKIPPED);

	/* writes while open: SKIPPED and queued (the later write of a key wins) */
	CHECK_EQ(t_do(a, msg(COH_SET, "during", "text/x", "first", 0), NULL), COH_SKIPPED);
	CHECK_EQ(t_do(a, msg(COH_SET, "during", "text/x", "second", 0), NULL), COH_SKIPPED);
	CHECK_EQ(t_do(a, msg(COH_DEL, "gone", NULL, NULL, 0), NULL), COH_SKIPPED);
	CHECK_EQ(stats_of(a).replay_pending, 2);
	/* more than the replay window (256): replayed a window at a time,
	 * each answer letting the next write go.  Not many more: each replayed
	 * write's PUBLISH reaches B's shards, which nobody reads until
	 * test_restart, and a test shard stashes at most 256 unsolicited
	 * messages (t_stash), past which B's FLUSH there would be dropped. */
	enum { WIDE = 300 };
	for (int i = 0; i < WIDE; i++) {
		char key[16];
		snprintf(key, sizeof(key), "w%d", i);
		CHECK_EQ(t_do(a, msg(COH_SET, key, "text/x", "v", 0), NULL), COH_SKIPPED);
	}
	CHECK_EQ(stats_of(a).replay_pending, 2 + WIDE);

	/* the subscription's PING goes unanswered: it counts as lost */
	uint64_t sub = WAIT_STAT(a, subscribed, == 0);
	CHECK_EQ(sub, 0);
	uint64_t flushes = stats_of(a).flushes;
	kill(redis_pid, SIGCONT);

	for (unsigned s = 0; s < NSHARDS; s++) {
		r = t_unsol(&a->sh[s], COH_FLUSH, NULL, 0, before, WAIT_MS);
		CHECK(r != NULL);
		if (r) {
			CHECK_EQ(r->shard, s);
			CHECK(r->older_than > before);
			coh_msg_destroy(r);
		}
	}
	CHECK_EQ(stats_of(a).flushes, flushes + 1);
	uint64_t replayed = WAIT_STAT(a, replayed, >= 2 + WIDE);
	CHECK(replayed >= 2 + WIDE);
	wait_up(a);
	/* `replayed` counts writes sent, not answered: the GET's round trip on
	 * the same connection comes back only after Redis has run them all */
	CHECK_EQ(t_do(a, msg(COH_GET, "during", NULL, NULL, 0), &r), COH_OK);
	if (r) {
		CHECK(r->value_len == 6 && !memcmp(r->value, "second", 6));
		CHECK(r->ctype_len == 6 && !memcmp(r->ctype, "text/x", 6));
		coh_msg_destroy(r);
	}
	CHECK_EQ(cmd_int("EXISTS ringcache:w0"), 1);
	CHECK_EQ(cmd_int("EXISTS ringcache:w%d", WIDE - 1), 1);
	CHECK_EQ(cmd_int("EXISTS ringcache:gone"), 0);
	CHECK_EQ(stats_of(a).replay_pending, 0);
}

/* Redis dies and comes back empty on the same port. */
static void test_restart(struct tinst *a, struct tinst *b)
{
	struct coh_msg *r;

	/* B too must be up: a FLUSH it still owes for the SIGSTOP would carry that older loss */
	wait_up(b);
	uint32_t before = clock_store_now();

	t_drop_unsolicited(&a->sh[0]);
	t_drop_unsolicited(&a->sh[1]);
	t_drop_unsolicited(&b->sh[0]);
	t_drop_unsolicited(&b->sh[1]);
	redis_kill();
	uint64_t open = WAIT_STAT(a, breaker_open, == 1);
	CHECK_EQ(open, 1);
	CHECK_EQ(t_do(a, msg(COH_GET, "k2", NULL, NULL, 0), NULL), COH_SKIPPED);
	CHECK_EQ(t_do(a, msg(COH_SET, "after", NULL, "v", 0), NULL), COH_SKIPPED);

	CHECK_EQ(redis_start(), 0);
	direct_reconnect();
	for (unsigned s = 0; s < NSHARDS; s++) {
		r = t_unsol(&a->sh[s], COH_FLUSH, NULL, 0, before, WAIT_MS);
		CHECK(r && r->older_than > before);
		coh_msg_destroy(r);
		r = t_unsol(&b->sh[s], COH_FLUSH, NULL, 0, before, WAIT_MS);
		CHECK(r != NULL);
		coh_msg_destroy(r);
	}
	wait_up(a);
	wait_up(b);
	CHECK_EQ(t_do(a, msg(COH_GET, "after", NULL, NULL, 0), &r), COH_OK);
	if (r) {
		CHECK(r->value_len == 1 && r->value[0] == 'v');
		coh_msg_destroy(r);
	}
	/* the registry is rebuilt by the heartbeats */
	for (int i = 0; i < 200 && !(hexists("inst-a") && hexists("inst-b")); i++)
		sleep_ms(20);
	CHECK(hexists("inst-a") && hexists("inst-b"));
	/* and B sees A's writes again */
	CHECK_EQ(t_do(a, msg(COH_SET, "after", NULL, "w", 0), NULL), COH_OK);
	r = t_unsolicited(&b->sh[shard_of("after")], COH_INVALIDATE, "after", WAIT_MS);
	CHECK(r != NULL);
	coh_msg_destroy(r);
}

int main(void)
{
	struct tinst a, b;

	setvbuf(stdout, NULL, _IONBF, 0);
	test_formats();
	test_conn_limits();
	test_read_hostile();

	redis_port = free_port();
	if (redis_port <= 0 || redis_start() != 0) {
		fprintf(stderr, "test_coherence: cannot start redis-server, skipping the L2 tests\n");
		redis_kill();
		check_done("coherence");
		return check_failed ? 1 : 77;
	}
	atexit(redis_kill);
	direct = redis_connect();
	CHECK(direct != NULL);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", redis_port);

	/* before instances A and B exist: these pause Redis on their own */
	test_coalescing();
	test_backlog();
	test_flood();

	/* heartbeat 300 ms: the subscription is declared lost 300-600 ms into a
	 * hang, long after the 50 ms deadline of a GET sent at its start */
	struct coh_config ca = { .heartbeat_ms = 300, .heartbeat_ttl_ms = 900,
				 .breaker_failures = 3, .connect_timeout_ms = 200,
				 .backoff_max_ms = 200 };
	struct coh_config cb = ca;
	CHECK_EQ(t_create(&a, "inst-a", &ca), 0);
	CHECK_EQ(t_create(&b, "inst-b", &cb), 0);
	wait_up(&a);
	wait_up(&b);

	test_write_through_and_reads(&a);
	test_read_conn(&a);
	test_read_nocache(&a, &b);
	test_invalidation(&a, &b);
	test_registry(&a, &b);
	test_registry_binary_ids(&a, &b);
	test_registry_many(&a, &b);
	test_auth_select();
	test_read_unsettled();
	test_read_timeouts(&a);
	test_sigstop(&a);
	test_restart(&a, &b);

	/* clean shutdown removes the instance's entry */
	t_destroy(&b);
	CHECK(!hexists("inst-b"));
	CHECK_EQ(cmd_int("EXISTS ringcache:instance:inst-b"), 0);
	t_destroy(&a);
	CHECK(!hexists("inst-a"));

	redisFree(direct);
	redis_kill();
	return check_done("coherence");
}
