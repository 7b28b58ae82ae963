#include "peer.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cryptoutil.h"
#include "netaddr.h"
#include "proxyproto.h"
#include "xmalloc.h"

struct peer_trust {
    uint8_t (*addrs)[16];
    size_t n;
};

/* Copy the token [s, s+len) without surrounding blanks into buf; false if it does not fit. */
static bool token_trim(const char *s, size_t len, char *buf, size_t buflen)
{
    netaddr_trim(&s, &len);
    if (len >= buflen)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return true;
}

peer_trust_t *peer_trust_new(const char *list, char *err, size_t errlen)
{
    peer_trust_t *self = xcalloc(1, sizeof *self);
    const char *p = list, *item;
    size_t len;
    while (netaddr_list_next(&p, &item, &len)) {
        char tok[PEER_ADDR_MAX];
        uint8_t addr[16];
        bool fits = token_trim(item, len, tok, sizeof tok);
        if (!fits || (*tok && !netaddr_ip_parse(tok, addr, NULL))) {
            snprintf(err, errlen, "not an IP address: %.*s", (int)(len > 64 ? 64 : len), item);
            peer_trust_destroy(&self);
            return NULL;
        }
        if (*tok) {
            self->addrs = xrealloc(self->addrs, (self->n + 1) * sizeof *self->addrs);
            memcpy(self->addrs[self->n++], addr, 16);
        }
    }
    return self;
}

void peer_trust_destroy(peer_trust_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->addrs);
    free(*self_p);
    *self_p = NULL;
}

static bool trust_has_addr(const peer_trust_t *self, const uint8_t addr[16])
{
    for (size_t i = 0; self && i < self->n; i++)
        if (memcmp(self->addrs[i], addr, 16) == 0)
            return true;
    return false;
}

bool peer_trust_has(const peer_trust_t *self, const char *ip)
{
    uint8_t addr[16];
    return ip && netaddr_ip_parse(ip, addr, NULL) && trust_has_addr(self, addr);
}

void peer_source(const peer_trust_t *self, const char *peer_ip, const char *xff, char *out,
                 size_t outlen)
{
    snprintf(out, outlen, "%s", peer_ip ? peer_ip : "");
    if (!xff || !*xff || !peer_trust_has(self, peer_ip))
        return;
    /* Right to left: each trusted hop vouches for the one before it. */
    const char *end = xff + strlen(xff);
    char leftmost[PEER_ADDR_MAX] = "";
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        char tok[PEER_ADDR_MAX];
        uint8_t addr[16];
        if (!token_trim(start, (size_t)(end - start), tok, sizeof tok) ||
            !netaddr_ip_parse(tok, addr, NULL))
            return; /* garbage: trust nothing the proxies relayed */
        if (!trust_has_addr(self, addr)) {
            snprintf(out, outlen, "%s", tok);
            return;
        }
        snprintf(leftmost, sizeof leftmost, "%s", tok);
        end = start > xff ? start - 1 : xff;
    }
    if (*leftmost)
        snprintf(out, outlen, "%s", leftmost);
}

void peer_address(struct evhttp_request *req, char *out, size_t outlen)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon) {
        snprintf(out, outlen, "%s", "");
        return;
    }
    /* Behind a trusted load balancer the client is the one its PROXY header named. */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    if (bev && proxyproto_client(bufferevent_openssl_get_ssl(bev), out, outlen))
        return;
    evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(out, outlen, "%s", addr ? addr : "");
}

void peer_request_source(const peer_trust_t *self, struct evhttp_request *req, char *peer_out,
                         char *source_out, size_t outlen)
{
    peer_address(req, peer_out, outlen);
    /* Every X-Forwarded-For line, joined in order: a proxy that appends a line of its own
     * (HAProxy's option forwardfor) must not let the client's first line win. */
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evkeyval *kv;
    size_t n = 0, len = 0;
    for (kv = TAILQ_FIRST(h); kv; kv = TAILQ_NEXT(kv, next)) {
        if (strcasecmp(kv->key, "X-Forwarded-For") == 0) {
            n++;
            len += strlen(kv->value) + 2;
        }
    }
    if (n <= 1) {
        peer_source(self, peer_out, evhttp_find_header(h, "X-Forwarded-For"), source_out, outlen);
        return;
    }
    char *joined = xmalloc(len + 1);
    joined[0] = '\0';
    for (kv = TAILQ_FIRST(h); kv; kv = TAILQ_NEXT(kv, next)) {
        if (strcasecmp(kv->key, "X-Forwarded-For") == 0) {
            if (*joined)
                strcat(joined, ", ");
            strcat(joined, kv->value);
        }
    }
    peer_source(self, peer_out, joined, source_out, outlen);
    free(joined);
}

void peer_key_id(const char *key, char out[9])
{
    uint8_t digest[32];
    char hex[65];
    sha256(key, strlen(key), digest);
    hex_encode(digest, 32, hex);
    memcpy(out, hex, 8);
    out[8] = '\0';
}
