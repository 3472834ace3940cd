/*
 * cmd.c - the RESP front end on a connection (cmd.h): the parse step, the
 * command table, arguments and their errors, and the commands that touch no
 * key (PING, ECHO, HELLO, AUTH, CLIENT, INFO, COMMAND, SELECT, QUIT).
 *
 * Errors follow Redis 7.0's order and words (server.c processCommand, then
 * each command's own checks): an unknown command or subcommand, then the
 * arity, then authentication (NOAUTH), then the command's arguments.  The
 * table is the only list of commands: dispatch, COMMAND, COMMAND COUNT,
 * COMMAND DOCS and COMMAND LIST all read it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "conn.h"
#include "fwd.h"
#include "keys.h"
#include "shard.h"
#include "ringcache/auth.h"
#include "ringcache/clock.h"
#include "ringcache/coherence.h"
#include "ringcache/hash.h"
#include "ringcache/stats.h"
#include "ringcache/store.h"
#include "ringcache_version.h"

#define ARGV_MAX 16             /* arguments a command sees at once */
#define NAME_MAX_LEN 1024       /* CLIENT SETNAME */
#define REDIS_COMPAT_VERSION "7.0.0"

/* What a command of many keys is doing while its keys are sent. */
enum { BUSY_NONE = 0, BUSY_MGET, BUSY_DEL, BUSY_EXISTS, BUSY_MSET };

static const char err_syntax[] = "ERR syntax error";
static const char err_not_int[] = "ERR value is not an integer or out of range";
static const char err_noauth[] = "NOAUTH Authentication required.";
static const char err_wrongpass[] = "WRONGPASS invalid username-password pair or user is disabled.";

struct cmd_args {
	struct conn *c;
	const struct resp_cmd *cmd;
	const struct command *def;
	uint32_t argc;
	bool paused;                    /* its keys are still being sent */
	struct resp_str v[ARGV_MAX];    /* the first ARGV_MAX arguments; v[i] is
					 * set only for i < argc */
};

enum cmd_flags {
	F_NOAUTH = 1 << 0,      /* allowed before AUTH */
	F_WRITE = 1 << 1,
	F_READONLY = 1 << 2,
	F_FAST = 1 << 3,
};

struct command {
	const char *name;       /* as Redis's fullname: lower case, "parent|sub" */
	int arity;              /* Redis's: N exactly, -N at least N */
	uint8_t flags;
	int8_t first, last, step;       /* key positions (COMMAND) */
	void (*run)(struct cmd_args *a);
	const struct command *subs;     /* a container's subcommands */
	const char *group, *summary;
};

/* --- answers ------------------------------------------------------------- */

static struct pipeline_req answer_to(const struct conn *c)
{
	struct pipeline_req q = {
		.to = { .proto = PROTO_RESP,
			.resp = { .proto = c->resp->proto, .form = RESP_FORM_REPLY } },
	};
	return q;
}

static void answer(struct cmd_args *a, struct reply *r)
{
	struct pipeline_req q = answer_to(a->c);

	conn_answer(a->c, r, &q);
}

static void answer_kind(struct cmd_args *a, enum reply_kind kind, const void *body, size_t n,
			int64_t num)
{
	struct reply r;

	reply_status(&r, kind == REPLY_ERROR ? 400 : 200, NULL);
	r.kind = (uint8_t)kind;
	r.body = body;
	r.body_len = n;
	r.num = num;
	answer(a, &r);
}

static void answer_error(struct cmd_args *a, const char *text)
{
	answer_kind(a, REPLY_ERROR, text, strlen(text), 0);
}

static void __attribute__((format(printf, 2, 3))) answer_errorf(struct cmd_args *a,
								 const char *fmt, ...)
{
	char text[640];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	answer_kind(a, REPLY_ERROR, text, n < 0 ? 0 : (size_t)n < sizeof(text) ? (size_t)n :
				      sizeof(text) - 1, 0);
}

static void answer_int(struct cmd_args *a, int64_t v)
{
	answer_kind(a, REPLY_INT, NULL, 0, v);
}

static void answer_ok(struct cmd_args *a)
{
	answer_kind(a, REPLY_OK, NULL, 0, 0);
}

static void answer_bulk(struct cmd_args *a, const void *p, size_t n)
{
	answer_kind(a, REPLY_BULK, p, n, 0);
}

/* Bytes already in the protocol; b is freed. */
static void answer_raw(struct cmd_args *a, struct buf *b, int rc)
{
	if (rc)
		conn_abort(a->c);
	else
		answer_kind(a, REPLY_RAW, b->data, b->len, 0);
	buf_deinit(b);
}

void cmd_protocol_error(struct conn *c, const char *text)
{
	struct pipeline_req q = answer_to(c);
	struct reply r;
	char line[128];
	int n = snprintf(line, sizeof(line), "ERR %s", text);

	reply_status(&r, 400, NULL);
	r.kind = REPLY_ERROR;
	r.body = line;
	r.body_len = n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	r.close = true;
	conn_answer(c, &r, &q);
}

/* --- arguments ------------------------------------------------------------------ */

/* s equals the lowercase name lit[0..n) in any case: command names and
 * options are short, and strncasecmp()'s locale-aware setup cost more
 * than the compare (a GET's lookup). */
static bool eq_lower(const char *s, const char *lit, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((unsigned)(ch - 'A') < 26u)
			ch |= 0x20;
		if (ch != (unsigned char)lit[i])
			return false;
	}
	return true;
}

static bool is(struct resp_str s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && eq_lower(s.p, lit, n);
}

/* How Redis prints an argument with %s: up to its first NUL. */
static int cstr_len(struct resp_str s, int max)
{
	const char *nul = memchr(s.p, '\0', s.len);
	size_t n = nul ? (size_t)(nul - s.p) : s.len;

	return n < (size_t)max ? (int)n : max;
}

