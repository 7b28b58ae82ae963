/* kconn: a blocking OpenSSL client on one socket. The client leaves Nagle's algorithm on and
 * writes each request whole, as most HTTP clients do: if an answer waits in the kernel, it is
 * the server's doing. */
#include "kconn.h"

#include "xmalloc.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define KCONN_MAX_HEAD 65536
#define KCONN_MAX_BODY (64 << 20)

struct kconn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char host[256];
    char *buf; /* bytes read past the previous answer */
    size_t have, cap;
};

/* host and port of "https://host:port/...", IPv6 brackets removed. */
static int split_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen)
{
    if (strncasecmp(url, "https://", 8) != 0)
        return -1;
    const char *h = url + 8;
    const char *end = h + strcspn(h, "/?");
    const char *colon;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close)
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(close - h - 1), h + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        snprintf(host, hostlen, "%.*s", (int)((colon ? colon : end) - h), h);
    }
    snprintf(port, portlen, "%.*s", colon ? (int)(end - colon - 1) : 3, colon ? colon + 1 : "443");
    return 0;
}

kconn_t *kconn_open(const char *url, const char *ca_file, char *err, size_t errlen)
{
    return kconn_open_from(url, ca_file, NULL, NULL, 0, err, errlen);
}

kconn_t *kconn_open_from(const char *url, const char *ca_file, const char *src,
                         const void *preamble, size_t plen, char *err, size_t errlen)
{
    char host[256], port[16];
    if (!url || split_url(url, host, sizeof host, port, sizeof port) != 0) {
        snprintf(err, errlen, "not an https URL: %s", url ? url : "(null)");
        return NULL;
    }
    if (!ca_file)
        ca_file = suite_get("KOOISV_CA_FILE");
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
        snprintf(err, errlen, "cannot resolve %s", host);
        return NULL;
    }
    kconn_t *self = xcalloc(1, sizeof *self);
    snprintf(self->host, sizeof self->host, "%s", host);
    self->fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {10, 0};
    if (self->fd >= 0) {
        setsockopt(self->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(self->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (self->fd >= 0 && src) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, src, &sa.sin_addr) != 1 ||
            bind(self->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            snprintf(err, errlen, "cannot bind to %s", src);
            goto fail;
        }
    }
    if (self->fd < 0 || connect(self->fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(err, errlen, "cannot connect to %s:%s", host, port);
        goto fail;
    }
    if (plen && send(self->fd, preamble, plen, MSG_NOSIGNAL) != (ssize_t)plen) {
        snprintf(err, errlen, "cannot send the preamble to %s:%s", host, port);
        goto fail;
    }
    self->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(self->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(self->ctx, SSL_VERIFY_PEER, NULL);
    if (!ca_file || !*ca_file || SSL_CTX_load_verify_locations(self->ctx, ca_file, NULL) != 1) {
        snprintf(err, errlen, "cannot load CA file %s", ca_file ? ca_file : "(none)");
        goto fail;
    }
    self->ssl = SSL_new(self->ctx);
    X509_VERIFY_PARAM *param = SSL_get0_param(self->ssl);
    struct in6_addr probe;
    if (inet_pton(AF_INET, host, &probe) == 1 || inet_pton(AF_INET6, host, &probe) == 1)
        X509_VERIFY_PARAM_set1_ip_asc(param, host);
    else
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    SSL_set_fd(self->ssl, self->fd);
    if (SSL_connect(self->ssl) != 1) {
        snprintf(err, errlen, "TLS handshake with %s:%s failed", host, port);
        goto fail;
    }
    freeaddrinfo(res);
    return self;
fail:
    ERR_clear_error();
    freeaddrinfo(res);
    kconn_destroy(&self);
    return NULL;
}

void kconn_destroy(kconn_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kconn_t *self = *self_p;
    if (self->ssl)
        SSL_free(self->ssl);
    if (self->ctx)
        SSL_CTX_free(self->ctx);
    if (self->fd >= 0)
        close(self->fd);
    free(self->buf);
    free(self);
    *self_p = NULL;
}

/* Read more bytes into the buffer; -1 on EOF or error. */
static int fill(kconn_t *self)
{
    if (self->cap - self->have < 16384) {
        self->cap = self->cap ? self->cap * 2 : 65536;
        self->buf = xrealloc(self->buf, self->cap + 1);
    }
    int r = SSL_read(self->ssl, self->buf + self->have, (int)(self->cap - self->have));
    if (r <= 0) {
        ERR_clear_error();
        return -1;
    }
    self->have += (size_t)r;
    self->buf[self->have] = '\0';
    return 0;
}

static int fail_with(kresp_t *out, const char *why)
{
    snprintf(out->error, sizeof out->error, "%s", why);
    if (!out->body)
        out->body = xstrdup("");
    if (!out->headers)
        out->headers = xcalloc(1, sizeof(char *));
    return -1;
}

int kconn_request(kconn_t *self, const char *method, const char *path_and_query,
                  const char *const *headers, const char *body, size_t len, kresp_t *out)
{
    memset(out, 0, sizeof *out);
    size_t hl = 0;
    for (size_t i = 0; headers && headers[i]; i++)
        hl += strlen(headers[i]) + 2;
    char *extra = xmalloc(hl + 1);
    extra[0] = '\0';
    for (size_t i = 0; headers && headers[i]; i++) {
        strcat(extra, headers[i]);
        strcat(extra, "\r\n");
    }
    char *head = xasprintf("%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %zu\r\n\r\n", method,
                           path_and_query, self->host, extra, body ? len : 0);
    free(extra);
    size_t headlen = strlen(head);
    char *req = xmalloc(headlen + len + 1);
    memcpy(req, head, headlen);
    if (body && len)
        memcpy(req + headlen, body, len);
    free(head);
    int w = SSL_write(self->ssl, req, (int)(headlen + (body ? len : 0)));
    free(req);
    if (w <= 0) {
        ERR_clear_error();
        return fail_with(out, "write failed");
    }

    char *end;
    while (!(end = self->buf ? strstr(self->buf, "\r\n\r\n") : NULL)) {
        if (self->have > KCONN_MAX_HEAD)
            return fail_with(out, "answer header too large");
        if (fill(self) != 0)
            return fail_with(out, "connection closed before an answer");
    }
    size_t head_len = (size_t)(end - self->buf) + 4;
    if (sscanf(self->buf, "HTTP/1.%*d %d", &out->status) != 1)
        return fail_with(out, "not an HTTP answer");
    /* Header lines: everything after the status line up to the blank line. */
    size_t n = 0, content_length = 0;
    bool chunked = false;
    out->headers = xcalloc(64, sizeof(char *));
    for (char *line = strstr(self->buf, "\r\n") + 2; line < end && n < 63;) {
        char *eol = strstr(line, "\r\n");
        char *h = xstrndup(line, (size_t)(eol - line));
        if (strncasecmp(h, "Content-Length:", 15) == 0)
            content_length = strtoul(h + 15, NULL, 10);
        if (strncasecmp(h, "Transfer-Encoding:", 18) == 0 && strcasestr(h, "chunked"))
            chunked = true;
        out->headers[n++] = h;
        line = eol + 2;
    }
    if (chunked)
        return fail_with(out, "chunked answers are not supported");
    if (content_length > KCONN_MAX_BODY)
        return fail_with(out, "answer body too large");
    while (self->have < head_len + content_length)
        if (fill(self) != 0)
            return fail_with(out, "connection closed inside the answer body");
    out->body = xstrndup(self->buf + head_len, content_length);
    out->len = content_length;
    size_t used = head_len + content_length;
    memmove(self->buf, self->buf + used, self->have - used);
    self->have -= used;
    self->buf[self->have] = '\0';

    kresp_parse(out);
    return 0;
}
