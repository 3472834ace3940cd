/*
 * fuzz_config.c - libFuzzer target for config_parse(), the daemon's command
 * line: the input, split at NUL bytes, is argv[1..] (at most 64 arguments,
 * each its own allocation so a read past one is caught).
 *
 * Properties (abort on failure): the result is CONFIG_OK, CONFIG_HELP,
 * CONFIG_VERSION, CONFIG_CHECK or -EINVAL; -EINVAL comes with a non-empty
 * message that fits the buffer; an accepted configuration satisfies the
 * documented cross-field rules (powers of two, ranges), prints as a file
 * that reads back to itself (config_props.h), and its string fields point
 * into argv, at the defaults, or into the --config file's text (an input
 * may name a file: it is read, bounded, like any).  tests/fuzz/replay.c
 * runs corpus/config.
 */
#include <errno.h>

#include "config_props.h"

#define MAX_ARGS 64

static bool from(const char *p, char **argv, int argc)
{
	for (int i = 1; i < argc; i++)
		if (p >= argv[i] && p <= argv[i] + strlen(argv[i]))
			return true;
	return false;
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
	FUZZ_ASSERT(rc == CONFIG_OK || rc == CONFIG_HELP || rc == CONFIG_VERSION ||
		    rc == CONFIG_CHECK || rc == -EINVAL);
	if (rc == -EINVAL)
		FUZZ_ASSERT(err[0] && err[0] != 0x5a && memchr(err, '\0', sizeof(err)));
	if (rc == CONFIG_OK || rc == CONFIG_CHECK) {
		config_props_check(&cfg);
		const char *strs[] = { cfg.api_keys_file, cfg.redis, cfg.redis_prefix, cfg.instance_id };
		const char *defs[] = { defaults.api_keys_file, defaults.redis, defaults.redis_prefix,
				       defaults.instance_id };
		for (unsigned i = 0; i < 4; i++)
			FUZZ_ASSERT(strs[i] == defs[i] || from(strs[i], argv, argc) ||
				    (cfg.file_text && strs[i] >= cfg.file_text &&
				     strs[i] <= cfg.file_text + CONFIG_FILE_MAX + 1));
		config_props_reprint(&cfg);
		config_deinit(&cfg);
	}
	for (int i = 1; i < argc; i++)
		free(argv[i]);
	return 0;
}