static bool arg_i64(struct resp_str s, int64_t *v)
{
	return resp_parse_i64(s.p, s.len, v);
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *scratch_of(const struct conn *c)
{
	return c->sh->resp_scratch;
}

/*
 * A command's arguments in order from one of them: from v[] while they are
 * there, then read from the frame (a list of options past ARGV_MAX).
 */
struct arg_walk {
	struct cmd_args *a;
	uint32_t i;             /* the next argument's index */
	struct resp_iter it;    /* past ARGV_MAX: where the frame is read */
};

static struct arg_walk walk_from(struct cmd_args *a, uint32_t from)
{
	struct arg_walk w = { .a = a, .i = from };

	return w;
}

static inline bool walk_next(struct arg_walk *w, struct resp_str *o)
{
	struct cmd_args *a = w->a;

	if (w->i >= a->argc)
		return false;
	if (w->i < ARGV_MAX) {
		*o = a->v[w->i++];
		return true;
	}
	if (w->it.index == 0)   /* the first past v[]: the frame is read up to it */
		while (w->it.index < w->i && resp_next(a->cmd, &w->it, o, scratch_of(a->c)))
			;
	w->i++;
	return resp_next(a->cmd, &w->it, o, scratch_of(a->c));
}

/* --- keys --------------------------------------------------------------------------- */

/* NULL when k can be a key here, else the error that says why not. */
static const char *key_refused(const struct shard *sh, struct resp_str k)
{
	if (k.len == 0 || k.len > STORE_KEY_MAX)
		return "ERR key length out of range: ringcached keys are 1 to 1024 bytes";
	/* coh_key_reserved() covers the tag sets too (issue 9): say so, as
	 * HTTP's 400 does, so a refused tag:... key is not a puzzle */
	if (coh_key_reserved(sh->srv->coh, k.p, k.len))
		return "ERR key reserved for ringcached's own use in Redis (registry, fill leases, "
		       "tag sets)";
	return NULL;
}

/* key_req() sets every field by name, as serve_cache() does (cache.h): a
 * field added to either struct must be set there too.  Their sizes (LP64)
 * stop the build here when one is added, unless it fits in padding. */
_Static_assert(sizeof(struct cache_req) == 168 && sizeof(struct keys_req) == 200,
	       "a field added to cache_req or keys_req: set it in key_req()");

static void key_req(struct keys_req *k, struct resp_str key, uint8_t op, uint8_t form)
{
	static const struct http_str none = { NULL, 0 };

	/* field by field, none zeroed first: a memset of the whole request
	 * cost a GET more than the fields */
	k->req.op = op;
	k->req.stale_ok = false;        /* RESP: past its TTL a key is gone */
	k->req.fill_lease = false;
	k->req.key_len = (uint32_t)key.len;
	k->req.key = (const uint8_t *)key.p;
	k->req.hash = hash_key(key.p, key.len);
	k->req.body = NULL;
	k->req.body_len = 0;
	k->req.ext_len = 0;
	k->req.ttl = -1;
	k->req.swr = 0;
	k->req.sie = 0;
	k->req.ext = NULL;
	k->req.tags = none;
	k->req.content_type = none;
	k->req.accept_encoding = none;
	k->req.if_none_match = none;
	k->req.cache_control = none;
	k->req.lease_token = none;
	k->kv.op = 0;
	k->kv.flags = 0;
	k->kv.num = 0;
	k->kv.at_ms = 0;
	k->form = form;
	k->uncounted = false;
	k->value_answer = false;
}

/* A one-key command on a[1]; false when the key was refused (answered). */
static bool one_key(struct cmd_args *a, struct keys_req *k, uint8_t op, uint8_t form)
{
	const char *why = key_refused(a->c->sh, a->v[1]);

	if (why) {
		answer_error(a, why);
		return false;
	}
	key_req(k, a->v[1], op, form);
	return true;
}

static void kv_command(struct cmd_args *a, uint8_t kvop, uint8_t form, bool value_answer)
{
	struct keys_req k;

	if (!one_key(a, &k, CACHE_GET, form))
		return;
	k.kv.op = kvop;
	k.value_answer = value_answer;
	keys_single(a->c, &k);
}

static void cmd_get(struct cmd_args *a)
{
	struct keys_req k;

	if (one_key(a, &k, CACHE_GET, RESP_FORM_VALUE))
		keys_single(a->c, &k);
}

static void cmd_strlen(struct cmd_args *a)
{
	struct keys_req k;

	if (one_key(a, &k, CACHE_GET, RESP_FORM_STRLEN))
		keys_single(a->c, &k);
}

static void cmd_ttl(struct cmd_args *a)
{
	struct keys_req k;

	if (one_key(a, &k, CACHE_GET, is(a->v[0], "pttl") ? RESP_FORM_PTTL : RESP_FORM_TTL))
		keys_single(a->c, &k);
}

/*
 * An expiry argument of SET or GETEX, as getExpireMillisecondsOrReply():
 * EX/PX relative, EXAT/PXAT absolute.  NULL and *at, or the error (in buf).
 */
static const char *expiry_arg(struct resp_str v, bool seconds, bool relative, const char *cmd,
			      int64_t *at, char *buf, size_t n)
{
	int64_t ms;

	if (!arg_i64(v, &ms))
		return err_not_int;
	if (ms <= 0 || (seconds && ms > INT64_MAX / 1000))
		goto bad;
	if (seconds)
		ms *= 1000;
	if (relative) {
		int64_t now = (int64_t)wall_ms();
		if (ms > INT64_MAX - now)
			goto bad;
		ms += now;
	}
	*at = ms;
	return NULL;
bad:
	snprintf(buf, n, "ERR invalid expire time in '%s' command", cmd);
	return buf;
}

/*
 * SET's and GETEX's options, as parseExtendedStringArgumentsOrReply():
 * each allowed once its conflicting ones are absent, else a syntax error.
 * Returns the flags, or -1 (answered).  *exp is the expiry's argument.
 */
enum { O_NX = 1, O_XX = 2, O_GET = 4, O_KEEPTTL = 8, O_PERSIST = 16, O_EX = 32, O_PX = 64,
       O_EXAT = 128, O_PXAT = 256 };
#define O_EXPIRY (O_EX | O_PX | O_EXAT | O_PXAT)

static int string_options(struct cmd_args *a, bool set, struct resp_str *exp)
{
	struct arg_walk w = walk_from(a, set ? 3 : 2);
	struct resp_str o, next;
	int f = 0;

	while (walk_next(&w, &o)) {
		bool more = w.i < a->argc;
		if (is(o, "nx") && !(f & O_XX) && set) {
			f |= O_NX;
		} else if (is(o, "xx") && !(f & O_NX) && set) {
			f |= O_XX;
		} else if (is(o, "get") && set) {
			f |= O_GET;
		} else if (is(o, "keepttl") && !(f & (O_PERSIST | O_EXPIRY)) && set) {
			f |= O_KEEPTTL;
		} else if (is(o, "persist") && !set && !(f & (O_EXPIRY | O_KEEPTTL))) {
			f |= O_PERSIST;
		} else if (more && ((is(o, "ex") && !(f & (O_KEEPTTL | O_PERSIST | O_EXAT | O_PX | O_PXAT))) ||
				    (is(o, "px") && !(f & (O_KEEPTTL | O_PERSIST | O_EX | O_EXAT | O_PXAT))) ||
				    (is(o, "exat") && !(f & (O_KEEPTTL | O_PERSIST | O_EX | O_PX | O_PXAT))) ||
				    (is(o, "pxat") && !(f & (O_KEEPTTL | O_PERSIST | O_EX | O_EXAT | O_PX))))) {
			f |= is(o, "ex") ? O_EX : is(o, "px") ? O_PX : is(o, "exat") ? O_EXAT : O_PXAT;
			walk_next(&w, &next);
			*exp = next;
		} else {
			answer_error(a, err_syntax);
			return -1;
		}
	}
	return f;
}

static void cmd_set(struct cmd_args *a)
{
	struct resp_str exp = { 0 };
	struct keys_req k;
	char buf[64];
	int64_t at = 0;
	/* a plain SET has no options: not called for none */
	int f = a->argc > 3 ? string_options(a, true, &exp) : 0;

	if (f < 0)
		return;
	if (f & O_EXPIRY) {
		const char *err = expiry_arg(exp, f & (O_EX | O_EXAT), f & (O_EX | O_PX), "set", &at,
					     buf, sizeof(buf));
		if (err) {
			answer_error(a, err);
			return;
		}
	}
	struct resp_str val = a->v[2];
	if (!one_key(a, &k, CACHE_PUT, RESP_FORM_REPLY))
		return;
	k.req.body = (const uint8_t *)val.p;
	k.req.body_len = (uint32_t)val.len;
	if (val.len > UINT32_MAX) {
		answer_error(a, "ERR value too large");
		return;
	}
	if ((f & (O_NX | O_XX | O_GET | O_KEEPTTL | O_EXAT | O_PXAT)) == 0) {
		/* a plain write: the executor's PUT, written through as one */
		if (f & (O_EX | O_PX)) {
			int64_t left = at - (int64_t)wall_ms();
			k.req.ttl = left <= 0 ? 1 : (left + 999) / 1000;
		}
		keys_single(a->c, &k);
		return;
	}
	k.kv.op = CACHE_KV_SET;
	k.kv.flags = (uint8_t)(((f & O_NX) ? CACHE_KV_NX : 0) | ((f & O_XX) ? CACHE_KV_XX : 0) |
			       ((f & O_GET) ? CACHE_KV_GET : 0) |
			       ((f & O_KEEPTTL) ? CACHE_KV_KEEPTTL : 0) |
			       ((f & O_EXPIRY) ? CACHE_KV_EXPIRY : 0));
	k.kv.at_ms = at;
	k.value_answer = f & O_GET;
	keys_single(a->c, &k);
}

static void cmd_getex(struct cmd_args *a)
{
	struct resp_str exp = { 0 };
	struct keys_req k;
	char buf[64];
	int64_t at = 0;
	int f = string_options(a, false, &exp);
	const char *err = NULL;

	if (f < 0)
		return;
	if (f & O_EXPIRY)
		err = expiry_arg(exp, f & (O_EX | O_EXAT), f & (O_EX | O_PX), "getex", &at, buf,
				 sizeof(buf));
	if (err) {
		/* Redis looks the key up first: a missing key is nil, whatever
		 * the expiry says.  The error waits for the owner's lookup. */
		if (!one_key(a, &k, CACHE_GET, RESP_FORM_REPLY))
			return;
		k.kv.op = CACHE_KV_GETEX;
		k.kv.flags = CACHE_KV_EXPIRY;
		k.kv.at_ms = err == err_not_int ? CACHE_KV_AT_NOT_INT : CACHE_KV_AT_INVALID;
		k.value_answer = true;
		keys_single(a->c, &k);
		return;
	}
	if (!one_key(a, &k, CACHE_GET, RESP_FORM_REPLY))
		return;
	k.kv.op = CACHE_KV_GETEX;
	k.kv.flags = (uint8_t)(((f & O_PERSIST) ? CACHE_KV_PERSIST_F : 0) |
			       ((f & O_EXPIRY) ? CACHE_KV_EXPIRY : 0));
	k.kv.at_ms = at;
	k.value_answer = true;
	keys_single(a->c, &k);
}

static void cmd_getdel(struct cmd_args *a)
{
	kv_command(a, CACHE_KV_GETDEL, RESP_FORM_REPLY, true);
}

static void cmd_persist(struct cmd_args *a)
{
	kv_command(a, CACHE_KV_PERSIST, RESP_FORM_REPLY, false);
}

static void cmd_incr(struct cmd_args *a)
{
	struct keys_req k;
	int64_t by = 1;
	bool decr = a->v[0].len >= 4 && strncasecmp(a->v[0].p, "decr", 4) == 0;

	if (a->argc == 3) {
		if (!arg_i64(a->v[2], &by)) {
			answer_error(a, err_not_int);
			return;
		}
		if (decr && by == INT64_MIN) {
			answer_error(a, "ERR decrement would overflow");
			return;
		}
	}
	if (!one_key(a, &k, CACHE_GET, RESP_FORM_REPLY))
		return;
	k.kv.op = CACHE_KV_INCRBY;
	k.kv.num = decr ? -by : by;
	keys_single(a->c, &k);
}

static void cmd_append(struct cmd_args *a)
{
	struct keys_req k;

	if (!one_key(a, &k, CACHE_GET, RESP_FORM_REPLY))
		return;
	k.kv.op = CACHE_KV_APPEND;
	k.req.body = (const uint8_t *)a->v[2].p;
	k.req.body_len = (uint32_t)a->v[2].len;
	keys_single(a->c, &k);
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (expireGenericCommand). */
static void cmd_expire(struct cmd_args *a)
{
	struct resp_str name = a->v[0];
	bool seconds = !(name.len && (name.p[0] == 'p' || name.p[0] == 'P'));
	bool relative = !(name.len > 2 && (name.p[name.len - 1] == 't' || name.p[name.len - 1] == 'T'));
	int nx = 0, xx = 0, gt = 0, lt = 0;
	uint8_t flags = 0;
	struct arg_walk w = walk_from(a, 3);
	struct resp_str o;

	while (walk_next(&w, &o)) {
		if (is(o, "nx")) {
			flags |= CACHE_KV_NX;
			nx = 1;
		} else if (is(o, "xx")) {
			flags |= CACHE_KV_XX;
			xx = 1;
		} else if (is(o, "gt")) {
			flags |= CACHE_KV_GT;
			gt = 1;
		} else if (is(o, "lt")) {
			flags |= CACHE_KV_LT;
			lt = 1;
		} else {
			answer_errorf(a, "ERR Unsupported option %.*s", cstr_len(o, 512), o.p);
			return;
		}
	}
	if ((nx && xx) || (nx && gt) || (nx && lt)) {
		answer_error(a, "ERR NX and XX, GT or LT options at the same time are not compatible");
		return;
	}
	if (gt && lt) {
		answer_error(a, "ERR GT and LT options at the same time are not compatible");
		return;
	}
	struct resp_str when_s = a->v[2];
	int64_t when, base = relative ? (int64_t)wall_ms() : 0;
	if (!arg_i64(when_s, &when)) {
		answer_error(a, err_not_int);
		return;
	}
	if (seconds) {
		if (when > INT64_MAX / 1000 || when < INT64_MIN / 1000)
			goto bad;
		when *= 1000;
	}
	if (when > INT64_MAX - base)
		goto bad;
	when += base;
	struct keys_req k;
	if (!one_key(a, &k, CACHE_GET, RESP_FORM_REPLY))
		return;
	k.kv.op = CACHE_KV_EXPIRE;
	k.kv.flags = flags;
	k.kv.at_ms = when;
	keys_single(a->c, &k);
	return;
bad:
	answer_errorf(a, "ERR invalid expire time in '%s' command", a->def->name);
}

/* --- commands of many keys ------------------------------------------------------------- */

/* Every key argument from the first, `step` apart, can be a key here;
 * otherwise the error is answered and false returned. */
static bool keys_acceptable(struct cmd_args *a, unsigned step)
{
	struct resp_iter it = { 0 };
	struct resp_str s;

	resp_next(a->cmd, &it, &s, scratch_of(a->c));
	while (resp_next(a->cmd, &it, &s, scratch_of(a->c))) {
		const char *why = key_refused(a->c->sh, s);
		if (why) {
			answer_error(a, why);
			return false;
		}
		for (unsigned i = 1; i < step; i++)
			resp_next(a->cmd, &it, &s, scratch_of(a->c));
	}
	return true;
}

/*
 * Sends the keys of c's busy command from where it stopped, while c is not
 * congested.  True when all are sent; false when c paused (resumed by
 * conn.c as it drains, with the frame still at the start of its input).
 */
static bool send_keys(struct conn *c)
{
	struct cmd_session *s = c->resp;
	struct resp_str key, val;
	struct keys_req k;

	while (s->it.index < s->cmd.argc && !(c->flags & C_CLOSED)) {
		if (conn_congested(c)) {
			c->flags |= C_PAUSED;
			return false;
		}
		resp_next(&s->cmd, &s->it, &key, scratch_of(c));
		switch (s->busy) {
		case BUSY_MGET:
			key_req(&k, key, CACHE_GET, RESP_FORM_VALUE);
			k.uncounted = s->it.index > 2;  /* the command counts once */
			keys_single(c, &k);
			break;
		case BUSY_DEL:
			key_req(&k, key, CACHE_DELETE, RESP_FORM_NONE);
			keys_gather_part(c, s->parent, &k, -1);
			break;
		case BUSY_EXISTS:
			key_req(&k, key, CACHE_GET, RESP_FORM_NONE);
			keys_gather_part(c, s->parent, &k, -1);
			break;
		case BUSY_MSET:
			key_req(&k, key, CACHE_PUT, RESP_FORM_NONE);
			resp_next(&s->cmd, &s->it, &val, scratch_of(c));
			k.req.body = (const uint8_t *)val.p;
			k.req.body_len = (uint32_t)val.len;
			keys_gather_part(c, s->parent, &k, -1);
			break;
		}
	}
	if (s->parent)
		keys_gather_end(s->parent);
	s->parent = NULL;
	s->busy = BUSY_NONE;
	return true;
}

/* Starts sending a command's keys; a->paused when it stopped before the end. */
static void start_keys(struct cmd_args *a, uint8_t busy, struct fwd *parent)
{
	struct cmd_session *s = a->c->resp;
	struct resp_str name;

	s->busy = busy;
	s->cmd = *a->cmd;
	s->parent = parent;
	memset(&s->it, 0, sizeof(s->it));
	resp_next(&s->cmd, &s->it, &name, scratch_of(a->c));
	a->paused = !send_keys(a->c);
}

static void cmd_mget(struct cmd_args *a)
{
	char head[24];
	int n;

	if (!keys_acceptable(a, 1))
		return;
	n = snprintf(head, sizeof(head), "*%u\r\n", a->argc - 1);
	if (pipeline_interim(&a->c->pipe, head, (size_t)n)) {
		conn_abort(a->c);
		return;
	}
	start_keys(a, BUSY_MGET, NULL);
}

/* DEL, UNLINK and EXISTS: one key is a plain request, more are gathered. */
static void del_or_exists(struct cmd_args *a, bool del)
{
	struct keys_req k;

	if (a->argc == 2) {
		if (one_key(a, &k, del ? CACHE_DELETE : CACHE_GET,
			    del ? RESP_FORM_DELETED : RESP_FORM_EXISTS))
			keys_single(a->c, &k);
		return;
	}
	if (!keys_acceptable(a, 1))
		return;
	struct fwd *p = keys_gather_begin(a->c, KEYS_SUM_COUNT, del);
	if (p)
		start_keys(a, del ? BUSY_DEL : BUSY_EXISTS, p);
}

static void cmd_del(struct cmd_args *a)
{
	del_or_exists(a, true);
}

static void cmd_exists(struct cmd_args *a)
{
	del_or_exists(a, false);
}

static void cmd_mset(struct cmd_args *a)
{
	if (a->argc % 2 == 0) {
		answer_errorf(a, "ERR wrong number of arguments for '%s' command", a->def->name);
		return;
	}
	if (!keys_acceptable(a, 2))
		return;
	struct fwd *p = keys_gather_begin(a->c, KEYS_SUM_OK, true);
	if (p)
		start_keys(a, BUSY_MSET, p);
}

/* DBSIZE and FLUSHALL: a part on every shard, behind what each has queued. */
static void every_shard(struct cmd_args *a, uint8_t kvop, enum keys_sum sum)
{
	struct keys_req k;

	memset(&k, 0, sizeof(k));
	k.kv.op = kvop;
	struct fwd *p = keys_gather_begin(a->c, sum, kvop == CACHE_KV_FLUSH);
	if (!p)
		return;
	for (unsigned i = 0; i < a->c->sh->srv->nshards; i++)
		if (!keys_gather_part(a->c, p, &k, (int)i))
			break;  /* c is aborted; p still ends, as send_keys() ends its parent */
	keys_gather_end(p);
}

static void cmd_dbsize(struct cmd_args *a)
{
	every_shard(a, CACHE_KV_COUNT, KEYS_SUM_COUNT);
}

static void cmd_flushall(struct cmd_args *a)
{
	if (!(a->argc == 1 || (a->argc == 2 && (is(a->v[1], "sync") || is(a->v[1], "async"))))) {
		answer_error(a, err_syntax);
		return;
	}
	every_shard(a, CACHE_KV_FLUSH, KEYS_SUM_OK);
}

/* --- connection commands --------------------------------------------------------------- */

static void cmd_ping(struct cmd_args *a)
{
	if (a->argc > 2)
		answer_errorf(a, "ERR wrong number of arguments for '%s' command", a->def->name);
	else if (a->argc == 1)
		answer_kind(a, REPLY_SIMPLE, "PONG", 4, 0);
	else
		answer_bulk(a, a->v[1].p, a->v[1].len);
}

static void cmd_echo(struct cmd_args *a)
{
	answer_bulk(a, a->v[1].p, a->v[1].len);
}

static void cmd_quit(struct cmd_args *a)
{
	struct reply r;

	reply_status(&r, 200, NULL);
	r.kind = REPLY_OK;
	r.close = true;
	answer(a, &r);
}

static void cmd_select(struct cmd_args *a)
{
	int64_t db;

	if (!arg_i64(a->v[1], &db) || db < INT32_MIN || db > INT32_MAX)
		answer_error(a, err_not_int);
	else if (db != 0)
		answer_error(a, "ERR DB index is out of range");
	else
		answer_ok(a);
}

static bool keys_required(const struct conn *c)
{
	return atomic_load_explicit(&c->sh->srv->auth, memory_order_seq_cst) != NULL;
}

/* AUTH's check (ACLAuthenticateUser): the user "default" with a key of
 * --api-keys-file as its password; with no keys, "default" needs none.
 * It changes nothing: a connection that fails it stays as it was,
 * authenticated or not, as in Redis. */
static bool password_ok(const struct conn *c, struct resp_str user, struct resp_str pass)
{
	const struct auth *keys = atomic_load_explicit(&c->sh->srv->auth, memory_order_seq_cst);

	if (!(user.len == 7 && memcmp(user.p, "default", 7) == 0))
		return false;
	return !keys || auth_check(keys, pass.p, pass.len, NULL, 0);
}

static void cmd_auth(struct cmd_args *a)
{
	struct resp_str user = { "default", 7 };

	if (a->argc > 3) {
		answer_error(a, err_syntax);
		return;
	}
	if (a->argc == 2 && !keys_required(a->c)) {
		answer_error(a, "ERR AUTH <password> called without any password configured for "
				"the default user. Are you sure your configuration is correct?");
		return;
	}
	if (a->argc == 3)
		user = a->v[1];
	if (password_ok(a->c, user, a->v[a->argc - 1])) {
		a->c->resp->authed = true;
		answer_ok(a);
	} else {
		answer_error(a, err_wrongpass);
	}
}

/* CLIENT SETNAME's rule: no byte outside '!'..'~', at most NAME_MAX_LEN. */
static bool name_ok(struct resp_str name)
{
	for (size_t i = 0; i < name.len; i++)
		if (name.p[i] < '!' || name.p[i] > '~')
			return false;
	return name.len <= NAME_MAX_LEN;
}

/* Sets a name name_ok() accepted; empty unsets. */
static void set_name(struct conn *c, struct resp_str name)
{
	free(c->resp->name);
	c->resp->name = NULL;
	if (name.len) {
		c->resp->name = malloc(name.len + 1);
		if (c->resp->name) {
			memcpy(c->resp->name, name.p, name.len);
			c->resp->name[name.len] = '\0';
		}
	}
}

static const char err_name[] = "ERR Client names cannot contain spaces, newlines or special "
			       "characters.";

/*
 * HELLO as Redis 7.0's helloCommand: its options in order, each applied as
 * it is read (an AUTH that passes authenticates even if a later option is
 * refused), then the connection must be authenticated.
 */
static void cmd_hello(struct cmd_args *a)
{
	struct cmd_session *s = a->c->resp;
	struct resp_str o, user, pass, name;
	int64_t ver = 0;
	struct arg_walk w = walk_from(a, a->argc >= 2 ? 2 : 1);

	if (a->argc >= 2) {
		if (!arg_i64(a->v[1], &ver)) {
			answer_error(a, "ERR Protocol version is not an integer or out of range");
			return;
		}
		if (ver < 2 || ver > 3) {
			answer_error(a, "NOPROTO unsupported protocol version");
			return;
		}
	}
	while (walk_next(&w, &o)) {
		uint32_t more = a->argc - w.i;  /* arguments after this option */
		if (is(o, "auth") && more >= 2) {
			walk_next(&w, &user);
			walk_next(&w, &pass);
			if (!password_ok(a->c, user, pass)) {
				answer_error(a, err_wrongpass);
				return;
			}
			s->authed = true;
		} else if (is(o, "setname") && more) {
			walk_next(&w, &name);
			if (!name_ok(name)) {
				answer_error(a, err_name);
				return;
			}
			set_name(a->c, name);
		} else {
			answer_errorf(a, "ERR Syntax error in HELLO option '%.*s'", cstr_len(o, 512),
				      o.p);
			return;
		}
	}
	if (!s->authed) {
		answer_error(a, "NOAUTH HELLO must be called with the client already authenticated, "
				"otherwise the HELLO AUTH <user> <pass> option can be used to "
				"authenticate the client and select the RESP protocol version at the "
				"same time");
		return;
	}
	if (ver)
		s->proto = (uint8_t)ver;
	struct buf b = { 0 };
	int rc = resp_add_map(&b, 7, s->proto) || resp_add_bulk(&b, "server", 6) ||
		 resp_add_bulk(&b, "redis", 5) || resp_add_bulk(&b, "version", 7) ||
		 resp_add_bulk(&b, REDIS_COMPAT_VERSION, strlen(REDIS_COMPAT_VERSION)) ||
		 resp_add_bulk(&b, "proto", 5) || resp_add_int(&b, s->proto) ||
		 resp_add_bulk(&b, "id", 2) || resp_add_int(&b, (int64_t)s->id) ||
		 resp_add_bulk(&b, "mode", 4) || resp_add_bulk(&b, "standalone", 10) ||
		 resp_add_bulk(&b, "role", 4) || resp_add_bulk(&b, "master", 6) ||
		 resp_add_bulk(&b, "modules", 7) || resp_add_array(&b, 0);
	answer_raw(a, &b, rc);
}

static void cmd_client_setname(struct cmd_args *a)
{
	if (name_ok(a->v[2])) {
		set_name(a->c, a->v[2]);
		answer_ok(a);
	} else {
		answer_error(a, err_name);
	}
}

static void cmd_client_getname(struct cmd_args *a)
{
	const char *name = a->c->resp->name;

	if (name)
		answer_bulk(a, name, strlen(name));
	else
		answer_kind(a, REPLY_NIL, NULL, 0, 0);
}

static void cmd_client_id(struct cmd_args *a)
{
	answer_int(a, (int64_t)a->c->resp->id);
}

/* CLIENT SETINFO LIB-NAME|LIB-VER value (Redis 7.2): accepted, checked as
 * Redis checks it, and not kept (nothing here reports it). */
static void cmd_client_setinfo(struct cmd_args *a)
{
	struct resp_str attr = a->v[2], val = a->v[3];

	if (!is(attr, "lib-name") && !is(attr, "lib-ver")) {
		answer_errorf(a, "ERR Unrecognized option '%.*s'", cstr_len(attr, 512), attr.p);
		return;
	}
	for (size_t i = 0; i < val.len; i++)
		if (val.p[i] < '!' || val.p[i] > '~') {
			answer_errorf(a, "ERR %.*s cannot contain spaces, newlines or special "
					 "characters.", cstr_len(attr, 16), attr.p);
			return;
		}
	answer_ok(a);
}

static void help_lines(struct cmd_args *a, const char *const *lines, size_t n)
{
	struct buf b = { 0 };
	int rc = resp_add_array(&b, n);

	for (size_t i = 0; i < n && !rc; i++)
		rc = resp_add_simple(&b, lines[i]);
	answer_raw(a, &b, rc);
}

static void cmd_client_help(struct cmd_args *a)
{
	static const char *const lines[] = {
		"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"GETNAME", "    Return the name of the current connection.",
		"ID", "    Return the ID of the current connection.",
		"SETNAME <name>", "    Assign the name <name> to the current connection.",
		"SETINFO <option> <value>", "    Set client meta attr (LIB-NAME or LIB-VER).",
		"HELP", "    Print this help.",
	};
	help_lines(a, lines, sizeof(lines) / sizeof(lines[0]));
}

/* --- INFO ------------------------------------------------------------------------------- */

static uint64_t sum_stat(const struct server *srv, size_t off)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < srv->nshards; i++)
		v += stats_get((const _Atomic uint64_t *)((const char *)srv->stats[i] + off));
	return v;
}

