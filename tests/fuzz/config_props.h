/*
 * config_props.h - what every accepted configuration satisfies, whichever
 * parser made it (fuzz_config.c: the command line; fuzz_config_file.c: the
 * --config file): the documented cross-field rules, and the effective
 * configuration that --check-config prints reads back to itself.
 */
#ifndef RINGCACHE_FUZZ_CONFIG_PROPS_H
#define RINGCACHE_FUZZ_CONFIG_PROPS_H

#include "fuzz.h"
#include "ringcache/config.h"

static inline bool config_props_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static inline void config_props_check(const struct config *cfg)
{
	FUZZ_ASSERT(config_props_pow2(cfg->ring_size) && cfg->ring_size >= 2 &&
		    cfg->ring_size <= (1u << 20));
	FUZZ_ASSERT(config_props_pow2(cfg->recv_buffers) && cfg->recv_buffers <= 32768);
	FUZZ_ASSERT(cfg->recv_buffer_size >= 512 && cfg->recv_buffer_size <= (1u << 20));
	FUZZ_ASSERT(cfg->max_value >= 1 && cfg->max_value <= (1ull << 30));
	FUZZ_ASSERT(cfg->memory >= (1ull << 20));
	FUZZ_ASSERT(cfg->max_head >= cfg->max_request_line && cfg->max_request_line >= 64);
	FUZZ_ASSERT(cfg->max_headers >= 1 && cfg->max_conns >= 1);
	FUZZ_ASSERT(cfg->brotli_quality <= 11 && cfg->gzip_level >= 1 && cfg->gzip_level <= 12);
	FUZZ_ASSERT(cfg->listen.n >= 1 && cfg->listen.n <= CONFIG_LISTEN_MAX);
	FUZZ_ASSERT(cfg->resp_listen.n <= CONFIG_LISTEN_MAX);
	for (unsigned i = 0; i < cfg->listen.n + cfg->resp_listen.n; i++) {
		const struct config_addr *a = i < cfg->listen.n ? &cfg->listen.at[i]
							: &cfg->resp_listen.at[i - cfg->listen.n];
		FUZZ_ASSERT(memchr(a->host, '\0', sizeof(a->host)));
		FUZZ_ASSERT(memchr(a->path, '\0', sizeof(a->path)));
		/* a TCP address or an absolute path, never both or neither */
		FUZZ_ASSERT(a->path[0] ? a->path[0] == '/' && !a->port && !a->host[0]
				       : a->port >= 1 && a->host[0]);
	}
	FUZZ_ASSERT(cfg->listen_mode <= 0777);
	FUZZ_ASSERT(cfg->shards <= CPUSET_MAX);
	FUZZ_ASSERT(cfg->coherence_cpu == CONFIG_CPU_AUTO || cfg->coherence_cpu < CPUSET_MAX);
}

/* config_print(cfg) as a malloc'd string. */
static inline char *config_props_print(const struct config *cfg, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	FUZZ_ASSERT(f != NULL);
	config_print(f, cfg);
	FUZZ_ASSERT(fclose(f) == 0);
	return text;
}

/*
 * The printed configuration, read as a --config file over the defaults,
 * is accepted and prints the same again (the password of a redis URL is
 * printed masked; the masked form is a fixed point).
 */
static inline void config_props_reprint(const struct config *cfg)
{
	struct config again;
	char err[512];
	char *no_args[] = { "ringcached", NULL };
	size_t len, len2;
	char *text = config_props_print(cfg, &len);
	char *copy = fuzz_copy(text, len + 1);

	FUZZ_ASSERT(config_parse(&again, 1, no_args, err, sizeof(err)) == CONFIG_OK);
	if (config_parse_text(&again, "printed", copy, len, err, sizeof(err)) != 0) {
		fprintf(stderr, "printed configuration refused: %s\n%s", err, text);
		FUZZ_ASSERT(!"the printed configuration reads back");
	}
	char *text2 = config_props_print(&again, &len2);
	if (strcmp(text, text2) != 0)
		fprintf(stderr, "printed:\n%s\nread back and printed:\n%s", text, text2);
	FUZZ_ASSERT(strcmp(text, text2) == 0);
	free(text);
	free(text2);
	free(copy);
}

#endif
