/*
 * fuzz_config_file.c - libFuzzer target for config_parse_text(), the
 * --config file parser: the input is the file's bytes, applied over the
 * defaults.
 *
 * Properties (abort on failure): the result is 0 or -EINVAL; -EINVAL comes
 * with a message that fits the buffer and starts with the file's name and
 * a line number no larger than the input's line count, and leaves the
 * configuration untouched; an accepted configuration satisfies the
 * documented rules and prints as a file that reads back to itself
 * (config_props.h), and its string fields point into the input's buffer or
 * at the defaults.  tests/fuzz/replay.c runs corpus/config-file.
 */
#include <errno.h>
#include <stdlib.h>

#include "config_props.h"

static bool within(const char *p, const char *buf, size_t len)
{
	return p >= buf && p <= buf + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg, defaults;
	char err[512];
	char *no_args[] = { "ringcached", NULL };
	/* exactly size + 1 bytes: the parser may use the one after the text
	 * (not a NUL: it must not rely on one being there) */
	char *text = malloc(size + 1);
	size_t lines = 1;

	FUZZ_ASSERT(text != NULL);
	memcpy(text, data, size);
	text[size] = 0x5a;

	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	FUZZ_ASSERT(config_parse(&defaults, 1, no_args, err, sizeof(err)) == CONFIG_OK);
	cfg = defaults;
	memset(err, 0x5a, sizeof(err));
	err[sizeof(err) - 1] = '\0';
	int rc = config_parse_text(&cfg, "fuzz.conf", text, size, err, sizeof(err));
	FUZZ_ASSERT(rc == 0 || rc == -EINVAL);
	if (rc) {
		FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) && !strncmp(err, "fuzz.conf:", 10));
		char *end;
		unsigned long line = strtoul(err + 10, &end, 10);
		FUZZ_ASSERT(end != err + 10 && *end == ':' && line <= lines);
		FUZZ_ASSERT(!memcmp(&cfg, &defaults, sizeof(cfg)));
	} else {
		config_props_check(&cfg);
		const char *strs[] = { cfg.api_keys_file, cfg.redis, cfg.redis_prefix, cfg.instance_id };
		const char *defs[] = { defaults.api_keys_file, defaults.redis, defaults.redis_prefix,
				       defaults.instance_id };
		for (unsigned i = 0; i < 4; i++)
			FUZZ_ASSERT(strs[i] == defs[i] || within(strs[i], text, size));
		config_props_reprint(&cfg);
	}
	free(text);
	return 0;
}