#define SUM(srv, field) sum_stat(srv, offsetof(struct stats_shard, field))

static uint64_t rss_bytes(void)
{
	unsigned long long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%llu %llu", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Whether INFO's arguments (all of them, as Redis reads them) name section. */
static bool want(struct cmd_args *a, const char *section, bool dflt)
{
	struct arg_walk w = walk_from(a, 1);
	struct resp_str s;

	if (a->argc == 1)
		return dflt;
	while (walk_next(&w, &s))
		if (is(s, section) || is(s, "all") || is(s, "everything") ||
		    (dflt && is(s, "default")))
			return true;
	return false;
}

#define INFO_LINE(b, ...)                                                         \
	do {                                                                      \
		char line_[160];                                                  \
		int n_ = snprintf(line_, sizeof(line_), __VA_ARGS__);             \
		rc |= buf_append(&(b), line_, (size_t)n_);                         \
	} while (0)

static void cmd_info(struct cmd_args *a)
{
	const struct server *srv = a->c->sh->srv;
	const struct config *cfg = a->c->sh->cfg;
	struct buf t = { 0 }, b = { 0 };
	int rc = 0;

	if (want(a, "server", true)) {
		uint64_t up = (clock_mono_ns() - srv->stats[0]->start_ns) / 1000000000ull;
		INFO_LINE(t, "%s# Server\r\n", t.len ? "\r\n" : "");
		INFO_LINE(t, "redis_version:%s\r\n", REDIS_COMPAT_VERSION);
		INFO_LINE(t, "ringcache_version:%s\r\n", RINGCACHE_VERSION);
		INFO_LINE(t, "redis_mode:standalone\r\n");
		INFO_LINE(t, "arch_bits:%u\r\n", (unsigned)(sizeof(void *) * 8));
		INFO_LINE(t, "process_id:%ld\r\n", (long)getpid());
		unsigned port = 0;      /* Redis's: 0 when it serves a Unix socket only */
		for (unsigned i = cfg->resp_listen.n; i-- > 0;)
			if (cfg->resp_listen.at[i].port)
				port = cfg->resp_listen.at[i].port;
		INFO_LINE(t, "tcp_port:%u\r\n", port);
		INFO_LINE(t, "uptime_in_seconds:%" PRIu64 "\r\n", up);
		INFO_LINE(t, "uptime_in_days:%" PRIu64 "\r\n", up / 86400);
		INFO_LINE(t, "shards:%u\r\n", srv->nshards);
	}
	if (want(a, "clients", true)) {
		INFO_LINE(t, "%s# Clients\r\n", t.len ? "\r\n" : "");
		INFO_LINE(t, "connected_clients:%" PRIu64 "\r\n", SUM(srv, connections));
	}
	if (want(a, "memory", true)) {
		INFO_LINE(t, "%s# Memory\r\n", t.len ? "\r\n" : "");
		INFO_LINE(t, "used_memory_rss:%" PRIu64 "\r\n", rss_bytes());
		INFO_LINE(t, "maxmemory:%" PRIu64 "\r\n", (uint64_t)cfg->memory);
		INFO_LINE(t, "maxmemory_policy:allkeys-lru\r\n");
		INFO_LINE(t, "l1_value_bytes:%" PRIu64 "\r\n", SUM(srv, value_bytes));
		INFO_LINE(t, "l1_arena_bytes:%" PRIu64 "\r\n", SUM(srv, arena_bytes));
		INFO_LINE(t, "conn_memory:%" PRIu64 "\r\n", SUM(srv, conn_memory));
	}
	if (want(a, "stats", true)) {
		INFO_LINE(t, "%s# Stats\r\n", t.len ? "\r\n" : "");
		INFO_LINE(t, "total_connections_received:%" PRIu64 "\r\n",
			  SUM(srv, connections_accepted));
		INFO_LINE(t, "total_commands_processed:%" PRIu64 "\r\n", SUM(srv, requests));
		INFO_LINE(t, "total_net_input_bytes:%" PRIu64 "\r\n", SUM(srv, received_bytes));
		INFO_LINE(t, "total_net_output_bytes:%" PRIu64 "\r\n", SUM(srv, sent_bytes));
		INFO_LINE(t, "rejected_connections:%" PRIu64 "\r\n", SUM(srv, accept_errors));
		INFO_LINE(t, "expired_keys:%" PRIu64 "\r\n", SUM(srv, expirations));
		INFO_LINE(t, "evicted_keys:%" PRIu64 "\r\n", SUM(srv, evictions));
		INFO_LINE(t, "keyspace_hits:%" PRIu64 "\r\n", SUM(srv, hits));
		INFO_LINE(t, "keyspace_misses:%" PRIu64 "\r\n", SUM(srv, misses));
	}
	if (want(a, "keyspace", true)) {
		uint64_t keys = SUM(srv, items);
		INFO_LINE(t, "%s# Keyspace\r\n", t.len ? "\r\n" : "");
		if (keys)
			INFO_LINE(t, "db0:keys=%" PRIu64 "\r\n", keys);
	}
	rc |= resp_add_verbatim(&b, t.data ? t.data : "", t.len, a->c->resp->proto);
	buf_deinit(&t);
	answer_raw(a, &b, rc);
}

/* --- the table -------------------------------------------------------------------------- */

static void cmd_command(struct cmd_args *a);
static void cmd_command_count(struct cmd_args *a);
static void cmd_command_docs(struct cmd_args *a);
static void cmd_command_info(struct cmd_args *a);
static void cmd_command_list(struct cmd_args *a);
static void cmd_command_help(struct cmd_args *a);

#define W F_WRITE
#define R F_READONLY
#define FAST F_FAST

static const struct command client_subs[] = {
	{ "client|getname", 2, 0, 0, 0, 0, cmd_client_getname, NULL, "connection",
	  "Returns the name of the connection." },
	{ "client|help", 2, 0, 0, 0, 0, cmd_client_help, NULL, "connection",
	  "Returns helpful text about the different subcommands." },
	{ "client|id", 2, 0, 0, 0, 0, cmd_client_id, NULL, "connection",
	  "Returns the unique client ID of the connection." },
	{ "client|setinfo", 4, 0, 0, 0, 0, cmd_client_setinfo, NULL, "connection",
	  "Sets information specific to the client or connection." },
	{ "client|setname", 3, 0, 0, 0, 0, cmd_client_setname, NULL, "connection",
	  "Sets the connection name." },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL },
};

