/*
 * config.c - command-line parsing driven by the CONFIG_OPTIONS table.
 * Accepts "--flag value" and "--flag=value"; BOOL flags take no value.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/config.h"

enum kind { K_SIZE, K_U32, K_STR, K_BOOL, K_HUGEPAGES, K_CPUSET, K_ADDR, K_SEED };

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
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	out->port = (uint16_t)port;
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

static int set_value(struct config *cfg, const struct option_desc *o, const char *v)
{
	void *field = (char *)cfg + o->offset;

	switch (o->kind) {
	case K_SIZE:
		return config_parse_size(v, field);
	case K_U32:
		return parse_u32(v, field);
	case K_STR:
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
	case K_ADDR:
		return parse_addr(v, field);
	case K_SEED:
		return parse_seed(v, field);
	}
	return -EINVAL;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Cross-field checks, after every flag is in. */
static int validate(const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->ring_size < 2 || (cfg->ring_size & (cfg->ring_size - 1)))
		return fail(err, errlen, "--ring-size: %" PRIu32 " is not a power of two >= 2", cfg->ring_size);
	if (cfg->ring_size > (1u << 20))
		return fail(err, errlen, "--ring-size: at most 1048576");
	if (cfg->recv_buffers < 2 || cfg->recv_buffers > 32768 ||
	    (cfg->recv_buffers & (cfg->recv_buffers - 1)))
		return fail(err, errlen, "--recv-buffers: a power of two from 2 to 32768");
	if (cfg->recv_buffer_size < 512 || cfg->recv_buffer_size > (1u << 20))
		return fail(err, errlen, "--recv-buffer-size: from 512 bytes to 1M");
	if (cfg->max_value < 1 || cfg->max_value > (1ull << 30))
		return fail(err, errlen, "--max-value: from 1 byte to 1G");
	if (cfg->memory < (1ull << 20))
		return fail(err, errlen, "--memory: at least 1M");
	if (cfg->max_request_line < 64 || cfg->max_request_line > (1u << 20))
		return fail(err, errlen, "--max-request-line: from 64 bytes to 1M");
	if (cfg->max_head < cfg->max_request_line || cfg->max_head > (1u << 24))
		return fail(err, errlen, "--max-head: from --max-request-line to 16M");
	if (cfg->max_headers < 1)
		return fail(err, errlen, "--max-headers: at least 1");
	if (cfg->max_conns < 1)
		return fail(err, errlen, "--max-conns: at least 1");
	if (cfg->shards > CPUSET_MAX)
		return fail(err, errlen, "--shards: at most %d", CPUSET_MAX);
	if (cfg->idle_timeout < 1 || cfg->request_timeout < 1)
		return fail(err, errlen, "--idle-timeout and --request-timeout: at least 1 second");
	if (cfg->brotli_quality > 11)
		return fail(err, errlen, "--brotli-quality: from 0 to 11");
	if (cfg->gzip_level < 1 || cfg->gzip_level > 12)
		return fail(err, errlen, "--gzip-level: from 1 to 12");
	if (cfg->compress_threads > 64)     /* ZIP_THREADS_MAX (zip.h) */
		return fail(err, errlen, "--compress-threads: at most 64");
	if (cfg->redis_timeout < 1)
		return fail(err, errlen, "--redis-timeout: at least 1 millisecond");
	return 0;
}

int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (set_value(cfg, &options[i], options[i].def))
			return fail(err, errlen, "internal: bad default for --%s", options[i].flag);

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *value = NULL;
		size_t nlen;

		if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
			return CONFIG_HELP;
		if (!strcmp(arg, "--version") || !strcmp(arg, "-V"))
			return CONFIG_VERSION;
		if (strncmp(arg, "--", 2) != 0)
			return fail(err, errlen, "unexpected argument '%s' (flags start with --)", arg);
		arg += 2;
		const char *eq = strchr(arg, '=');
		nlen = eq ? (size_t)(eq - arg) : strlen(arg);

		const struct option_desc *o = NULL;
		for (size_t k = 0; k < N_OPTIONS; k++)
			if (strlen(options[k].flag) == nlen && !strncmp(options[k].flag, arg, nlen))
				o = &options[k];
		if (!o)
			return fail(err, errlen, "unknown flag --%.*s (see --help)", (int)nlen, arg);

		if (eq)
			value = eq + 1;
		else if (o->kind == K_BOOL)
			value = "true";
		else if (i + 1 < argc)
			value = argv[++i];
		else
			return fail(err, errlen, "--%s needs a value (%s)", o->flag, o->meta);

		if (set_value(cfg, o, value))
			return fail(err, errlen, "--%s: invalid value '%s' (expected %s)", o->flag, value,
				    o->meta);
	}
	int rc = validate(cfg, err, errlen);
	return rc ? rc : CONFIG_OK;
}

void config_usage(FILE *out)
{
	fprintf(out, "usage: ringcached [FLAGS]\n\nAn HTTP/1.1 L1 cache served from pinned io_uring shards.\n\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option_desc *o = &options[i];
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", o->flag, *o->meta ? " " : "", o->meta);
		fprintf(out, "  %-32s %s", left, o->help);
		if (o->kind != K_BOOL && *o->def)
			fprintf(out, " [%s]", o->def);
		fputc('\n', out);
	}
	fprintf(out, "  %-32s %s\n  %-32s %s\n", "--help", "show this help", "--version", "show the version");
}
