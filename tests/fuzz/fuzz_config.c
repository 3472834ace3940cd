/*
 * fuzz_config.c - libFuzzer target for config_parse(), the daemon's command
 * line: the input, split at NUL bytes, is argv[1..] (at most 64 arguments,
 * each its own allocation so a read past one is caught).
 *
 * Properties (abort on failure): the result is CONFIG_OK, CONFIG_HELP,
 * CONFIG_VERSION or -EINVAL; -EINVAL comes with a non-empty message that
 * fits the buffer; an accepted configuration satisfies the documented
 * cross-field rules (powers of two, ranges) and its string fields point
 * into argv or at the defaults.  tests/fuzz/replay.c runs corpus/config.
 */
#include <errno.h>

#include "fuzz.h"
#include "ringcache/config.h"

#define MAX_ARGS 64

static bool from(const char *p, char **argv, int argc)
{
	for (int i = 1; i < argc; i++)
		if (p >= argv[i] && p <= argv[i] + strlen(argv[i]))
			return true;
	return false;
}

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[MAX_ARGS + 2];
	int argc = 0;
	struct config cfg, defaults;
	char err[256];
	char *no_args[] = { "ringcached", NULL };

	FUZZ_ASSERT(config_parse(&defaults, 1, no_args, err, sizeof(err)) == CONFIG_OK);
	argv[argc++] = "ringcached";
	for (size_t i = 0; i <= size && argc <= MAX_ARGS;) {
		const uint8_t *nul = memchr(data + i, '\0', size - i);
		size_t len = nul ? (size_t)(nul - data) - i : size - i;
		argv[argc++] = fuzz_cstr(data + i, len);
		i += len + 1;
	}
	argv[argc] = NULL;

	memset(err, 0x5a, sizeof(err));
	err[sizeof(err) - 1] = '\0';
	int rc = config_parse(&cfg, argc, argv, err, sizeof(err));
	FUZZ_ASSERT(rc == CONFIG_OK || rc == CONFIG_HELP || rc == CONFIG_VERSION || rc == -EINVAL);
	if (rc == -EINVAL)
		FUZZ_ASSERT(err[0] && err[0] != 0x5a && memchr(err, '\0', sizeof(err)));
	if (rc == CONFIG_OK) {
		FUZZ_ASSERT(pow2(cfg.ring_size) && cfg.ring_size >= 2 && cfg.ring_size <= (1u << 20));
		FUZZ_ASSERT(pow2(cfg.recv_buffers) && cfg.recv_buffers <= 32768);
		FUZZ_ASSERT(cfg.recv_buffer_size >= 512 && cfg.recv_buffer_size <= (1u << 20));
		FUZZ_ASSERT(cfg.max_value >= 1 && cfg.max_value <= (1ull << 30));
		FUZZ_ASSERT(cfg.memory >= (1ull << 20));
		FUZZ_ASSERT(cfg.max_head >= cfg.max_request_line && cfg.max_request_line >= 64);
		FUZZ_ASSERT(cfg.max_headers >= 1 && cfg.max_conns >= 1);
		FUZZ_ASSERT(cfg.brotli_quality <= 11 && cfg.gzip_level >= 1 && cfg.gzip_level <= 12);
		FUZZ_ASSERT(cfg.listen.port >= 1 && cfg.listen.host[0]);
		FUZZ_ASSERT(memchr(cfg.listen.host, '\0', sizeof(cfg.listen.host)));
		const char *strs[] = { cfg.api_keys_file, cfg.redis, cfg.redis_prefix, cfg.instance_id };
		const char *defs[] = { defaults.api_keys_file, defaults.redis, defaults.redis_prefix,
				       defaults.instance_id };
		for (unsigned i = 0; i < 4; i++)
			FUZZ_ASSERT(strs[i] == defs[i] || from(strs[i], argv, argc));
	}
	for (int i = 1; i < argc; i++)
		free(argv[i]);
	return 0;
}