static const struct command command_subs[] = {
	{ "command|count", 2, 0, 0, 0, 0, cmd_command_count, NULL, "server",
	  "Returns a count of commands." },
	{ "command|docs", -2, 0, 0, 0, 0, cmd_command_docs, NULL, "server",
	  "Returns documentary information about one, multiple or all commands." },
	{ "command|help", 2, 0, 0, 0, 0, cmd_command_help, NULL, "server",
	  "Returns helpful text about the different subcommands." },
	{ "command|info", -2, 0, 0, 0, 0, cmd_command_info, NULL, "server",
	  "Returns information about one, multiple or all commands." },
	{ "command|list", -2, 0, 0, 0, 0, cmd_command_list, NULL, "server",
	  "Returns a list of command names." },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL },
};

/* Most frequent first: lookups walk it in order. */
static const struct command commands[] = {
	{ "get", 2, R | FAST, 1, 1, 1, cmd_get, NULL, "string", "Returns the string value of a key." },
	{ "set", -3, W, 1, 1, 1, cmd_set, NULL, "string",
	  "Sets the string value of a key, ignoring its type." },
	{ "mget", -2, R | FAST, 1, -1, 1, cmd_mget, NULL, "string",
	  "Atomically returns the string values of one or more keys." },
	{ "mset", -3, W, 1, -1, 2, cmd_mset, NULL, "string",
	  "Atomically creates or modifies the string values of one or more keys." },
	{ "del", -2, W, 1, -1, 1, cmd_del, NULL, "generic", "Deletes one or more keys." },
	{ "unlink", -2, W | FAST, 1, -1, 1, cmd_del, NULL, "generic",
	  "Asynchronously deletes one or more keys." },
	{ "exists", -2, R | FAST, 1, -1, 1, cmd_exists, NULL, "generic",
	  "Determines whether one or more keys exist." },
	{ "incr", 2, W | FAST, 1, 1, 1, cmd_incr, NULL, "string",
	  "Increments the integer value of a key by one." },
	{ "incrby", 3, W | FAST, 1, 1, 1, cmd_incr, NULL, "string",
	  "Increments the integer value of a key by a number." },
	{ "decr", 2, W | FAST, 1, 1, 1, cmd_incr, NULL, "string",
	  "Decrements the integer value of a key by one." },
	{ "decrby", 3, W | FAST, 1, 1, 1, cmd_incr, NULL, "string",
	  "Decrements a number from the integer value of a key." },
	{ "append", 3, W, 1, 1, 1, cmd_append, NULL, "string",
	  "Appends a string to the value of a key." },
	{ "strlen", 2, R | FAST, 1, 1, 1, cmd_strlen, NULL, "string",
	  "Returns the length of a string value." },
	{ "getdel", 2, W | FAST, 1, 1, 1, cmd_getdel, NULL, "string",
	  "Returns the string value of a key after deleting the key." },
	{ "getex", -2, W | FAST, 1, 1, 1, cmd_getex, NULL, "string",
	  "Returns the string value of a key after setting its expiration time." },
	{ "expire", -3, W | FAST, 1, 1, 1, cmd_expire, NULL, "generic",
	  "Sets the expiration time of a key in seconds." },
	{ "pexpire", -3, W | FAST, 1, 1, 1, cmd_expire, NULL, "generic",
	  "Sets the expiration time of a key in milliseconds." },
	{ "expireat", -3, W | FAST, 1, 1, 1, cmd_expire, NULL, "generic",
	  "Sets the expiration time of a key to a Unix timestamp." },
	{ "pexpireat", -3, W | FAST, 1, 1, 1, cmd_expire, NULL, "generic",
	  "Sets the expiration time of a key to a Unix milliseconds timestamp." },
	{ "ttl", 2, R | FAST, 1, 1, 1, cmd_ttl, NULL, "generic",
	  "Returns the expiration time in seconds of a key." },
	{ "pttl", 2, R | FAST, 1, 1, 1, cmd_ttl, NULL, "generic",
	  "Returns the expiration time in milliseconds of a key." },
	{ "persist", 2, W | FAST, 1, 1, 1, cmd_persist, NULL, "generic",
	  "Removes the expiration time of a key." },
	{ "dbsize", 1, R | FAST, 0, 0, 0, cmd_dbsize, NULL, "server",
	  "Returns the number of keys in this instance's L1." },
	{ "flushall", -1, W, 0, 0, 0, cmd_flushall, NULL, "server",
	  "Removes all keys from this instance's L1." },
	{ "flushdb", -1, W, 0, 0, 0, cmd_flushall, NULL, "server",
	  "Removes all keys from this instance's L1." },
	{ "ping", -1, FAST, 0, 0, 0, cmd_ping, NULL, "connection",
	  "Returns the server's liveliness response." },
	{ "echo", 2, FAST, 0, 0, 0, cmd_echo, NULL, "connection", "Returns the given string." },
	{ "quit", -1, F_NOAUTH | FAST, 0, 0, 0, cmd_quit, NULL, "connection",
	  "Closes the connection." },
	{ "select", 2, FAST, 0, 0, 0, cmd_select, NULL, "connection",
	  "Changes the selected database (0 only)." },
	{ "hello", -1, F_NOAUTH | FAST, 0, 0, 0, cmd_hello, NULL, "connection",
	  "Handshakes with the server." },
	{ "auth", -2, F_NOAUTH | FAST, 0, 0, 0, cmd_auth, NULL, "connection",
	  "Authenticates the connection." },
	{ "client", -2, 0, 0, 0, 0, NULL, client_subs, "connection",
	  "A container for client connection commands." },
	{ "info", -1, 0, 0, 0, 0, cmd_info, NULL, "server",
	  "Returns information and statistics about the server." },
	{ "command", -1, 0, 0, 0, 0, cmd_command, command_subs, "server",
	  "Returns detailed information about all commands." },
	{ NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL },
};

