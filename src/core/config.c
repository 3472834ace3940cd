/*
 * config.c - the command line and the --config file, both driven by the
 * CONFIG_OPTIONS table, and the texts made from it (--help, the effective
 * configuration of --check-config, the man page's OPTIONS).
 *
 * Flags: "--flag value" and "--flag=value"; BOOL flags take no value.
 *
 * The file (docs/operations.md has the operator's version):
 *
 *   # a comment: a line whose first non-blank character is '#'
 *   listen = 127.0.0.1:8080
 *   memory = 1G
 *
 *   - a key is a flag without its dashes; blanks around key, '=' and value
 *     are ignored; the value is the rest of the line, unquoted;
 *   - each key at most once: a second "memory =" is an error naming both
 *     lines, because two edits of one file that disagree are a mistake
 *     either way, and flags are the one way to override (they win over
 *     the file);
 *   - a '#' after a value (preceded by a blank) is refused instead of being
 *     taken into the value, since "memory = 1G # one gig" must not become a
 *     path or a prefix that silently includes the comment;
 *   - an empty value leaves a string, URL or CPU list unset (its default);
 *   - hostile input: a UTF-8 byte-order mark at the start is skipped, CRLF
 *     line ends are accepted, and NUL bytes, other control characters, lines
 *     longer than CONFIG_LINE_MAX and files larger than CONFIG_FILE_MAX are
 *     refused with the line's number.  The file is read whole into one
 *     buffer (bounded) and cut into strings in place: nothing else is
 *     allocated.
 *
 * Values are checked when set (syntax, range) and once more when all are
 * in (cross-field rules).  An error names where the value came from: the
 * flag, or FILE:LINE and the key.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ringcache/config.h"

enum kind {
	K_SIZE, K_SIZEAUTO, K_U32, K_COUNT, K_CPU, K_STR, K_URL, K_BOOL, K_HUGEPAGES, K_CPUSET,
	K_LISTEN, K_MODE, K_SEED
};

struct option_desc {
	const char *flag;
	enum kind kind;
	size_t offset;
	const char *def;
	const char *meta;
	const char *help;
};

static const struct option_desc options[] = {
#define CONFIG_DESC(flag, kind, field, def, meta, help) \
	{ flag, K_##kind, offsetof(struct config, field), def, meta, help },
	CONFIG_OPTIONS(CONFIG_DESC)
#undef CONFIG_DESC
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

/* Where each option's value came from, for error messages. */
#define FROM_DEFAULT 0
#define FROM_FLAG (-1)   /* else: the line of the file */

struct state {
	const char *file;
	int from[N_OPTIONS];
};

int config_parse_size(const char *s, uint64_t *out)
{
	char *end;
	uint64_t mult = 1;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	case 't': case 'T': mult = 1ull << 40; end++; break;
	default: return -EINVAL;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end != '\0' || (v && mult > UINT64_MAX / v))
		return -EINVAL;
	*out = v * mult;
	return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_addr(const char *s, struct config_addr *out)
{
	const char *colon = strrchr(s, ':');
	uint32_t port;
	const char *host = s;
	size_t hlen;

	if (!colon || parse_u32(colon + 1, &port) || port == 0 || port > 65535)
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		host++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(out->host))
		return -EINVAL;
	/* a host name, an IPv4 or an IPv6 address (with a %zone): nothing else */
	for (size_t i = 0; i < hlen; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%",
			    host[i]))
			return -EINVAL;
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	out->port = (uint16_t)port;
	return 0;
}

/* One address of a LISTEN list, `len` bytes at s: HOST:PORT or unix:PATH
 * (absolute, shorter than sun_path, no comma: commas separate the list). */
