/*
 * config.h - the daemon's settings, declared once in CONFIG_OPTIONS so the
 * struct, the parser, the defaults and --help cannot drift apart.
 *
 * X(flag, kind, field, default, meta, help)
 *   kind: SIZE (bytes, suffix K/M/G), U32, STR, BOOL (no value), HUGEPAGES,
 *         CPUSET (taskset syntax), ADDR (HOST:PORT), SEED ("random" or a
 *         64-bit number, decimal or 0x hex)
 */
#ifndef RINGCACHE_CONFIG_H
#define RINGCACHE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ringcache/cpuset.h"

#define CONFIG_OPTIONS(X)                                                          \
	X("listen", ADDR, listen, "127.0.0.1:8080", "HOST:PORT",                   \
	  "address every shard listens on (SO_REUSEPORT)")                         \
	X("shards", U32, shards, "0", "N",                                         \
	  "number of shards; 0: one per CPU of --cpuset or of the allowed set")    \
	X("cpuset", CPUSET, cpuset, "", "LIST",                                    \
	  "CPUs to pin shards to, taskset syntax (e.g. 2-5,8)")                    \
	X("memory", SIZE, memory, "256M", "SIZE",                                  \
	  "total L1 budget across shards, index included")                         \
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
	X("redis", STR, redis, "", "URL",                                          \
	  "redis://[user:password@]HOST:PORT[/DB] to use as L2")                   \
	X("redis-prefix", STR, redis_prefix, "ringcache:", "PREFIX",               \
	  "prefix of every Redis key and channel")                                 \
	X("redis-timeout", U32, redis_timeout, "50", "MILLISECONDS",               \
	  "deadline of each Redis operation")                                      \
	X("coherence-cpu", U32, coherence_cpu, "4294967295", "N",                  \
	  "CPU of the coherence thread (default: one outside the shards)")         \
	X("instance-id", STR, instance_id, "", "ID",                               \
	  "this instance's id in the registry (default: generated)")                \
	X("hash-seed", SEED, hash_seed, "random", "random|N",                      \
	  "key hash seed; keep it random (a known seed lets clients aim keys at one shard)")

enum config_hugepages { CONFIG_HUGEPAGES_AUTO, CONFIG_HUGEPAGES_ON, CONFIG_HUGEPAGES_OFF };

/* --hash-seed: drawn at start unless fixed. */
struct config_seed {
	bool fixed;
	uint64_t value;
};

struct config_addr {
	char host[64];
	uint16_t port;
};

#define CONFIG_TYPE_SIZE uint64_t
#define CONFIG_TYPE_U32 uint32_t
#define CONFIG_TYPE_STR const char *
#define CONFIG_TYPE_BOOL bool
#define CONFIG_TYPE_HUGEPAGES enum config_hugepages
#define CONFIG_TYPE_CPUSET struct cpuset
#define CONFIG_TYPE_ADDR struct config_addr
#define CONFIG_TYPE_SEED struct config_seed

struct config {
#define CONFIG_FIELD(flag, kind, field, def, meta, help) CONFIG_TYPE_##kind field;
	CONFIG_OPTIONS(CONFIG_FIELD)
#undef CONFIG_FIELD
};

enum config_result {
	CONFIG_OK = 0,
	CONFIG_HELP,      /* --help given: print config_usage() */
	CONFIG_VERSION,   /* --version given */
};

/*
 * Fills `cfg` with the defaults, then applies argv.  Returns a
 * config_result, or -EINVAL with a message naming the flag in err.
 * String values point into argv.
 */
int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Parses "16M", "512K", "1G", "100" into bytes; 0 or -EINVAL. */
int config_parse_size(const char *s, uint64_t *out);

void config_usage(FILE *out);

#endif