static const struct command *find(const struct command *t, struct resp_str name, size_t skip)
{
	for (; t->name; t++) {
		size_t n = strlen(t->name + skip);
		if (name.len == n && eq_lower(name.p, t->name + skip, n))
			return t;
	}
	return NULL;
}

static size_t count_commands(void)
{
	size_t n = 0;

	for (const struct command *t = commands; t->name; t++)
		n++;
	return n;
}

static int add_flags(struct buf *b, uint8_t flags, unsigned proto)
{
	const char *names[4];
	size_t n = 0;
	int rc;

	if (flags & F_WRITE)
		names[n++] = "write";
	if (flags & F_READONLY)
		names[n++] = "readonly";
	if (flags & F_FAST)
		names[n++] = "fast";
	if (flags & F_NOAUTH)
		names[n++] = "no_auth";
	rc = resp_add_set(b, n, proto);
	for (size_t i = 0; i < n && !rc; i++)
		rc = resp_add_simple(b, names[i]);
	return rc;
}

/* COMMAND's 10 fields of Redis 7 for one command. */
static int add_info(struct buf *b, const struct command *t, unsigned proto)
{
	int rc = resp_add_array(b, 10) || resp_add_bulk(b, t->name, strlen(t->name)) ||
		 resp_add_int(b, t->arity) || add_flags(b, t->flags, proto) ||
		 resp_add_int(b, t->first) || resp_add_int(b, t->last) ||
		 resp_add_int(b, t->step) || resp_add_set(b, 0, proto) ||
		 resp_add_set(b, 0, proto) || resp_add_array(b, 0);
	size_t nsubs = 0;

	for (const struct command *s = t->subs; s && s->name; s++)
		nsubs++;
	rc = rc || resp_add_array(b, nsubs);
	for (const struct command *s = t->subs; s && s->name && !rc; s++)
		rc = add_info(b, s, proto);
	return rc;
}