static int parse_endpoint(const char *s, size_t len, struct config_addr *out)
{
	char one[sizeof(out->path) + 8];

	memset(out, 0, sizeof(*out));
	if (len >= sizeof(one))
		return -EINVAL;
	memcpy(one, s, len);
	one[len] = '\0';
	if (!strncmp(one, "unix:", 5)) {
		const char *path = one + 5;
		size_t plen = strlen(path);
		if (path[0] != '/' || plen >= sizeof(out->path) || path[plen - 1] == '/')
			return -EINVAL;
		memcpy(out->path, path, plen + 1);
		return 0;
	}
	return parse_addr(one, out);
}

static bool same_endpoint(const struct config_addr *a, const struct config_addr *b)
{
	return a->path[0] ? !strcmp(a->path, b->path) : (!b->path[0] && a->port == b->port);
}

/* Whether list l already holds e: the same port (any host: they would share
 * a claim, listen.h) or the same path. */
static bool listed(const struct config_listen *l, const struct config_addr *e)
{
	for (unsigned i = 0; i < l->n; i++)
		if (same_endpoint(&l->at[i], e))
			return true;
	return false;
}

/* "A, B, ..." added to `out` (which is emptied first unless `append`). */
static int parse_listen(const char *s, struct config_listen *out, bool append)
{
	struct config_listen l = append ? *out : (struct config_listen){ 0 };

	while (*s) {
		const char *comma = strchr(s, ',');
		const char *end = comma ? comma : s + strlen(s);
		const char *b = s, *e = end;
		struct config_addr one;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (b == e || l.n == CONFIG_LISTEN_MAX || parse_endpoint(b, (size_t)(e - b), &one) ||
		    listed(&l, &one))
			return -EINVAL;
		l.at[l.n++] = one;
		s = comma ? comma + 1 : end;
		if (comma && !*s)
			return -EINVAL;         /* "a," */
	}
	*out = l;
	return 0;
}

static int parse_mode(const char *s, uint32_t *out)
{
	char *end;

	if (*s != '0' || strlen(s) < 3 || strlen(s) > 4)
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 8);
	if (errno || *end || v > 0777)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_seed(const char *s, struct config_seed *out)
{
	char *end;

	if (!strcmp(s, "random")) {
		out->fixed = false;
		out->value = 0;
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	out->fixed = true;
	out->value = v;
	return 0;
}

/*
 * What no value of any kind holds, from a flag or from the file, so that
 * every configuration can be written as a file (--check-config) and read
 * back the same: control characters (a newline in a path or an instance id
 * is never meant), blanks at either end, a '#' at the start or after a blank
 * (the file would read a comment there).
 */
static bool unwritable(const char *s)
{
	size_t n = strlen(s);

	if (n && (s[0] == ' ' || s[n - 1] == ' ' || s[0] == '#'))
		return true;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || (s[i] == '#' && s[i - 1] == ' '))
			return true;
	return false;
}

static int set_value(struct config *cfg, const struct option_desc *o, const char *v)
{
	void *field = (char *)cfg + o->offset;
	uint32_t u;

	if (unwritable(v))
		return -EINVAL;
	switch (o->kind) {
	case K_SIZE:
		return config_parse_size(v, field);
	case K_SIZEAUTO:
		if (!strcmp(v, "auto")) {
			*(uint64_t *)field = CONFIG_SIZE_AUTO;
			return 0;
		}
		/* 0 would read as auto: a size of nothing is refused */
		if (config_parse_size(v, field) || *(uint64_t *)field == CONFIG_SIZE_AUTO)
			return -EINVAL;
		return 0;
	case K_U32:
		return parse_u32(v, field);
	case K_COUNT:
		/* "0" is read as auto too: it was the spelling before "auto" */
		if (!strcmp(v, "auto"))
			u = CONFIG_COUNT_AUTO;
		else if (parse_u32(v, &u))
			return -EINVAL;
		*(uint32_t *)field = u;
		return 0;
	case K_CPU:
		if (!strcmp(v, "auto"))
			u = CONFIG_CPU_AUTO;
		else if (parse_u32(v, &u) || u >= CPUSET_MAX)
			return -EINVAL;
		*(uint32_t *)field = u;
		return 0;
	case K_STR:
	case K_URL:
		*(const char **)field = v;
		return 0;
	case K_BOOL:
		if (!strcmp(v, "true"))
			*(bool *)field = true;
		else if (!strcmp(v, "false"))
			*(bool *)field = false;
		else
			return -EINVAL;
		return 0;
	case K_HUGEPAGES:
		if (!strcmp(v, "auto"))
			*(enum config_hugepages *)field = CONFIG_HUGEPAGES_AUTO;
		else if (!strcmp(v, "on"))
			*(enum config_hugepages *)field = CONFIG_HUGEPAGES_ON;
		else if (!strcmp(v, "off"))
			*(enum config_hugepages *)field = CONFIG_HUGEPAGES_OFF;
		else
			return -EINVAL;
		return 0;
	case K_CPUSET:
		if (!*v) {
			((struct cpuset *)field)->n = 0;
			return 0;
		}
		return cpuset_parse(v, field);
	case K_LISTEN:
		return parse_listen(v, field, false);
	case K_MODE:
		return parse_mode(v, field);
	case K_SEED:
		return parse_seed(v, field);
	}
	return -EINVAL;
}

