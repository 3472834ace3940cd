/*
 * auth.h - API keys for /cache/, /stats and /metrics.
 *
 * Keys come from a file (--api-keys-file), never from the command line where
 * ps(1) would show them.  A set is immutable once created, so every shard
 * may call auth_check() on one shared instance without synchronisation.
 * SIGHUP replaces the daemon's set with a new one rather than changing it
 * (src/main.c reload_keys() publishes it and frees the old one once no
 * shard can be reading it).
 *
 * auth_check() runs on every request when keys are configured.  It compares
 * the presented key with every configured key over the same padded length,
 * so its running time depends only on the number of keys and the longest
 * key, never on the bytes of any key or on which key came closest.
 */
#ifndef RINGCACHE_AUTH_H
#define RINGCACHE_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define AUTH_KEY_MAX 256u   /* longest key, in bytes */
#define AUTH_KEYS_MAX 1024u /* most keys in one file */

struct auth;

/*
 * What auth_create() learned about the file.  Filled on success and on
 * failure (line says where a parse error is), so the daemon can name the
 * file and line in its message.
 */
struct auth_info {
	unsigned keys;      /* keys loaded */
	unsigned line;      /* 1-based line of the first bad line; 0: none */
	bool other_readable;    /* mode lets others read it: warn (group: the unit's
				 * SupplementaryGroups=ringcached, docs/operations.md) */
};

/*
 * Loads keys from `path`: one key per line; empty lines, lines holding only
 * whitespace and lines starting with '#' are skipped; trailing whitespace
 * (including CR) is trimmed.  A key is 1..AUTH_KEY_MAX bytes of visible ASCII
 * (0x21..0x7e).  `info` may be NULL.
 * Returns 0 and sets *out, or -errno from open/read, -EINVAL for a bad line
 * (info->line says which) or a file with no key, -E2BIG for more than
 * AUTH_KEYS_MAX keys, -ENOMEM.  *out is untouched on failure.
 */
int auth_create(struct auth **out, const char *path, struct auth_info *info);

/*
 * What went wrong with an auth_create() that returned `rc`, for a message
 * that names the file: "line 3 is not a valid key", "no keys in the file",
 * "more than 1024 keys", or strerror.  Written into buf; returns buf.
 */
const char *auth_strerror(int rc, const struct auth_info *info, char *buf, size_t len);

/* Wipes the keys from memory and frees them.  Accepts NULL. */
void auth_destroy(struct auth *a);

/*
 * True when `x_api_key` (the X-API-Key value) equals a configured key, or
 * `authorization` (the Authorization value) is "Bearer" (any case), one or
 * more spaces, and a configured key.  Either value may be NULL (absent).
 * Surrounding spaces and tabs of each value are ignored.  Callable from any
 * thread; constant-time in the keys' contents as described above.
 */
bool auth_check(const struct auth *a, const char *x_api_key, size_t x_len,
		const char *authorization, size_t a_len);

#endif
