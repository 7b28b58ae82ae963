#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "timeutil.h"
#include "xmalloc.h"

gw_settings_t gw;

/* After SIGTERM a worker keeps its open connections this long at most (the listener is closed
 * already): a keep-alive client sending its next call meanwhile gets an answer with Connection:
 * close and reconnects, through the balancer, to another gateway. Longer than a busy client's
 * pause between calls; what stays idle that long is closed, as an idle connection may be. */
#define GW_STOP_LINGER_MS 2000

static gw_worker_t *workers;
static int n_workers;
static atomic_long open_connections;
static int conn_index = -1;
static atomic_llong last_refusal_log_us;

/* One client connection, found from any of its requests through the SSL object's ex_data and
 * freed with it (the SSL object lives exactly as long as the connection). */
typedef struct {
    gw_worker_t *worker;
    struct bufferevent *bev;
    struct event *stall; /* a connection that delivers no complete request in time is cut */
    bool counted;
    bool refused;
} conn_t;

static void conn_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    conn_t *c = ptr;
    if (!c)
        return;
    c->worker->open_conns--;
    if (c->counted) {
        atomic_fetch_sub(&open_connections, 1);
        metrics_connections_add(-1);
    }
    if (c->stall)
        event_free(c->stall);
    free(c);
}

static conn_t *conn_of(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return NULL;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    return ssl ? SSL_get_ex_data(ssl, conn_index) : NULL;
}

void server_request_begin(struct evhttp_request *req)
{
    conn_t *c = conn_of(req);
    if (c)
        evtimer_del(c->stall);
}

void server_request_end(struct evhttp_request *req)
{
    conn_t *c = conn_of(req);
    if (c) {
        struct timeval tv = {gw.idle_timeout_s, 0};
        evtimer_add(c->stall, &tv);
    }
}

/* Shutting the socket down makes the connection fail through libevent's own error path, which
 * frees it cleanly whatever state it is in. */
static void on_stall(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    evutil_socket_t s = bufferevent_getfd(c->bev);
    if (s >= 0)
        shutdown(s, SHUT_RDWR);
}

/* Refused connections are told so in the TLS handshake, before any request is read. */
static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    conn_t *c = SSL_get_ex_data(ssl, conn_index);
    if (c && c->refused) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* evhttp's bufferevent factory: runs once per accepted connection, so it is where connections
 * are counted. It must always return a TLS bufferevent (NULL would make libevent fall back to
 * plain HTTP). */
static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    gw_worker_t *w = arg;
    SSL *ssl = SSL_new(gw.tls);
    if (!ssl) {
        log_error(NULL, "SSL_new failed: out of memory");
        abort();
    }
    conn_t *c = xcalloc(1, sizeof *c);
    c->worker = w;
    w->open_conns++;
    long n = atomic_fetch_add(&open_connections, 1) + 1;
    if (n > gw.max_connections || w->stopping) {
        atomic_fetch_sub(&open_connections, 1);
        c->refused = true;
        metrics_connection_refused();
        int64_t now = time_mono_us();
        long long last = atomic_load(&last_refusal_log_us);
        if (now - last > 1000000 &&
            atomic_compare_exchange_strong(&last_refusal_log_us, &last, now))
            log_warn(NULL, "connection refused: %ld open (KOOISV_MAX_CONNECTIONS=%ld)%s", n - 1,
                     gw.max_connections, w->stopping ? " or stopping" : "");
    } else {
        c->counted = true;
        metrics_connections_add(1);
    }
    SSL_set_ex_data(ssl, conn_index, c);
    struct bufferevent *bev = tlsctx_bufferevent(base, ssl, "");
    c->bev = bev;
    c->stall = evtimer_new(base, on_stall, c);
    struct timeval tv = {c->refused ? 1 : gw.header_timeout_s, 0};
    evtimer_add(c->stall, &tv);
    return bev;
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    gw_worker_t *w = arg;
    int64_t waited_ms = (time_mono_us() - w->stop_started_us) / 1000;
    bool idle = w->inflight == 0;
    bool flushed = !w->auditq || auditq_pending(w->auditq) == 0;
    bool lingered = w->open_conns == 0 || waited_ms >= GW_STOP_LINGER_MS;
    /* Requests get their deadline; audit records a little longer to reach the audit service. */
    if ((idle && flushed && lingered) || (idle && waited_ms > 3000) ||
        waited_ms > gw.deadline_ms + 3000)
        event_base_loopbreak(w->base);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    gw_worker_t *w = arg;
    w->stopping = true;
    w->stop_started_us = time_mono_us();
    if (w->bound) {
        evhttp_del_accept_socket(w->http, w->bound);
        w->bound = NULL;
    }
    w->drain_timer = event_new(w->base, -1, EV_PERSIST, on_drain, w);
    struct timeval tv = {0, 50000};
    event_add(w->drain_timer, &tv);
    event_active(w->drain_timer, EV_TIMEOUT, 1);
}