static void cmd_command(struct cmd_args *a)
{
	struct buf b = { 0 };
	int rc = resp_add_array(&b, count_commands());

	for (const struct command *t = commands; t->name && !rc; t++)
		rc = add_info(&b, t, a->c->resp->proto);
	answer_raw(a, &b, rc);
}

static void cmd_command_count(struct cmd_args *a)
{
	answer_int(a, (int64_t)count_commands());
}

static void cmd_command_list(struct cmd_args *a)
{
	struct buf b = { 0 };
	int rc = resp_add_array(&b, count_commands());

	for (const struct command *t = commands; t->name && !rc; t++)
		rc = resp_add_bulk(&b, t->name, strlen(t->name));
	answer_raw(a, &b, rc);
}

static const struct command *named(struct resp_str name)
{
	const char *bar = memchr(name.p, '|', name.len);

	if (!bar)
		return find(commands, name, 0);
	struct resp_str base = { name.p, (size_t)(bar - name.p) };
	const struct command *t = find(commands, base, 0);
	if (!t || !t->subs)
		return NULL;
	struct resp_str sub = { bar + 1, name.len - base.len - 1 };
	return find(t->subs, sub, base.len + 1);
}

/*
 * COMMAND INFO and DOCS answer for every name asked, repeats included: a
 * command of a million names ("client", 12 bytes each) would be answered
 * with most of a gigabyte, past every bound a connection has.  Their
 * answer is held to --max-value, the largest any other command gives (a
 * value): past it, the answer built so far is dropped and an error
 * answered instead.  True when that happened.
 */