/* Kinds for which an empty value means "not set" (the default is empty). */
static bool empty_ok(enum kind k)
{
	return k == K_STR || k == K_URL || k == K_CPUSET || k == K_LISTEN;
}

static const struct option_desc *find(const char *name, size_t len)
{
	for (size_t k = 0; k < N_OPTIONS; k++)
		if (strlen(options[k].flag) == len && !strncmp(options[k].flag, name, len))
			return &options[k];
	return NULL;
}

static size_t index_of(const char *flag)
{
	const struct option_desc *o = find(flag, strlen(flag));
	return o ? (size_t)(o - options) : 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* An error about option k, prefixed with where its value came from. */
static int blame(char *err, size_t errlen, const struct state *st, size_t k, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (st->from[k] > 0)
		return fail(err, errlen, "%s:%d: %s: %s", st->file, st->from[k], options[k].flag, msg);
	if (st->from[k] == FROM_DEFAULT)
		return fail(err, errlen, "--%s (default %s): %s", options[k].flag, options[k].def, msg);
	return fail(err, errlen, "--%s: %s", options[k].flag, msg);
}

#define BLAME(flag, ...) blame(err, errlen, st, index_of(flag), __VA_ARGS__)

/* Cross-field checks, after every value is in. */
static int validate(const struct config *cfg, const struct state *st, char *err, size_t errlen)
{
	if (cfg->ring_size < 2 || (cfg->ring_size & (cfg->ring_size - 1)))
		return BLAME("ring-size", "%" PRIu32 " is not a power of two >= 2", cfg->ring_size);
	if (cfg->ring_size > (1u << 20))
		return BLAME("ring-size", "at most 1048576");
	if (cfg->recv_buffers < 2 || cfg->recv_buffers > 32768 ||
	    (cfg->recv_buffers & (cfg->recv_buffers - 1)))
		return BLAME("recv-buffers", "a power of two from 2 to 32768");
	if (cfg->recv_buffer_size < 512 || cfg->recv_buffer_size > (1u << 20))
		return BLAME("recv-buffer-size", "from 512 bytes to 1M");
	if (cfg->max_value < 1 || cfg->max_value > (1ull << 30))
		return BLAME("max-value", "from 1 byte to 1G");
	if (cfg->memory < (1ull << 20))
		return BLAME("memory", "at least 1M");
	if (cfg->max_request_line < 64 || cfg->max_request_line > (1u << 20))
		return BLAME("max-request-line", "from 64 bytes to 1M");
	if (cfg->max_head < cfg->max_request_line || cfg->max_head > (1u << 24))
		/* blame the one that was set, when the other is a default */
		return BLAME(st->from[index_of("max-head")] == FROM_DEFAULT ? "max-request-line"
									: "max-head",
			     "max-head must be from max-request-line to 16M");
	if (cfg->max_headers < 1)
		return BLAME("max-headers", "at least 1");
	if (cfg->max_conns < 1)
		return BLAME("max-conns", "at least 1");
	if (cfg->shards > CPUSET_MAX)
		return BLAME("shards", "at most %d", CPUSET_MAX);
	if (cfg->idle_timeout < 1)
		return BLAME("idle-timeout", "at least 1 second");
	if (cfg->request_timeout < 1)
		return BLAME("request-timeout", "at least 1 second");
	if (cfg->brotli_quality > 11)
		return BLAME("brotli-quality", "from 0 to 11");
	if (cfg->gzip_level < 1 || cfg->gzip_level > 12)
		return BLAME("gzip-level", "from 1 to 12");
	if (cfg->compress_threads > 64)     /* ZIP_THREADS_MAX (zip.h) */
		return BLAME("compress-threads", "at most 64");
	if (cfg->lease_wait > 600000)
		return BLAME("lease-wait", "at most 600000 milliseconds");
	if (cfg->lease_ttl < 1 || cfg->lease_ttl > 600000)
		return BLAME("lease-ttl", "from 1 to 600000 milliseconds");
	if (cfg->redis_timeout < 1)
		return BLAME("redis-timeout", "at least 1 millisecond");
	if (cfg->listen.n == 0)
		return BLAME("listen", "at least one address");
	for (unsigned i = 0; i < cfg->resp_listen.n; i++) {
		const struct config_addr *a = &cfg->resp_listen.at[i];
		if (listed(&cfg->listen, a)) {
			char at[160];
			if (a->path[0])
				config_format_addr(a, at, sizeof(at));
			else
				snprintf(at, sizeof(at), "port %u", a->port);
			return BLAME("resp-listen", "%s is also --listen's", at);
		}
	}
	return 0;
}

/* The table's defaults; tests/unit/test_config.c checks that each parses. */
static int set_defaults(struct config *cfg, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (set_value(cfg, &options[i], options[i].def))
			return fail(err, errlen, "internal: bad default for --%s", options[i].flag);
	return 0;
}

/* --- the file ------------------------------------------------------------ */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* One line, NUL-terminated in place (blanks and the CR of a CRLF already
 * gone from its end); line n of the file. */
static int parse_line(struct config *cfg, struct state *st, char *p, int n, char *err,
		      size_t errlen)
{
	while (is_blank(*p))
		p++;
	if (!*p || *p == '#')
		return 0;

	char *eq = strchr(p, '=');
	if (!eq)
		return fail(err, errlen, "%s:%d: expected KEY = VALUE, got '%.64s'", st->file, n, p);
	char *kend = eq;
	while (kend > p && is_blank(kend[-1]))
		kend--;
	size_t klen = (size_t)(kend - p);
	if (klen == 0)
		return fail(err, errlen, "%s:%d: no key before '='", st->file, n);
	const struct option_desc *o = find(p, klen);
	if (!o) {
		bool dashes = klen > 2 && p[0] == '-' && p[1] == '-';
		return fail(err, errlen, "%s:%d: unknown key '%.*s'%s", st->file, n,
			    (int)(klen > 64 ? 64 : klen), p,
			    dashes ? " (keys are written without --)" : " (see ringcached --help)");
	}
	size_t k = (size_t)(o - options);
	if (st->from[k] > 0)
		return fail(err, errlen,
			    "%s:%d: %s: already set on line %d (each key at most once; "
			    "a flag overrides the file)", st->file, n, o->flag, st->from[k]);

	char *v = eq + 1;
	while (is_blank(*v))
		v++;
	for (char *h = strchr(v, '#'); h; h = strchr(h + 1, '#'))
		if (h == v || is_blank(h[-1]))
			return fail(err, errlen, "%s:%d: %s: a comment must be on a line of its own",
				    st->file, n, o->flag);
	st->from[k] = n;
	if (!*v && !empty_ok(o->kind))
		return fail(err, errlen, "%s:%d: %s: needs a value (%s)", st->file, n, o->flag,
			    o->meta);
	if (set_value(cfg, o, v))
		return fail(err, errlen, "%s:%d: %s: invalid value '%.80s' (expected %s)", st->file,
			    n, o->flag, v, o->meta);
	return 0;
}

static int parse_text(struct config *cfg, struct state *st, char *text, size_t len, char *err,
		      size_t errlen)
{
	char *p = text, *end = text + len;
	int n = 0;

	if (len > CONFIG_FILE_MAX)
		return fail(err, errlen, "%s: larger than %u bytes", st->file, CONFIG_FILE_MAX);
	/* a UTF-8 byte-order mark, as some editors write, is not part of a key */
	if (len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3))
		p += 3;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *eol = nl ? nl : end;
		n++;
		if (eol > p && eol[-1] == '\r')
			eol--;
		if ((size_t)(eol - p) > CONFIG_LINE_MAX)
			return fail(err, errlen, "%s:%d: longer than %u bytes", st->file, n,
				    CONFIG_LINE_MAX);
		for (char *c = p; c < eol; c++) {
			unsigned char ch = (unsigned char)*c;
			if (ch == 0)
				return fail(err, errlen, "%s:%d: NUL byte in the line", st->file, n);
			if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return fail(err, errlen, "%s:%d: control character 0x%02x in the line",
					    st->file, n, ch);
		}
		while (eol > p && is_blank(eol[-1]))
			eol--;
		*eol = '\0';    /* the '\n' or '\r', a blank, or text[len]: room is promised */
		int rc = parse_line(cfg, st, p, n, err, errlen);
		if (rc)
			return rc;
		p = nl ? nl + 1 : end;
	}
	return 0;
}

