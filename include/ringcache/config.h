/*
 * config.h - the daemon's settings, declared once in CONFIG_OPTIONS so the
 * struct, the flag parser, the configuration file's keys, the defaults,
 * --help, --check-config's output and the man page cannot drift apart.
 *
 * X(flag, kind, field, default, meta, help)
 *   kind: SIZE (bytes, suffix K/M/G), U32, STR, URL (a STR whose password
 *         is hidden when printed), BOOL (no value on the command line),
 *         HUGEPAGES, CPUSET (taskset syntax), LISTEN (a list of HOST:PORT
 *         and unix:PATH, comma-separated; a flag given again adds to the
 *         list), SEED ("random" or a 64-bit number, decimal or 0x hex),
 *         COUNT ("auto" or N >= 1), CPU ("auto" or a CPU number), SIZEAUTO
 *         ("auto" or a SIZE above 0), MODE (octal file permissions)
 *   default: the value as a user would write it, and what --help and the
 *         man page show.  A default the daemon computes at start is a word
 *         ("auto", "random"), never the number the field holds for it:
 *         COUNT, CPU and SIZEAUTO exist so that "auto" has no number to spell it.
 *         tests/unit/test_config.c checks that every default parses and
 *         prints back as itself.
 *
 * Every flag is also a key of the --config file (the flag without its
 * dashes); --config, --check-config, --help and --version are flags only.
 */
#ifndef RINGCACHE_CONFIG_H
#define RINGCACHE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ringcache/cpuset.h"

