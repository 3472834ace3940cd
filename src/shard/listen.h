/*
 * listen.h - the daemon's listening sockets and the lock that keeps a port
 * to one ringcached.
 *
 * Every shard listens on the same address with its own socket
 * (SO_REUSEPORT, so the kernel spreads connections).  SO_REUSEPORT would also
 * let a second ringcached of the same user bind that address and silently
 * take half of the connections with its own cache, so a port is first
 * claimed for the life of the process: a Unix socket in the abstract
 * namespace, named after the port, is bound (an atomic claim the kernel drops
 * when the process dies, however it dies), and only then is the address
 * probed with a plain bind, which fails while any other server listens there.
 */
#ifndef RINGCACHE_LISTEN_H
#define RINGCACHE_LISTEN_H

#include <stddef.h>

#include "ringcache/config.h"

/*
 * Claims a's port for this process and checks that nothing else listens on
 * a.  Returns the claim's descriptor (keep it open for the life of the
 * process; closing it releases the port), or -EADDRINUSE / -errno with a
 * message naming `flag` (--listen, --resp-listen) in err.
 */
int listen_claim(const struct config_addr *a, const char *flag, char *err, size_t errlen);

/*
 * A listening TCP socket on a with SO_REUSEPORT, one per shard.  Returns the
 * descriptor or -errno with a message naming `flag` in err.
 */
int listen_socket(const struct config_addr *a, const char *flag, char *err, size_t errlen);

#endif