int config_parse_text(struct config *cfg, const char *name, char *text, size_t len, char *err,
		      size_t errlen)
{
	struct state st = { .file = name };
	struct config tmp = *cfg;
	int rc = parse_text(&tmp, &st, text, len, err, errlen);

	if (!rc)
		rc = validate(&tmp, &st, err, errlen);
	if (!rc)
		*cfg = tmp;
	return rc;
}

/* The whole file into a buffer of CONFIG_FILE_MAX + 1 bytes (+1 for the
 * last line's terminator).  Not a FIFO or a device: a regular file, opened
 * without blocking, so a path naming a pipe cannot hang the start. */
static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
	struct stat st;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd == -1)
		return fail(err, errlen, "--config %s: %s", path, strerror(errno));
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(err, errlen, "--config %s: not a regular file", path);
	}
	if (st.st_size > (off_t)CONFIG_FILE_MAX) {
		close(fd);
		return fail(err, errlen, "--config %s: larger than %u bytes", path, CONFIG_FILE_MAX);
	}
	char *buf = malloc(CONFIG_FILE_MAX + 2);
	if (!buf) {
		close(fd);
		return fail(err, errlen, "--config %s: out of memory", path);
	}
	/* it may grow while we read: read one byte more than allowed to see that */
	while (len <= CONFIG_FILE_MAX) {
		ssize_t got = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
		if (got == -1 && errno == EINTR)
			continue;
		if (got == -1) {
			int e = errno;
			free(buf);
			close(fd);
			return fail(err, errlen, "--config %s: %s", path, strerror(e));
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	if (len > CONFIG_FILE_MAX) {
		free(buf);
		return fail(err, errlen, "--config %s: larger than %u bytes", path, CONFIG_FILE_MAX);
	}
	*out = buf;
	*outlen = len;
	return 0;
}

/* --- the command line ---------------------------------------------------- */

enum flag_special { F_TABLE, F_HELP, F_VERSION, F_CONFIG, F_CHECK };

/*
 * The flag at argv[*i] (and its value, which may be argv[*i + 1]: *i then
 * moves past it).  *o is the table's option for F_TABLE.
 */
static int next_flag(int argc, char **argv, int *i, const struct option_desc **o,
		     const char **value, char *err, size_t errlen)
{
	const char *arg = argv[*i];

	*o = NULL;
	*value = NULL;
	if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
		return F_HELP;
	if (!strcmp(arg, "--version") || !strcmp(arg, "-V"))
		return F_VERSION;
	if (!strcmp(arg, "--check-config"))
		return F_CHECK;
	if (!strncmp(arg, "--check-config=", 15))
		return fail(err, errlen, "--check-config takes no value");
	if (strncmp(arg, "--", 2) != 0)
		return fail(err, errlen, "unexpected argument '%s' (flags start with --)", arg);
	arg += 2;
	const char *eq = strchr(arg, '=');
	size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
	bool config = nlen == 6 && !strncmp(arg, "config", 6);

	if (!config && !(*o = find(arg, nlen)))
		return fail(err, errlen, "unknown flag --%.*s (see --help)", (int)nlen, arg);
	if (eq)
		*value = eq + 1;
	else if (*o && (*o)->kind == K_BOOL)
		*value = "true";
	else if (*i + 1 < argc)
		*value = argv[++*i];
	else
		return fail(err, errlen, "--%s needs a value (%s)", config ? "config" : (*o)->flag,
			    config ? "FILE" : (*o)->meta);
	return config ? F_CONFIG : F_TABLE;
}

int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	struct state st = { .file = NULL };
	const struct option_desc *o;
	const char *value;
	bool check = false;
	int rc;

	if ((rc = set_defaults(cfg, err, errlen)))
		return rc;

	/* first the special flags and the shape of every flag, in order */
	for (int i = 1; i < argc; i++) {
		rc = next_flag(argc, argv, &i, &o, &value, err, errlen);
		if (rc < 0 || rc == F_HELP)
			return rc < 0 ? rc : CONFIG_HELP;
		if (rc == F_VERSION)
			return CONFIG_VERSION;
		if (rc == F_CHECK)
			check = true;
		if (rc == F_CONFIG) {
			if (cfg->file)
				return fail(err, errlen, "--config given twice");
			if (!*value)
				return fail(err, errlen, "--config needs a value (FILE)");
			cfg->file = value;
		}
	}

	/* then the file, then the flags over it */
	if (cfg->file) {
		size_t len = 0;
		st.file = cfg->file;
		rc = read_file(cfg->file, &cfg->file_text, &len, err, errlen);
		if (!rc)
			rc = parse_text(cfg, &st, cfg->file_text, len, err, errlen);
		if (rc)
			goto out;
	}
	for (int i = 1; i < argc; i++) {
		rc = next_flag(argc, argv, &i, &o, &value, err, errlen);
		if (rc != F_TABLE)
			continue;
		/* a LISTEN flag given again adds to what the first one set */
		bool again = o->kind == K_LISTEN && st.from[o - options] == FROM_FLAG;
		st.from[o - options] = FROM_FLAG;
		if (again ? unwritable(value) || parse_listen(value, (void *)((char *)cfg + o->offset),
							      true)
			  : set_value(cfg, o, value)) {
			rc = fail(err, errlen, "--%s: invalid value '%s' (expected %s)", o->flag, value,
				  o->meta);
			goto out;
		}
	}
	rc = validate(cfg, &st, err, errlen);
	if (!rc)
		return check ? CONFIG_CHECK : CONFIG_OK;
out:
	config_deinit(cfg);
	return rc;
}