#define CONFIG_OPTIONS(X)                                                          \
	X("listen", LISTEN, listen, "127.0.0.1:8080", "HOST:PORT|unix:PATH",      \
	  "addresses every shard serves HTTP on; repeat the flag (or separate with commas) for more") \
	X("resp-listen", LISTEN, resp_listen, "", "HOST:PORT|unix:PATH",           \
	  "addresses every shard also serves the Redis protocol (RESP) on; empty: none") \
	X("listen-mode", MODE, listen_mode, "0660", "MODE",                        \
	  "permissions of the unix: socket files (octal)")                         \
	X("listen-group", STR, listen_group, "", "GROUP",                          \
	  "group of the unix: socket files, a name or a number; empty: the daemon's") \
	X("shards", COUNT, shards, "auto", "auto|N",                               \
	  "number of shards; auto: one per CPU of --cpuset or of the allowed set") \
	X("cpuset", CPUSET, cpuset, "", "LIST",                                    \
	  "CPUs to pin shards to, taskset syntax (e.g. 2-5,8)")                    \
	X("memory", SIZE, memory, "256M", "SIZE",                                  \
	  "total L1 budget across shards, index included")                         \
	X("tag-memory", SIZEAUTO, tag_memory, "auto", "auto|SIZE",                 \
	  "memory for the tag indexes, all shards (auto: a quarter of --memory)") \
	X("max-value", SIZE, max_value, "16M", "SIZE",                             \
	  "largest value accepted (413 above)")                                    \
	X("hugepages", HUGEPAGES, hugepages, "auto", "auto|on|off",                \
	  "arena pages: on = hugetlb or refuse to start")                          \
	X("prefault", BOOL, prefault, "false", "",                                 \
	  "touch the whole arena at startup")                                      \
	X("idle-timeout", U32, idle_timeout, "60", "SECONDS",                      \
	  "close connections idle this long")                                      \
	X("request-timeout", U32, request_timeout, "10", "SECONDS",                \
	  "close connections whose started request is not complete this long")    \
	X("max-conns", U32, max_conns, "65536", "N",                               \
	  "open connections per shard; more are refused")                          \
	X("conn-memory", SIZEAUTO, conn_memory, "auto", "auto|SIZE",               \
	  "memory held for connections, all shards (auto: a quarter of RAM or of the cgroup's limit)") \
	X("max-request-line", SIZE, max_request_line, "8K", "SIZE",                \
	  "longest request line (414 above)")                                      \
	X("max-head", SIZE, max_head, "32K", "SIZE",                               \
	  "largest request head (431 above)")                                      \
	X("max-headers", U32, max_headers, "100", "N",                             \
	  "most header fields in a request (431 above)")                           \
	X("spin-us", U32, spin_us, "20", "MICROSECONDS",                           \
	  "how long an idle shard polls before it parks")                          \
	X("ring-size", U32, ring_size, "128", "N",                                 \
	  "entries per cross-shard ring (power of two)")                           \
	X("recv-buffers", U32, recv_buffers, "1024", "N",                          \
	  "provided receive buffers per shard (power of two)")                     \
	X("recv-buffer-size", SIZE, recv_buffer_size, "16K", "SIZE",               \
	  "size of each provided receive buffer")                                  \
	X("send-zc-min", SIZE, send_zc_min, "0", "SIZE",                          \
	  "send answers of at least this many bytes zero-copy (IORING_OP_SENDMSG_ZC); 0: off (pays only over a NIC)") \
	X("compress-min", SIZE, compress_min, "256", "SIZE",                       \
	  "smallest value stored with br/gzip variants")                           \
	X("compress-max", SIZE, compress_max, "1M", "SIZE",                        \
	  "largest value given variants")                                          \
	X("compress-threads", U32, compress_threads, "1", "N",                     \
	  "threads making the variants off the shards; 0: values get no variants") \
	X("compress-cpuset", CPUSET, compress_cpuset, "", "LIST",                  \
	  "CPUs for those threads; unpinned or on a shard's CPU: SCHED_IDLE")      \
	X("brotli-quality", U32, brotli_quality, "4", "0-11",                      \
	  "brotli quality for stored variants")                                    \
	X("gzip-level", U32, gzip_level, "6", "1-12",                              \
	  "gzip (libdeflate) level for stored variants")                           \
	X("default-ttl", U32, default_ttl, "0", "SECONDS",                         \
	  "TTL of writes that give none; 0: no expiry")                            \
	X("api-keys-file", STR, api_keys_file, "", "PATH",                         \
	  "file with one API key per line; enables auth")                          \
	X("snapshot", STR, snapshot, "", "PATH",                                   \
	  "warm restarts: L1 saved here at SIGTERM, loaded (then removed) at start") \
	X("redis", URL, redis, "", "URL",                                          \
	  "redis://[user:password@]HOST[:PORT][/DB] to use as L2")                   \
	X("redis-prefix", STR, redis_prefix, "ringcache:", "PREFIX",               \
	  "prefix of every Redis key and channel")                                 \
	X("redis-timeout", U32, redis_timeout, "50", "MILLISECONDS",               \
	  "deadline of each Redis operation")                                      \
	X("coherence-cpu", CPU, coherence_cpu, "auto", "auto|N",                   \
	  "CPU of the coherence thread; auto: an allowed CPU no shard uses")       \
	X("instance-id", STR, instance_id, "", "ID",                               \
	  "this instance's id in the registry (default: generated)")                \
	X("lease-wait", U32, lease_wait, "2000", "MILLISECONDS",                   \
	  "how long a GET with X-Cache-Fill: lease waits for another client's fill") \
	X("lease-ttl", U32, lease_ttl, "2000", "MILLISECONDS",                     \
	  "a fill lease not filled this long ends (the next waiter gets one)")     \
	X("hash-seed", SEED, hash_seed, "random", "random|N",                      \
	  "key hash seed; keep it random (a known seed lets clients aim keys at one shard)")

enum config_hugepages { CONFIG_HUGEPAGES_AUTO, CONFIG_HUGEPAGES_ON, CONFIG_HUGEPAGES_OFF };

/* --hash-seed: drawn at start unless fixed. */
struct config_seed {
	bool fixed;
	uint64_t value;
};

/* One address of a LISTEN list: TCP HOST:PORT, or a Unix socket's file. */
struct config_addr {
	char host[64];          /* TCP; "" for a Unix socket */
	uint16_t port;          /* TCP; 0 for a Unix socket */
	char path[108];         /* unix:PATH, absolute (sun_path's size); "" for TCP */
};

#define CONFIG_LISTEN_MAX 4u    /* addresses per LISTEN option */