static bool answer_over_max(struct cmd_args *a, struct buf *b)
{
	if (b->len <= a->c->sh->cfg->max_value)
		return false;
	buf_deinit(b);
	answer_errorf(a, "ERR the answer of '%s' is larger than --max-value: ask for fewer "
		      "commands", a->def->name);
	return true;
}

static void cmd_command_info(struct cmd_args *a)
{
	struct buf b = { 0 };
	struct resp_iter it = { 0 };
	struct resp_str s;
	unsigned proto = a->c->resp->proto;
	int rc = 0;

	if (a->argc == 2) {
		cmd_command(a);
		return;
	}
	rc = resp_add_array(&b, a->argc - 2);
	resp_next(a->cmd, &it, &s, scratch_of(a->c));
	resp_next(a->cmd, &it, &s, scratch_of(a->c));
	while (!rc && resp_next(a->cmd, &it, &s, scratch_of(a->c))) {
		const struct command *t = named(s);
		rc = t ? add_info(&b, t, proto) : resp_add_nil(&b, proto);
		if (!rc && answer_over_max(a, &b))
			return;
	}
	answer_raw(a, &b, rc);
}

static int add_doc(struct buf *b, const struct command *t, unsigned proto)
{
	size_t nsubs = 0;
	int rc;

	for (const struct command *s = t->subs; s && s->name; s++)
		nsubs++;
	rc = resp_add_bulk(b, t->name, strlen(t->name)) || resp_add_map(b, nsubs ? 4 : 3, proto) ||
	     resp_add_bulk(b, "summary", 7) || resp_add_bulk(b, t->summary, strlen(t->summary)) ||
	     resp_add_bulk(b, "since", 5) || resp_add_bulk(b, "1.0.0", 5) ||
	     resp_add_bulk(b, "group", 5) || resp_add_bulk(b, t->group, strlen(t->group));
	if (nsubs) {
		rc = rc || resp_add_bulk(b, "subcommands", 11) || resp_add_map(b, nsubs, proto);
		for (const struct command *s = t->subs; s && s->name && !rc; s++)
			rc = add_doc(b, s, proto);
	}
	return rc;
}

static void cmd_command_docs(struct cmd_args *a)
{
	struct buf b = { 0 };
	unsigned proto = a->c->resp->proto;
	int rc = 0;

	if (a->argc == 2) {
		rc = resp_add_map(&b, count_commands(), proto);
		for (const struct command *t = commands; t->name && !rc; t++)
			rc = add_doc(&b, t, proto);
	} else {
		struct resp_iter it = { 0 };
		struct resp_str s;
		size_t n = 0;
		resp_next(a->cmd, &it, &s, scratch_of(a->c));
		resp_next(a->cmd, &it, &s, scratch_of(a->c));
		while (resp_next(a->cmd, &it, &s, scratch_of(a->c)))
			n += named(s) != NULL;
		rc = resp_add_map(&b, n, proto);
		it = (struct resp_iter){ 0 };
		resp_next(a->cmd, &it, &s, scratch_of(a->c));
		resp_next(a->cmd, &it, &s, scratch_of(a->c));
		while (!rc && resp_next(a->cmd, &it, &s, scratch_of(a->c))) {
			const struct command *t = named(s);
			if (t)
				rc = add_doc(&b, t, proto);
			if (!rc && answer_over_max(a, &b))
				return;
		}
	}
	answer_raw(a, &b, rc);
}

