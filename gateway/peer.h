/* peer: who is calling. The source address recorded for a request is the TCP peer, or the client
 * named by X-Forwarded-For when (and only when) the peer is a trusted proxy; the caller id is a
 * key id derived from the key, never the key. */
#ifndef KOOISV_PEER_H
#define KOOISV_PEER_H
#include <stdbool.h>
#include <stddef.h>

typedef struct peer_trust peer_trust_t;
struct evhttp_request;

#define PEER_ADDR_MAX 64 /* enough for any textual IPv6 address */

/* Trusted proxies from a comma list of IP addresses ("" = none). NULL when an entry is not an
 * address; err then names it. Caller owns the result. */
peer_trust_t *peer_trust_new(const char *list, char *err, size_t errlen);
/* Destroy and set *self_p to NULL. */
void peer_trust_destroy(peer_trust_t **self_p);
/* True when ip (textual) is one of the trusted proxies. */
bool peer_trust_has(const peer_trust_t *self, const char *ip);
/* The source address of a request from peer_ip carrying X-Forwarded-For xff (may be NULL):
 * walking xff from the right, the first address that is not a trusted proxy; the peer itself
 * when the peer is not trusted or xff holds anything that is not an address. Writes out. */
void peer_source(const peer_trust_t *self, const char *peer_ip, const char *xff, char *out,
                 size_t outlen);
/* The TCP peer address of req (the client a trusted load balancer's PROXY header named, when
 * one did: proxyproto.h), "" when its connection is gone. Writes out. */
void peer_address(struct evhttp_request *req, char *out, size_t outlen);
/* The TCP peer of req into peer_out and its source address (peer_source over all of req's
 * X-Forwarded-For lines joined in order; self NULL trusts no proxy: the source is the peer)
 * into source_out, both outlen bytes. */
void peer_request_source(const peer_trust_t *self, struct evhttp_request *req, char *peer_out,
                         char *source_out, size_t outlen);
/* Key id: the first 8 hex digits of SHA-256(key), into out[9]. */
void peer_key_id(const char *key, char out[9]);

#endif
