/*
 * url.h - redis:// URLs (url.c), parsed once at coh_create().  The parsed
 * form holds NUL-terminated strings: a URL comes from the command line, and
 * a %00 in it is refused, so no field can be cut short by a NUL.
 */
#ifndef RINGCACHE_COH_URL_H
#define RINGCACHE_COH_URL_H

#include <stdbool.h>

struct coh_url {
	char host[256];
	char port[8];
	char user[256];
	char password[256];
	bool auth;                 /* user and/or password given */
	unsigned db;
};

/*
 * Parses redis://[[user]:password@]HOST[:PORT][/DB] (scheme in any case;
 * user and password percent-decoded; HOST may be [IPv6]; PORT 1..65535,
 * default 6379; DB 0..1000000).  Returns 0, or -EINVAL with *u untouched.
 */
int coh_url_parse(const char *s, struct coh_url *u);

#endif
