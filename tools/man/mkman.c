/*
 * mkman.c - build-time generator of what is written from the flags' table
 * (include/ringcache/config.h) besides --help, so that none can drift from
 * it: compiled with config.c for the build machine, run by meson.
 *
 *   mkman man TEMPLATE OUT VERSION   ringcached(8): TEMPLATE with its line
 *                                    "@OPTIONS@" replaced by config_man()'s
 *                                    entries and "@VERSION@" by VERSION
 *   mkman conf OUT                   an example --config file: every key at
 *                                    its default (config_print)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/config.h"

static int man(const char *template, const char *out, const char *version)
{
	FILE *in = fopen(template, "r");
	FILE *o = fopen(out, "w");
	char line[4096];
	int options = 0;

	if (!in || !o) {
		perror(!in ? template : out);
		return 1;
	}
	while (fgets(line, sizeof(line), in)) {
		if (!strcmp(line, "@OPTIONS@\n")) {
			config_man(o);
			options++;
			continue;
		}
		char *v = strstr(line, "@VERSION@");
		if (v) {
			*v = '\0';
			fprintf(o, "%s%s%s", line, version, v + 9);
		} else {
			fputs(line, o);
		}
	}
	fclose(in);
	if (fclose(o) != 0 || options != 1) {
		fprintf(stderr, "mkman: %s: %s\n", template,
			options != 1 ? "needs exactly one @OPTIONS@ line" : "write failed");
		return 1;
	}
	return 0;
}

static int conf(const char *out)
{
	struct config cfg;
	char err[256];
	char *argv[] = { "ringcached", NULL };
	FILE *o = fopen(out, "w");

	if (!o || config_parse(&cfg, 1, argv, err, sizeof(err)) != CONFIG_OK) {
		fprintf(stderr, "mkman: %s\n", o ? err : out);
		return 1;
	}
	fprintf(o, "# An example --config file for ringcached: every key with its default.\n"
		   "# Keep the lines you change; flags given to ringcached override them.\n"
		   "# `ringcached --config FILE --check-config` checks a file and prints\n"
		   "# what is in force.  See ringcached(8).\n");
	config_print(o, &cfg);
	return fclose(o) != 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "man"))
		return man(argv[2], argv[3], argv[4]);
	if (argc == 3 && !strcmp(argv[1], "conf"))
		return conf(argv[2]);
	fprintf(stderr, "usage: mkman man TEMPLATE OUT VERSION | mkman conf OUT\n");
	return 2;
}
