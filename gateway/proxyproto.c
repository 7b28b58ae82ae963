#include "proxyproto.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "netaddr.h"
#include "timeutil.h"
#include "xmalloc.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

proxyproto_status_t proxyproto_parse(const uint8_t *buf, size_t len, size_t *need,
                                     proxyproto_header_t *out)
{
    size_t n = len < sizeof SIG ? len : sizeof SIG;
    if (memcmp(buf, SIG, n) != 0)
        return PROXYPROTO_NONE;
    *need = 16;
    if (len < 16)
        return PROXYPROTO_NEED_MORE;
    if ((buf[12] >> 4) != 2 || (buf[12] & 0x0F) > 1)
        return PROXYPROTO_BAD;
    size_t alen = (size_t)buf[14] << 8 | buf[15];
    *need = 16 + alen;
    if (*need > PROXYPROTO_HEADER_MAX)
        return PROXYPROTO_BAD;
    if (len < *need)
        return PROXYPROTO_NEED_MORE;
    memset(out, 0, sizeof *out);
    int family = buf[13] >> 4, proto = buf[13] & 0x0F;
    /* LOCAL (the proxy's own health check) and UNSPEC carry no client: the peer is the client. */
    if ((buf[12] & 0x0F) == 0 || family == 0) {
        out->local = true;
        return PROXYPROTO_OK;
    }
    const uint8_t *a = buf + 16;
    if (proto != 1)
        return PROXYPROTO_BAD;
    if (family == 1 && alen >= 12) {
        inet_ntop(AF_INET, a, out->addr, sizeof out->addr);
        out->port = (uint16_t)(a[8] << 8 | a[9]);
    } else if (family == 2 && alen >= 36) {
        inet_ntop(AF_INET6, a, out->addr, sizeof out->addr);
        out->port = (uint16_t)(a[32] << 8 | a[33]);
    } else {
        return PROXYPROTO_BAD;
    }
    return PROXYPROTO_OK;
}

/* ---- trust list ---- */

typedef struct {
    uint8_t addr[16]; /* IPv4 as IPv4-mapped IPv6 */
    int bits;
} range_t;

struct proxyproto_trust {
    range_t *ranges;
    size_t n;
};

static bool range_parse(const char *text, range_t *r)
{
    char host[PROXYPROTO_ADDR_MAX];
    const char *slash = strchr(text, '/');
    size_t hl = slash ? (size_t)(slash - text) : strlen(text);
    if (hl == 0 || hl >= sizeof host)
        return false;
    memcpy(host, text, hl);
    host[hl] = '\0';
    bool v4;
    if (!netaddr_ip_parse(host, r->addr, &v4))
        return false;
    int max = v4 ? 32 : 128;
    r->bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || b < 0 || b > max)
            return false;
        r->bits = (int)b;
    }
    if (v4)
        r->bits += 96;
    return true;
}