static void cmd_command_help(struct cmd_args *a)
{
	static const char *const lines[] = {
		"COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"(no subcommand)", "    Return details about all commands.",
		"COUNT", "    Return the total number of commands.",
		"DOCS [<command-name> ...]", "    Return documentation details about commands.",
		"INFO [<command-name> ...]", "    Return details about the given commands.",
		"LIST", "    Return a list of all command names.",
		"HELP", "    Print this help.",
	};
	help_lines(a, lines, sizeof(lines) / sizeof(lines[0]));
}

/* --- dispatch ---------------------------------------------------------------------------- */

/* Redis's words for a command it does not know (commandCheckExistence). */
static void unknown_command(struct cmd_args *a)
{
	char args[300];
	size_t n = 0;

	args[0] = '\0';
	for (uint32_t i = 1; i < a->argc && i < ARGV_MAX && n < 128; i++) {
		int w = snprintf(args + n, sizeof(args) - n, "'%.*s' ", cstr_len(a->v[i], 128 - (int)n),
				 a->v[i].p);
		if (w > 0)
			n += (size_t)w;
	}
	answer_errorf(a, "ERR unknown command '%.*s', with args beginning with: %s",
		      cstr_len(a->v[0], 128), a->v[0].p, args);
}

/* Runs one complete command; false when it is still sending its keys. */
static bool dispatch(struct conn *c, const struct resp_cmd *cmd)
{
	struct cmd_args a;
	const struct command *t;

	/* field by field: zeroing v[] cost more than a GET's parse */
	a.c = c;
	a.cmd = cmd;
	a.def = NULL;
	a.argc = cmd->argc;
	a.paused = false;
	resp_args(cmd, a.v, ARGV_MAX, scratch_of(c));
	if (is(a.v[0], "post") || is(a.v[0], "host:")) {
		/* an HTTP request, which a web page can make a browser send to
		 * this port with commands in its body: closed unanswered, as
		 * Redis does (securityWarningCommand) */
		conn_abort(c);
		return true;
	}
	t = find(commands, a.v[0], 0);
	if (!t) {
		unknown_command(&a);
		return true;
	}
	if (t->subs && a.argc >= 2) {
		const struct command *sub = find(t->subs, a.v[1], strlen(t->name) + 1);
		if (!sub) {
			char upper[16];
			size_t i;
			for (i = 0; t->name[i] && i + 1 < sizeof(upper); i++)
				upper[i] = (char)(t->name[i] - 'a' + 'A');
			upper[i] = '\0';
			answer_errorf(&a, "ERR unknown subcommand '%.*s'. Try %s HELP.",
				      cstr_len(a.v[1], 128), a.v[1].p, upper);
			return true;
		}
		t = sub;
	}
	a.def = t;
	if ((t->arity > 0 && (uint32_t)t->arity != a.argc) ||
	    (t->arity < 0 && a.argc < (uint32_t)-t->arity)) {
		answer_errorf(&a, "ERR wrong number of arguments for '%s' command", t->name);
		return true;
	}
	if (!c->resp->authed && !(t->flags & F_NOAUTH)) {
		answer_error(&a, err_noauth);
		return true;
	}
	t->run(&a);
	return !a.paused;
}

/*
 * Redis's bounds on a client that must authenticate and has not yet
 * (processMultibulkBuffer, authRequired): a multibulk command of at most 10
 * arguments, bulk strings of at most 16 KiB.  Without them a client with no
 * key made its connection hold a whole command's input (--max-head +
 * --max-value) until --request-timeout, and a few dozen such connections
 * took the shards' --conn-memory, which pauses every connection, the
 * authenticated ones too.
 */
#define NOAUTH_ARGS_MAX 10u
#define NOAUTH_BULK_MAX 16384u

/*
 * resp_parse() under those bounds.  A refusal sets *why to Redis's words
 * and returns -1; the parser's own errors come first where Redis's do (a
 * length that is not one at all).
 */
static int parse_unauthenticated(struct cmd_session *s, const char *p, size_t n,
				 const struct resp_limits *lim, struct resp_cmd *cmd,
				 const char **why)
{
	struct resp_limits tight = {
		.max_bulk = lim->max_bulk < NOAUTH_BULK_MAX ? lim->max_bulk : NOAUTH_BULK_MAX,
		.max_command = lim->max_command,
	};
	struct resp_parser before = s->ps;
	int rc = resp_parse(&s->ps, p, n, &tight, cmd);

	*why = NULL;
	if (n == 0 || p[0] != '*')
		return rc;      /* inline: its one line is bounded already */
	/* the count, once its line has been read (else 0) */
	uint32_t argc = rc == 1 ? cmd->argc : s->ps.argc;
	if (argc > NOAUTH_ARGS_MAX && rc != -RESP_E_MBULK_LEN) {
		*why = "Protocol error: unauthenticated multibulk length";
		return -1;
	}
	if (rc == -RESP_E_BULK_LEN) {
		/* refused by the tight bound, or a bad length whatever the bound */
		struct resp_cmd whole;
		if (resp_parse(&before, p, n, lim, &whole) != -RESP_E_BULK_LEN) {
			*why = "Protocol error: unauthenticated bulk length";
			return -1;
		}
	}
	return rc;
}

size_t cmd_handle(struct conn *c, const char *p, size_t n)
{
	struct shard *sh = c->sh;
	struct cmd_session *s = c->resp;
	struct resp_cmd cmd;
	const char *why = NULL;
	int rc;

	if (s->busy) {
		size_t len = s->cmd.len;
		s->cmd.frame = p;       /* the frame is still at the start of the input */
		return send_keys(c) ? len : 0;
	}
	if (!c->req_start_ns)
		c->req_start_ns = sh->now_ns;
	if (__builtin_expect(s->authed, 1))
		rc = resp_parse(&s->ps, p, n, &sh->srv->resp_limits, &cmd);
	else
		rc = parse_unauthenticated(s, p, n, &sh->srv->resp_limits, &cmd, &why);
	if (rc == RESP_AGAIN)
		return 0;
	c->req_start_ns = 0;
	if (rc < 0) {
		char text[96];
		cmd_protocol_error(c, why ? why : resp_error_text(rc, &s->ps, text, sizeof(text)));
		return n;
	}
	resp_parser_init(&s->ps);
	if (cmd.argc == 0)
		return cmd.len;
	stats_inc(&sh->stats->requests);
	return dispatch(c, &cmd) ? cmd.len : 0;
}

bool cmd_busy(const struct conn *c)
{
	return c->resp && keys_gather_busy(c);
}

int cmd_session_create(struct conn *c)
{
	struct cmd_session *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	resp_parser_init(&s->ps);
	s->proto = 2;
	s->authed = !keys_required(c);
	s->id = atomic_fetch_add_explicit(&c->sh->srv->next_client_id, 1, memory_order_relaxed) + 1;
	c->resp = s;
	return 0;
}

void cmd_session_destroy(struct conn *c)
{
	struct cmd_session *s = c->resp;

	if (!s)
		return;
	if (s->parent)
		keys_gather_abandon(s->parent);
	free(s->name);
	free(s);
	c->resp = NULL;
}
