/*
 * listen.h - the daemon's listening sockets and the lock that keeps an
 * address to one ringcached.
 *
 * TCP: every shard listens on the same address with its own socket
 * (SO_REUSEPORT, so the kernel spreads connections).  SO_REUSEPORT would also
 * let a second ringcached of the same user bind that address and silently
 * take half of the connections with its own cache, so a port is first
 * claimed for the life of the process: a Unix socket in the abstract
 * namespace, named after the port, is bound (an atomic claim the kernel drops
 * when the process dies, however it dies), and only then is the address
 * probed with a plain bind, which fails while any other server listens there.
 *
 * Unix sockets (unix:PATH): one listening socket, made once by the server
 * and shared by every shard, each of which keeps a multishot accept on it
 * (SO_REUSEPORT does not spread Unix sockets).  The claim is named after the
 * path.  A socket file left by a daemon that died is replaced: a connect()
 * to it is refused, so nobody listens there.  A file that answers, or that
 * is not a socket, is left alone and the start refused.  The file is made
 * with --listen-mode and --listen-group, and removed at stop if it is still
 * the one this process made.
 */
#ifndef RINGCACHE_LISTEN_H
#define RINGCACHE_LISTEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ringcache/config.h"

#define LISTEN_MAX (2 * CONFIG_LISTEN_MAX)   /* --listen's and --resp-listen's */

/* One address the daemon serves, as the server holds it. */
struct listen_point {
	const struct config_addr *at;   /* in the configuration */
	const char *flag;               /* "--listen" or "--resp-listen" */
	uint8_t proto;                  /* PROTO_HTTP or PROTO_RESP (conn.h) */
	int claim;                      /* the claim's descriptor */
	int fd;                         /* a Unix socket's, shared by the shards; -1: TCP */
	dev_t dev;                      /* the socket file made, to remove at stop */
	ino_t ino;
};

struct listen_set {
	unsigned n;
	struct listen_point p[LISTEN_MAX];
};

/*
 * Claims every address of cfg's --listen and --resp-listen, and makes the
 * Unix sockets (with cfg's --listen-mode and --listen-group).  0, or
 * -errno with a message naming the flag in err; nothing stays open then.
 */
int listen_open(struct listen_set *ls, const struct config *cfg, uint8_t http, uint8_t resp,
		char *err, size_t errlen);

/* Closes what listen_open() opened and removes the socket files it made. */
void listen_close(struct listen_set *ls);

/*
 * A listening TCP socket on a with SO_REUSEPORT, one per shard.  Returns the
 * descriptor or -errno with a message naming `flag` in err.
 */
int listen_socket(const struct config_addr *a, const char *flag, char *err, size_t errlen);

#endif
