/* netaddr: listening sockets from "host:port" settings ("0.0.0.0:8443", "[::]:8443"), and the
 * IP addresses of the comma-separated trust lists (peer, proxyproto). */
#ifndef KOOISV_NETADDR_H
#define KOOISV_NETADDR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A non-blocking, close-on-exec listening TCP socket bound to hostport (numeric host), with
 * TCP_NODELAY set so that every socket it accepts has it too; with
 * reuseport several sockets may share the address (SO_REUSEPORT: the kernel spreads the
 * connections). Returns the fd, or -1 with the reason in err. */
int netaddr_listen(const char *hostport, bool reuseport, char *err, size_t errlen);
/* The local port a socket is bound to, or -1. */
int netaddr_local_port(int fd);
/* hostport with its port replaced by port, into out ("0.0.0.0:0" -> "0.0.0.0:41234"). */
void netaddr_with_port(const char *hostport, int port, char *out, size_t outlen);
/* Textual IP address into 16 bytes, IPv4 as IPv4-mapped IPv6 so both spellings compare equal;
 * *v4 (unless NULL) says whether it was IPv4. False when text is not an address. */
bool netaddr_ip_parse(const char *text, uint8_t out[16], bool *v4);
/* The next item of the comma-separated list at *p: true with the item in [*item, *item + *len)
 * (blanks kept, maybe empty) and *p moved past it; false at the end of the list (or p NULL). */
bool netaddr_list_next(const char **p, const char **item, size_t *len);
/* Narrow [*s, *s + *len) to leave out its surrounding blanks (spaces and tabs). */
void netaddr_trim(const char **s, size_t *len);

#endif