void config_deinit(struct config *cfg)
{
	free(cfg->file_text);
	cfg->file_text = NULL;
}

/* --- printing ------------------------------------------------------------ */

static int format_size(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "TGMK";

	for (int i = 0; i < 4 && v; i++) {
		uint64_t unit = 1ull << (10 * (4 - i));
		if (v % unit == 0)
			return snprintf(buf, len, "%" PRIu64 "%c", v / unit, units[i]);
	}
	return snprintf(buf, len, "%" PRIu64, v);
}

static int format_cpuset(const struct cpuset *s, char *buf, size_t len)
{
	size_t o = 0;

	if (len)
		buf[0] = '\0';
	for (unsigned i = 0; i < s->n;) {
		unsigned j = i;
		while (j + 1 < s->n && s->cpu[j + 1] == s->cpu[j] + 1)
			j++;
		char part[16];
		int n = j == i ? snprintf(part, sizeof(part), "%s%u", i ? "," : "", s->cpu[i])
			       : snprintf(part, sizeof(part), "%s%u-%u", i ? "," : "", s->cpu[i],
					  s->cpu[j]);
		if (len && o < len - 1)
			snprintf(buf + o, len - o, "%s", part);
		o += (size_t)n;
		i = j + 1;
	}
	return (int)o;
}

