/* proxyproto: the PROXY protocol, version 2 (haproxy.org's proxy-protocol.txt, section 2.2), as
 * a TCP load balancer in front of the gateway sends it (HAProxy "send-proxy-v2"): a binary header
 * before the client's first byte that names the client's address. The gateway believes it only
 * from the addresses in a trust list (CIDRs, KOOISV_PROXY_PROTOCOL_FROM): from any other peer a
 * header is refused and the connection closed, and with an empty list no header is accepted at
 * all. A trusted peer may also connect without one (the LB's own health check); the source is
 * then the peer. Version 1 (text) headers are not accepted.
 *
 * Two layers: proxyproto_parse() reads one header from bytes (pure, fuzzed), and
 * proxyproto_enable() puts it in front of every TLS connection of an SSL_CTX, so that the
 * address a header names becomes the connection's peer address (proxyproto_client). */
#ifndef KOOISV_PROXYPROTO_H
#define KOOISV_PROXYPROTO_H
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROXYPROTO_ADDR_MAX 64     /* textual IPv6 fits */
#define PROXYPROTO_HEADER_MAX 1024 /* 16 fixed bytes + addresses + TLVs; longer ones are refused   \
                                    */

typedef enum {
    PROXYPROTO_NEED_MORE, /* a prefix of a header: *need says how many bytes in all */
    PROXYPROTO_NONE,      /* the bytes do not start with the v2 signature */
    PROXYPROTO_OK,        /* one whole header of *need bytes */
    PROXYPROTO_BAD        /* the signature, then something that is not a valid header */
} proxyproto_status_t;

typedef struct {
    bool local;                     /* LOCAL command, or an address family without addresses */
    char addr[PROXYPROTO_ADDR_MAX]; /* the client's address ("" when local) */
    uint16_t port;                  /* the client's port */
} proxyproto_header_t;

/* Parse the header at the start of buf[0..len). NEED_MORE and OK set *need (bytes the header
 * takes, or at least 16 while the length is not known yet); OK fills *out. BAD: wrong version or
 * command, a family or protocol other than TCP over IPv4/IPv6 with addresses, an address block
 * shorter than its family needs, or a length over PROXYPROTO_HEADER_MAX. */
proxyproto_status_t proxyproto_parse(const uint8_t *buf, size_t len, size_t *need,
                                     proxyproto_header_t *out);

typedef struct proxyproto_trust proxyproto_trust_t;

/* Trust list from a comma list of CIDRs or addresses ("10.0.0.0/8, fd00::/8, 192.0.2.7"; ""
 * = none). NULL when an entry is not one; err then names it. Caller owns the result. */
proxyproto_trust_t *proxyproto_trust_new(const char *list, char *err, size_t errlen);
/* Destroy and set *self_p to NULL. */
void proxyproto_trust_destroy(proxyproto_trust_t **self_p);
/* True when ip (textual IPv4 or IPv6) is inside one of the list's ranges. */
bool proxyproto_trust_has(const proxyproto_trust_t *self, const char *ip);
/* Number of ranges in the list. */
size_t proxyproto_trust_count(const proxyproto_trust_t *self);

/* Every connection of ctx reads a PROXY v2 header first, if one comes: believed from the peers in
 * trust (kept, not owned; it must outlive ctx), refused (the handshake fails, the connection is
 * closed, one warning per second at most) from anyone else. ctx must not use an info callback of
 * its own. log_prefix (static) starts the warning. */
void proxyproto_enable(SSL_CTX *ctx, const proxyproto_trust_t *trust, const char *log_prefix);
/* The client address a believed header gave ssl's connection into out; false (out untouched)
 * when there was none (then the TCP peer is the client). */
bool proxyproto_client(SSL *ssl, char *out, size_t outlen);
/* Connections whose header was refused, since start (all contexts). */
unsigned long proxyproto_refused_total(void);

#endif