static bool range_has(const range_t *r, const uint8_t a[16])
{
    int full = r->bits / 8, rest = r->bits % 8;
    if (memcmp(r->addr, a, (size_t)full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (r->addr[full] & mask) == (a[full] & mask);
}

proxyproto_trust_t *proxyproto_trust_new(const char *list, char *err, size_t errlen)
{
    proxyproto_trust_t *self = xcalloc(1, sizeof *self);
    const char *p = list, *s;
    size_t len;
    while (netaddr_list_next(&p, &s, &len)) {
        netaddr_trim(&s, &len);
        if (!len)
            continue;
        char tok[PROXYPROTO_ADDR_MAX + 8];
        range_t r;
        if (len >= sizeof tok || (memcpy(tok, s, len), tok[len] = '\0', !range_parse(tok, &r))) {
            snprintf(err, errlen, "not an address or CIDR: %.*s", (int)(len > 64 ? 64 : len), s);
            proxyproto_trust_destroy(&self);
            return NULL;
        }
        self->ranges = xrealloc(self->ranges, (self->n + 1) * sizeof *self->ranges);
        self->ranges[self->n++] = r;
    }
    return self;
}

void proxyproto_trust_destroy(proxyproto_trust_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->ranges);
    free(*self_p);
    *self_p = NULL;
}

bool proxyproto_trust_has(const proxyproto_trust_t *self, const char *ip)
{
    uint8_t a[16];
    bool v4;
    if (!self || !ip || !netaddr_ip_parse(ip, a, &v4))
        return false;
    for (size_t i = 0; i < self->n; i++)
        if (range_has(&self->ranges[i], a))
            return true;
    return false;
}

size_t proxyproto_trust_count(const proxyproto_trust_t *self)
{
    return self ? self->n : 0;
}

/* ---- the BIO in front of each TLS connection's socket ---- */

typedef struct {
    const proxyproto_trust_t *trust;
    const char *log_prefix;
} ctx_conf_t;

enum { PHASE_HEADER, PHASE_REPLAY, PHASE_PASS, PHASE_REFUSED };

/* One connection's state: owned by its BIO, found from the SSL object through ex_data. */
typedef struct {
    const ctx_conf_t *conf;
    int phase;
    uint8_t buf[PROXYPROTO_HEADER_MAX];
    size_t have, off, need;
    bool has_client;
    char client[PROXYPROTO_ADDR_MAX];
} conn_state_t;

static BIO_METHOD *method;
static int ctx_index = -1, ssl_index = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_ulong refused_total;
static atomic_llong last_warn_us;

static void peer_of(BIO *next, char *out, size_t outlen)
{
    int fd = -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    snprintf(out, outlen, "?");
    if (BIO_get_fd(next, &fd) < 0 || fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)outlen);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)outlen);
}

static int refuse(conn_state_t *st, const char *peer, const char *why)
{
    st->phase = PHASE_REFUSED;
    atomic_fetch_add(&refused_total, 1);
    int64_t now = time_mono_us();
    long long last = atomic_load(&last_warn_us);
    if (now - last > 1000000 && atomic_compare_exchange_strong(&last_warn_us, &last, now))
        log_warn(NULL, "%sPROXY header from %s refused: %s", st->conf->log_prefix, peer, why);
    ERR_raise_data(ERR_LIB_USER, 1, "PROXY header refused");
    return -1;
}

/* Read the header, if any. 1 when the connection may go on, else what the read returns. */
static int header_step(BIO *b, conn_state_t *st, BIO *next)
{
    if (!st->need)
        st->need = 16;
    for (;;) {
        int n = BIO_read(next, st->buf + st->have, (int)(st->need - st->have));
        if (n <= 0) {
            BIO_copy_next_retry(b);
            return n;
        }
        st->have += (size_t)n;
        proxyproto_header_t h;
        proxyproto_status_t s = proxyproto_parse(st->buf, st->have, &st->need, &h);
        if (s == PROXYPROTO_NONE) {
            st->phase = PHASE_REPLAY; /* TLS from the first byte: hand those bytes on */
            return 1;
        }
        char peer[PROXYPROTO_ADDR_MAX];
        if (st->have >= sizeof SIG) {
            peer_of(next, peer, sizeof peer);
            if (!proxyproto_trust_has(st->conf->trust, peer))
                return refuse(st, peer, "not a trusted proxy (KOOISV_PROXY_PROTOCOL_FROM)");
        }
        if (s == PROXYPROTO_BAD)
            return refuse(st, peer, "malformed or unsupported header");
        if (s == PROXYPROTO_OK) {
            if (!h.local) {
                st->has_client = true;
                snprintf(st->client, sizeof st->client, "%s", h.addr);
            }
            st->have = st->off = 0;
            st->phase = PHASE_PASS;
            return 1;
        }
    }
}