struct config_listen {
	unsigned n;
	struct config_addr at[CONFIG_LISTEN_MAX];
};

/* What a COUNT field holds for "auto"; a CPU field's "auto". */
#define CONFIG_COUNT_AUTO 0u
#define CONFIG_SIZE_AUTO 0u       /* SIZEAUTO "auto" (a size of 0 is refused) */
#define CONFIG_CPU_AUTO UINT32_MAX

/* Bounds of the --config file: larger files and longer lines are refused. */
#define CONFIG_FILE_MAX 65536u
#define CONFIG_LINE_MAX 4096u

#define CONFIG_TYPE_SIZE uint64_t
#define CONFIG_TYPE_SIZEAUTO uint64_t
#define CONFIG_TYPE_U32 uint32_t
#define CONFIG_TYPE_COUNT uint32_t
#define CONFIG_TYPE_CPU uint32_t
#define CONFIG_TYPE_STR const char *
#define CONFIG_TYPE_URL const char *
#define CONFIG_TYPE_BOOL bool
#define CONFIG_TYPE_HUGEPAGES enum config_hugepages
#define CONFIG_TYPE_CPUSET struct cpuset
#define CONFIG_TYPE_LISTEN struct config_listen
#define CONFIG_TYPE_MODE uint32_t
#define CONFIG_TYPE_SEED struct config_seed

struct config {
#define CONFIG_FIELD(flag, kind, field, def, meta, help) CONFIG_TYPE_##kind field;
	CONFIG_OPTIONS(CONFIG_FIELD)
#undef CONFIG_FIELD
	/* how this configuration was made, not settable themselves */
	const char *file;       /* --config FILE, or NULL */
	char *file_text;        /* FILE's bytes, owned: its strings point here */
};

enum config_result {
	CONFIG_OK = 0,
	CONFIG_HELP,      /* --help given: print config_usage() */
	CONFIG_VERSION,   /* --version given */
	CONFIG_CHECK,     /* --check-config given and the configuration is valid */
};

/*
 * Fills `cfg` with the defaults, then the --config file if one is named
 * (anywhere on the command line), then the other flags, so flags override
 * the file.  Returns a config_result, or -EINVAL with a message in err that
 * names the flag, or the file, line and key (FILE:LINE: KEY: ...).
 * --help and --version are answered as soon as they are seen, before the
 * file is read.  String values point into argv or into cfg->file_text:
 * config_deinit() frees the latter, also after a failure.
 */
int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Frees what config_parse() allocated.  Accepts a zeroed config. */
void config_deinit(struct config *cfg);

/*
 * The configuration file parser, applied over what `cfg` holds: `text` is
 * the file's `len` bytes, with room for one more (it is cut into strings in
 * place, and `cfg`'s strings point into it); `name` is used in messages.
 * Every key at most once; the result is checked as config_parse() checks
 * its own.  0, or -EINVAL with "NAME:LINE: KEY: why" in err (LINE 0: the
 * file as a whole).  The format is config_usage()'s and docs/operations.md's.
 */
int config_parse_text(struct config *cfg, const char *name, char *text, size_t len, char *err,
		      size_t errlen);

/* Parses "16M", "512K", "1G", "100" into bytes; 0 or -EINVAL. */
int config_parse_size(const char *s, uint64_t *out);

/*
 * `key`'s value in `cfg` as a configuration file would say it (the default
 * as written in the table, for a default).  The length written (without
 * the NUL; truncated to fit `len`), or -ENOENT for an unknown key.
 */
int config_format(const struct config *cfg, const char *key, char *buf, size_t len);

/* One address as --listen takes it: HOST:PORT, [V6]:PORT or unix:PATH.
 * snprintf's return. */
int config_format_addr(const struct config_addr *a, char *buf, size_t len);

/* Every key with its value, as a configuration file: --check-config. */
void config_print(FILE *out, const struct config *cfg);

/* --help. */
void config_usage(FILE *out);

/* The OPTIONS section of ringcached(8), in man(7) roff, from the same table. */
void config_man(FILE *out);

#endif
