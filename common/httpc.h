/* httpc: a small blocking HTTPS/HTTP client (libevent + OpenSSL) for the calls the suite makes
 * outward: Query Order, usage push, seller webhooks, and the tests' own requests. */
#ifndef KOOISV_HTTPC_H
#define KOOISV_HTTPC_H
#include <stddef.h>
#include <stdio.h>

typedef struct {
    int status; /* HTTP status, 0 if none was received */
    char *body; /* NUL-terminated, may contain NULs before body_len */
    size_t body_len;
    char **headers;  /* "Name: value" strings, NULL-terminated */
    char error[128]; /* why the request failed when status == 0 */
    int tls_resumed; /* 1 when the connection's TLS handshake resumed a session */
    int reused;      /* 1 when the answer came on a kept-alive connection (no handshake) */
} httpc_response_t;

typedef struct {
    const char *ca_file; /* PEM bundle to verify the server; NULL = system store */
    int verify_peer;     /* 1 = verify certificate and host name (default), 0 = don't (tests) */
    int timeout_ms;      /* whole request; <= 0 means 5000 */
    /* Non-NULL: a 2xx body is written here as it arrives, whatever its size, and not kept in
     * out->body (which stays empty); other answers are kept as usual. A write error fails the
     * request. */
    FILE *body_sink;
    /* 1: use an idle connection kept from an earlier request to the same host name and port
     * under the same CA file and verification setting, and keep this one for the next (idle
     * at most 4 s). A request whose kept connection is closed under it before any answer is
     * sent once more on a new connection, so only requests that may be repeated set this.
     * 0: a new connection, closed after the answer (Connection: close). A caller's own
     * Connection header always means 0. */
    int keep_alive;
} httpc_options_t;

/* Perform one request to an http:// or https:// URL. A new https connection offers the TLS
 * session of the last successful request to the same host name and port made with the same CA
 * file and verification setting, and forgets it after a failure. headers is a NULL-terminated array of
 * "Name: value" (may be NULL). Returns 0 when a response arrived (any status), -1 otherwise
 * (out->error says why). Caller frees with httpc_response_free. */
int httpc_request(const char *method, const char *url, const char *const *headers, const char *body,
                  size_t body_len, const httpc_options_t *opt, httpc_response_t *out);
/* Value of a response header (case-insensitive name) or NULL. */
const char *httpc_header(const httpc_response_t *r, const char *name);
/* Free what httpc_request filled. */
void httpc_response_free(httpc_response_t *r);

#endif