static int pp_read(BIO *b, char *out, int outl)
{
    conn_state_t *st = BIO_get_data(b);
    BIO *next = BIO_next(b);
    BIO_clear_retry_flags(b);
    if (!st || !next || outl <= 0)
        return 0;
    if (st->phase == PHASE_REFUSED)
        return -1;
    if (st->phase == PHASE_HEADER) {
        int r = header_step(b, st, next);
        if (r <= 0)
            return r;
    }
    if (st->phase == PHASE_REPLAY) {
        size_t n = st->have - st->off;
        if (n > (size_t)outl)
            n = (size_t)outl;
        memcpy(out, st->buf + st->off, n);
        st->off += n;
        if (st->off == st->have)
            st->phase = PHASE_PASS;
        return (int)n;
    }
    int n = BIO_read(next, out, outl);
    BIO_copy_next_retry(b);
    return n;
}

static int pp_write(BIO *b, const char *in, int inl)
{
    BIO *next = BIO_next(b);
    BIO_clear_retry_flags(b);
    if (!next)
        return 0;
    int n = BIO_write(next, in, inl);
    BIO_copy_next_retry(b);
    return n;
}

static long pp_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    BIO *next = BIO_next(b);
    if (!next)
        return 0;
    long r = BIO_ctrl(next, cmd, num, ptr);
    conn_state_t *st = BIO_get_data(b);
    if (cmd == BIO_CTRL_PENDING && st && st->phase == PHASE_REPLAY)
        r += (long)(st->have - st->off);
    return r;
}

static long pp_callback_ctrl(BIO *b, int cmd, BIO_info_cb *fp)
{
    BIO *next = BIO_next(b);
    return next ? BIO_callback_ctrl(next, cmd, fp) : 0;
}

static int pp_destroy(BIO *b)
{
    free(BIO_get_data(b));
    BIO_set_data(b, NULL);
    return 1;
}

static void conf_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static void init_once(void)
{
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, conf_free);
    ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "kooisv PROXY v2");
    if (!method || ctx_index < 0 || ssl_index < 0) {
        log_error(NULL, "proxyproto: out of memory");
        abort();
    }
    BIO_meth_set_read(method, pp_read);
    BIO_meth_set_write(method, pp_write);
    BIO_meth_set_ctrl(method, pp_ctrl);
    BIO_meth_set_callback_ctrl(method, pp_callback_ctrl);
    BIO_meth_set_destroy(method, pp_destroy);
}

/* At the start of the first handshake, before OpenSSL reads a byte, the socket BIO libevent
 * gave the connection gets this filter in front of it (reading only: answers go out as before). */
static void on_info(const SSL *cssl, int where, int ret)
{
    (void)ret;
    SSL *ssl = (SSL *)cssl;
    if (!(where & SSL_CB_HANDSHAKE_START) || SSL_get_ex_data(ssl, ssl_index))
        return;
    const ctx_conf_t *conf = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
    BIO *next = SSL_get_rbio(ssl);
    if (!conf || !next)
        return;
    BIO *f = BIO_new(method);
    if (!f) {
        log_error(NULL, "proxyproto: out of memory");
        abort();
    }
    conn_state_t *st = xcalloc(1, sizeof *st);
    st->conf = conf;
    BIO_set_data(f, st);
    BIO_set_init(f, 1);
    BIO_up_ref(next);
    BIO_push(f, next);
    SSL_set_ex_data(ssl, ssl_index, st);
    SSL_set0_rbio(ssl, f); /* drops the reference the SSL held; the chain keeps its own */
}

void proxyproto_enable(SSL_CTX *ctx, const proxyproto_trust_t *trust, const char *log_prefix)
{
    pthread_once(&once, init_once);
    ctx_conf_t *conf = xcalloc(1, sizeof *conf);
    conf->trust = trust;
    conf->log_prefix = log_prefix ? log_prefix : "";
    SSL_CTX_set_ex_data(ctx, ctx_index, conf); /* freed with ctx */
    SSL_CTX_set_info_callback(ctx, on_info);
}

bool proxyproto_client(SSL *ssl, char *out, size_t outlen)
{
    if (!ssl || ssl_index < 0)
        return false;
    const conn_state_t *st = SSL_get_ex_data(ssl, ssl_index);
    if (!st || !st->has_client)
        return false;
    snprintf(out, outlen, "%s", st->client);
    return true;
}

unsigned long proxyproto_refused_total(void)
{
    return atomic_load(&refused_total);
}
