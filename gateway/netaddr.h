/* netaddr: listening sockets from "host:port" settings ("0.0.0.0:8443", "[::]:8443"). */
#ifndef KOOISV_NETADDR_H
#define KOOISV_NETADDR_H
#include <stdbool.h>
#include <stddef.h>

/* A non-blocking, close-on-exec listening TCP socket bound to hostport (numeric host), with
 * TCP_NODELAY set so that every socket it accepts has it too; with
 * reuseport several sockets may share the address (SO_REUSEPORT: the kernel spreads the
 * connections). Returns the fd, or -1 with the reason in err. */
int netaddr_listen(const char *hostport, bool reuseport, char *err, size_t errlen);
/* The local port a socket is bound to, or -1. */
int netaddr_local_port(int fd);
/* hostport with its port replaced by port, into out ("0.0.0.0:0" -> "0.0.0.0:41234"). */
void netaddr_with_port(const char *hostport, int port, char *out, size_t outlen);

#endif
