#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "log.h"

static void ssl_reason(const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, buf);
}

SSL_CTX *tlsctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_reason("SSL_CTX_new", err, errlen);
        return NULL;
    }
    /* Spec §1: TLS 1.2 or newer. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* TLS 1.2: forward-secret AEAD suites only, for ECDSA and RSA certificates alike. */
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL") != 1) {
        ssl_reason("cipher list", err, errlen);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_reason(cert_file, err, errlen);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_reason(key_file, err, errlen);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_reason("certificate and key do not match", err, errlen);
        goto fail;
    }
    /* TLS 1.3: one session ticket per full handshake instead of OpenSSL's two. A client resumes
     * with it and gets a new one each time, so one is enough to keep resuming; each ticket is a
     * serialised, encrypted session and a record written on every new connection. */
    SSL_CTX_set_num_tickets(ctx, 1);
    static const unsigned char sid_ctx[] = "kooisv-gateway";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct bufferevent *tlsctx_bufferevent(struct event_base *base, SSL *ssl, const char *log_prefix)
{
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        log_error(NULL, "%scannot create a TLS bufferevent: out of memory", log_prefix);
        abort();
    }
    /* Clients that close without close_notify are common; that is an ordinary EOF here. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

long long tlsctx_not_after(SSL_CTX *ctx)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    const ASN1_TIME *t = cert ? X509_get0_notAfter(cert) : NULL;
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (long long)timegm(&tm);
}