/* redis://user:password@host -> redis://user:***@host: --check-config's
 * output goes to terminals and logs. */
static int format_url(const char *url, char *buf, size_t len)
{
	const char *auth = strstr(url, "://");
	const char *at = auth ? strrchr(auth, '@') : NULL;

	if (!at)
		return snprintf(buf, len, "%s", url);
	auth += 3;
	const char *colon = memchr(auth, ':', (size_t)(at - auth));
	if (colon)
		return snprintf(buf, len, "%.*s:***%s", (int)(colon - url), url, at);
	return snprintf(buf, len, "%.*s***%s", (int)(auth - url), url, at);
}

int config_format_addr(const struct config_addr *a, char *buf, size_t len)
{
	if (a->path[0])
		return snprintf(buf, len, "unix:%s", a->path);
	return snprintf(buf, len, strchr(a->host, ':') ? "[%s]:%u" : "%s:%u", a->host, a->port);
}

static int format_value(const struct config *cfg, const struct option_desc *o, char *buf,
			size_t len)
{
	const void *field = (const char *)cfg + o->offset;
	uint32_t u;

	switch (o->kind) {
	case K_SIZE:
		return format_size(*(const uint64_t *)field, buf, len);
	case K_SIZEAUTO:
		if (*(const uint64_t *)field == CONFIG_SIZE_AUTO)
			return snprintf(buf, len, "auto");
		return format_size(*(const uint64_t *)field, buf, len);
	case K_U32:
		return snprintf(buf, len, "%" PRIu32, *(const uint32_t *)field);
	case K_COUNT:
	case K_CPU:
		u = *(const uint32_t *)field;
		if (u == (o->kind == K_COUNT ? CONFIG_COUNT_AUTO : CONFIG_CPU_AUTO))
			return snprintf(buf, len, "auto");
		return snprintf(buf, len, "%" PRIu32, u);
	case K_STR:
		return snprintf(buf, len, "%s", *(const char *const *)field ?: "");
	case K_URL:
		return format_url(*(const char *const *)field ?: "", buf, len);
	case K_BOOL:
		return snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false");
	case K_HUGEPAGES:
		switch (*(const enum config_hugepages *)field) {
		case CONFIG_HUGEPAGES_ON: return snprintf(buf, len, "on");
		case CONFIG_HUGEPAGES_OFF: return snprintf(buf, len, "off");
		default: return snprintf(buf, len, "auto");
		}
	case K_CPUSET:
		return format_cpuset(field, buf, len);
	case K_LISTEN: {
		const struct config_listen *l = field;
		size_t at = 0;
		if (len)
			buf[0] = '\0';
		for (unsigned i = 0; i < l->n; i++) {
			char one[160];
			int n = config_format_addr(&l->at[i], one, sizeof(one));
			if (len && at < len - 1)
				snprintf(buf + at, len - at, "%s%s", i ? ", " : "", one);
			at += (size_t)n + (i ? 2 : 0);
		}
		return (int)at;
	}
	case K_MODE:
		return snprintf(buf, len, "0%03" PRIo32, *(const uint32_t *)field);
	case K_SEED: {
		const struct config_seed *s = field;
		if (!s->fixed)
			return snprintf(buf, len, "random");
		return snprintf(buf, len, "0x%016" PRIx64, s->value);
	}
	}
	return snprintf(buf, len, "?");
}