static void on_summary_timer(evutil_socket_t fd, short what, void *arg)
{
    produce_record_summaries(arg);
}

static void *worker_main(void *arg)
{
    gw_worker_t *w = arg;
    event_base_dispatch(w->base);
    if (w->inflight)
        log_warn(NULL, "worker %d: %d request(s) still in flight at shutdown: answering 000005",
                 w->index, w->inflight);
    /* Order matters: the dispatcher's cancelled calls answer their requests (on connections
     * still open) and hand outcomes to the detached queue, which keeps them for the count. */
    auditq_detach(w->auditq);
    dispatch_destroy(&w->dispatch);
    evhttp_free(w->http);
    w->http = NULL;
    /* Run the bufferevents' deferred finalizers (they free the connections) while the base is
     * still whole. */
    for (int i = 0; i < 4; i++)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    auditq_destroy(&w->auditq);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->summary_timer)
        event_free(w->summary_timer);
    event_free(w->stop_ev);
    event_base_free(w->base);
    w->base = NULL;
    return NULL;
}

static int worker_setup(gw_worker_t *w, const char *listen, int *port_out)
{
    char err[256];
    /* epoll's changelist: the interest changes a callback makes (a TLS connection turns
     * reading and writing on and off several times per handshake) go to the kernel once per
     * loop turn, and an add undone in the same turn never reaches it. */
    struct event_config *cfg = event_config_new();
    if (cfg)
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = cfg ? event_base_new_with_config(cfg) : NULL;
    if (cfg)
        event_config_free(cfg);
    w->http = w->base ? evhttp_new(w->base) : NULL;
    if (!w->http) {
        log_error(NULL, "worker %d: cannot create its event loop", w->index);
        return -1;
    }
    evhttp_set_bevcb(w->http, on_new_connection, w);
    evhttp_set_gencb(w->http, produce_handle, w);
    evhttp_set_max_body_size(w->http, (ev_ssize_t)gw.max_body);
    evhttp_set_max_headers_size(w->http, (ev_ssize_t)gw.max_headers);
    evhttp_set_timeout(w->http, gw.idle_timeout_s);
    /* Accept every common method so that a wrong one gets our 405, not libevent's 501. */
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    int fd = netaddr_listen(listen, true, err, sizeof err);
    if (fd < 0) {
        log_error(NULL, "worker %d: %s", w->index, err);
        return -1;
    }
    *port_out = netaddr_local_port(fd);
    w->bound = evhttp_accept_socket_with_handle(w->http, fd);
    if (!w->bound) {
        close(fd);
        log_error(NULL, "worker %d: cannot accept on %s", w->index, listen);
        return -1;
    }
    w->dispatch = dispatch_new(w->base, gw.endpoints, gw.server_keys);
    if (!w->dispatch)
        return -1;
    /* An outcome gets the same time an intent does; the queue retries past it anyway. */
    w->auditq =
        auditq_new(w->base, w->dispatch, gw.deadline_ms / 3 > 200 ? gw.deadline_ms / 3 : 200);
    w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
    w->summary_timer = event_new(w->base, -1, EV_PERSIST, on_summary_timer, w);
    struct timeval every = {5, 0};
    event_add(w->summary_timer, &every);
    return 0;
}

int server_start(void)
{
    if (conn_index < 0)
        conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_ex_free);
    SSL_CTX_set_client_hello_cb(gw.tls, on_client_hello, NULL);
    /* SO_REUSEPORT would let a second gateway (same user) silently share the port: make sure
     * nobody holds it before our own sockets do. */
    char err[256];
    int probe = netaddr_listen(gw.listen, false, err, sizeof err);
    if (probe < 0) {
        log_error(NULL, "cannot listen: %s", err);
        return -1;
    }
    close(probe);
    n_workers = gw.threads;
    workers = xcalloc((size_t)n_workers, sizeof *workers);
    char listen[300];
    snprintf(listen, sizeof listen, "%s", gw.listen);
    int port = -1;
    for (int i = 0; i < n_workers; i++) {
        gw_worker_t *w = &workers[i];
        w->index = i;
        if (worker_setup(w, listen, &port) != 0)
            return -1;
        /* Port 0 (tests): every worker must share the port the first one was given. */
        if (i == 0)
            netaddr_with_port(gw.listen, port, listen, sizeof listen);
    }
    for (int i = 0; i < n_workers; i++)
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            log_error(NULL, "cannot start worker thread %d", i);
            return -1;
        }
    log_info(NULL, "listening on https://%s with %d worker thread(s), produce path %s", listen,
             n_workers, gw.produce_path);
    return 0;
}

void server_stop(void)
{
    for (int i = 0; i < n_workers; i++)
        if (workers[i].stop_ev)
            event_active(workers[i].stop_ev, EV_TIMEOUT, 1);
    for (int i = 0; i < n_workers; i++)
        if (workers[i].thread)
            pthread_join(workers[i].thread, NULL);
    free(workers);
    workers = NULL;
    n_workers = 0;
}
