/* gateway: the server's shared state and life cycle. One process: N worker threads, each with
 * its own event base, HTTPS listener (SO_REUSEPORT), dispatcher and audit queue; a metrics
 * thread; the admin API thread (admin.c). Settings are written once by main() before the
 * threads start and only read afterwards. */
#ifndef KOOISV_GATEWAY_H
#define KOOISV_GATEWAY_H
#include <event2/event.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "auditq.h"
#include "dispatch.h"
#include "peer.h"
#include "proxyproto.h"
#include "srclimit.h"

struct evhttp;
struct evhttp_request;
struct evhttp_bound_socket;
struct bufferevent;

typedef struct {
    const char *listen;    /* "0.0.0.0:8443" */
    int threads;           /* worker threads */
    const char *basic_key; /* seller key (basic interfaces) */
    const char *kit_key;   /* kit key (sync interfaces) */
    char basic_key_id[9];  /* caller ids: first 8 hex of SHA-256(key) */
    char kit_key_id[9];
    char produce_path[256]; /* "/produce" (no trailing slash unless it is "/") */
    char kit_prefix[300];   /* produce_path + "/produceAPI/v2/" */
    long max_body;          /* bytes */
    long max_headers;       /* bytes */
    int idle_timeout_s;     /* read/write inactivity, and between keep-alive requests */
    int header_timeout_s;   /* a new connection must deliver its first request in it */
    long max_connections;   /* open client connections, whole process */
    int deadline_ms;        /* per request: audit + service */
    const char *endpoints[SVC__COUNT];
    /* CURVE public key of each service's replicas (zmqauth.h) */
    const char *server_keys[SVC__COUNT];
    peer_trust_t *trusted;           /* proxies whose X-Forwarded-For is believed */
    proxyproto_trust_t *proxy_trust; /* load balancers whose PROXY v2 header is believed */
    srclimit_t *srclimit;            /* what refused unauthenticated calls may cost, per source */
    SSL_CTX *tls;
} gw_settings_t;

extern gw_settings_t gw;

typedef struct gw_worker {
    int index;
    pthread_t thread;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    dispatch_t *dispatch;
    auditq_t *auditq;
    struct event *stop_ev;
    struct event *drain_timer;
    struct event *summary_timer; /* records srclimit's summaries of unrecorded refusals */
    int inflight;                /* requests of this thread not yet answered */
    int open_conns;              /* client connections of this thread (its own thread counts) */
    bool stopping;
    int64_t stop_started_us;
} gw_worker_t;

/* ---- server.c ---- */

/* Create gw.threads workers listening on gw.listen and start their threads. Returns 0, or -1
 * (logged) if any listener could not be set up. */
int server_start(void);
/* Stop accepting, let requests in flight finish (bounded), keep open connections for up to
 * GW_STOP_LINGER_MS so that a keep-alive client's next call is answered (with Connection: close)
 * rather than cut, flush audit queues (bounded), and join every worker. */
void server_stop(void);
/* The request's complete request has arrived: stop the connection's stall timer. */
void server_request_begin(struct evhttp_request *req);
/* The answer is about to be sent: the connection has the idle timeout to deliver its next
 * request. */
void server_request_end(struct evhttp_request *req);

/* ---- produce.c ---- */

/* evhttp callback for every request on a worker's HTTPS listener (arg: gw_worker_t). */
void produce_handle(struct evhttp_request *req, void *arg);
/* Record, through w's audit queue, one entry per source for the refused unauthenticated calls
 * of ended windows that were not recorded one by one (srclimit). */
void produce_record_summaries(gw_worker_t *w);

/* ---- tlsctx.c ---- */

/* A TLS 1.2+ server context with the certificate chain and key from these PEM files. NULL with
 * the reason in err. */
SSL_CTX *tlsctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen);
/* A server-side (accepting) TLS bufferevent on base for ssl (taken over), that takes a close
 * without close_notify as an ordinary EOF. Out of memory aborts (logged after log_prefix): an
 * evhttp bufferevent factory must never return NULL (libevent would fall back to plain HTTP). */
struct bufferevent *tlsctx_bufferevent(struct event_base *base, SSL *ssl, const char *log_prefix);
/* When ctx's certificate expires (Unix time), 0 when unknown. */
long long tlsctx_not_after(SSL_CTX *ctx);

#endif