int config_format(const struct config *cfg, const char *key, char *buf, size_t len)
{
	const struct option_desc *o = find(key, strlen(key));

	if (!o)
		return -ENOENT;
	int n = format_value(cfg, o, buf, len);
	return n < 0 ? 0 : (len && (size_t)n >= len ? (int)len - 1 : n);
}

void config_print(FILE *out, const struct config *cfg)
{
	char buf[4200];

	if (cfg->file)
		fprintf(out, "# ringcached: the effective configuration (flags over %s over the "
			     "defaults)\n", cfg->file);
	else
		fprintf(out, "# ringcached: the effective configuration (flags over the defaults)\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		format_value(cfg, &options[i], buf, sizeof(buf));
		fprintf(out, "%s =%s%s\n", options[i].flag, *buf ? " " : "", buf);
	}
}

/* The flags outside the table, for --help and the man page. */
static const struct {
	const char *flag, *meta, *help;
} extra_flags[] = {
	{ "config", "FILE", "read settings from FILE (KEY = VALUE lines; flags override it)" },
	{ "check-config", "", "check the flags and --config FILE, print the effective "
			      "configuration and exit (0: valid, 2: not)" },
	{ "help", "", "show this help" },
	{ "version", "", "show the version" },
};

void config_usage(FILE *out)
{
	char left[64];

	fprintf(out, "usage: ringcached [--config FILE] [FLAGS]\n\n"
		     "An HTTP/1.1 L1 cache served from pinned io_uring shards.\n"
		     "Every flag is also a key of the --config file: \"memory = 1G\".\n\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option_desc *o = &options[i];
		snprintf(left, sizeof(left), "--%s%s%s", o->flag, *o->meta ? " " : "", o->meta);
		fprintf(out, "  %-32s %s", left, o->help);
		if (o->kind != K_BOOL && *o->def)
			fprintf(out, " [%s]", o->def);
		fputc('\n', out);
	}
	for (size_t i = 0; i < sizeof(extra_flags) / sizeof(extra_flags[0]); i++) {
		snprintf(left, sizeof(left), "--%s%s%s", extra_flags[i].flag,
			 *extra_flags[i].meta ? " " : "", extra_flags[i].meta);
		fprintf(out, "  %-32s %s\n", left, extra_flags[i].help);
	}
}

/* Text for roff: '-' and '\' escaped, no line starting with '.' or '\''. */
static void roff(FILE *out, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", out);
	for (; *s; s++) {
		if (*s == '-' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
}

static void man_entry(FILE *out, const char *flag, const char *meta, const char *help,
		      const char *def)
{
	/* .BI alternates bold and italic: the flag bold, its value italic */
	fputs(*meta ? ".TP\n.BI \"\\-\\-" : ".TP\n.B \\-\\-", out);
	roff(out, flag);
	if (*meta) {
		fputs("\" \" ", out);
		roff(out, meta);
		fputc('"', out);
	}
	fputc('\n', out);
	roff(out, help);
	fputs(".\n", out);
	if (def && *def) {
		fputs("Default: ", out);
		roff(out, def);
		fputs(".\n", out);
	}
}

void config_man(FILE *out)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option_desc *o = &options[i];
		man_entry(out, o->flag, o->meta, o->help, o->kind == K_BOOL ? NULL : o->def);
	}
	for (size_t i = 0; i < sizeof(extra_flags) / sizeof(extra_flags[0]); i++)
		man_entry(out, extra_flags[i].flag, extra_flags[i].meta, extra_flags[i].help, NULL);
}
