#include "metrics.h"
#include "resultcode.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "netaddr.h"
#include "proxyproto.h"
#include "readiness.h"
#include "svcmetrics.h"
#include "xmalloc.h"

/* Label values are fixed sets so the series count is bounded whatever the callers send. */
static const char *const activities[] = {
    "newInstance",          "queryInstance",   "refreshInstance",
    "updateInstanceStatus", "releaseInstance", "upgradeInstance",
    "changeInstanceCheck",  "getLicenseAsync", "tenantSync",
    "applicationSync",      "authSync",        "singleOrgSync",
    "allOrgSync",           "unknown",
};
#define N_ACT (sizeof activities / sizeof activities[0])

static const char *const codes[] = {RC_OK,   RC_AUTH,     RC_INVALID,     RC_NO_INSTANCE,
                                    RC_BUSY, RC_INTERNAL, RC_NO_RESOURCE, RC_SECRET_UNREADABLE,
                                    "other"};
#define N_CODE (sizeof codes / sizeof codes[0])

static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
#define N_BUCKET (sizeof buckets / sizeof buckets[0])

static const int statuses[] = {200, 404, 405, 413, 503};
#define N_STATUS (sizeof statuses / sizeof statuses[0])

static atomic_ullong requests[N_ACT][N_CODE];
static atomic_ullong duration_bucket[N_ACT][N_BUCKET];
static atomic_ullong duration_count[N_ACT];
static atomic_ullong duration_sum_us[N_ACT];
static atomic_ullong http_status[N_STATUS + 1];
static atomic_long inflight;
static atomic_long connections;
static atomic_ullong connections_refused;
static atomic_ullong sources_throttled;
static atomic_ullong rejects_unrecorded;
static atomic_long replicas[SVC__COUNT];
static atomic_long audit_queue;
static atomic_ullong audit_lost;
static atomic_int serving_state; /* 0 starting, 1 serving, 2 stopping */

/* Where name stands in names[0..n - 1), else n - 1: the last slot counts every other name. */
static size_t slot_of(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; name && i + 1 < n; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return n - 1;
}

void metrics_request_done(const char *activity, const char *result_code, int64_t latency_us)
{
    size_t a = slot_of(activity, activities, N_ACT);
    atomic_fetch_add_explicit(&requests[a][slot_of(result_code, codes, N_CODE)], 1,
                              memory_order_relaxed);
    if (latency_us < 0)
        latency_us = 0;
    double s = (double)latency_us / 1e6;
    for (size_t b = 0; b < N_BUCKET; b++)
        if (s <= buckets[b])
            atomic_fetch_add_explicit(&duration_bucket[a][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&duration_count[a], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&duration_sum_us[a], (unsigned long long)latency_us,
                              memory_order_relaxed);
}

void metrics_http_status(int status)
{
    size_t i = 0;
    while (i < N_STATUS && statuses[i] != status)
        i++;
    atomic_fetch_add_explicit(&http_status[i], 1, memory_order_relaxed);
}

void metrics_inflight_add(int delta)
{
    atomic_fetch_add_explicit(&inflight, delta, memory_order_relaxed);
}

void metrics_connections_add(int delta)
{
    atomic_fetch_add_explicit(&connections, delta, memory_order_relaxed);
}

void metrics_source_throttled(void)
{
    atomic_fetch_add_explicit(&sources_throttled, 1, memory_order_relaxed);
}

void metrics_reject_unrecorded(void)
{
    atomic_fetch_add_explicit(&rejects_unrecorded, 1, memory_order_relaxed);
}

void metrics_connection_refused(void)
{
    atomic_fetch_add_explicit(&connections_refused, 1, memory_order_relaxed);
}

void metrics_replicas_add(service_id_t svc, int delta)
{
    if (svc >= 0 && svc < SVC__COUNT)
        atomic_fetch_add_explicit(&replicas[svc], delta, memory_order_relaxed);
}

long metrics_replicas(service_id_t svc)
{
    return svc >= 0 && svc < SVC__COUNT ? atomic_load(&replicas[svc]) : 0;
}

void metrics_audit_queue_add(long delta)
{
    atomic_fetch_add_explicit(&audit_queue, delta, memory_order_relaxed);
}

void metrics_audit_lost(long n)
{
    atomic_fetch_add_explicit(&audit_lost, (unsigned long long)n, memory_order_relaxed);
}

void metrics_set_serving(bool on)
{
    atomic_store(&serving_state, on ? 1 : 2);
}

static atomic_llong cert_expiry[2]; /* marketplace, admin */

void metrics_set_cert_expiry(bool admin, long long not_after)
{
    atomic_store(&cert_expiry[admin ? 1 : 0], not_after);
}

static int ready_now(void)
{
    char why[8];
    return atomic_load(&serving_state) == 1 && readiness_audit(why, sizeof why) ? 1 : 0;
}

char *metrics_render(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    fprintf(f, "# HELP kooisv_requests_total Answered marketplace requests.\n"
               "# TYPE kooisv_requests_total counter\n");
    for (size_t a = 0; a < N_ACT; a++)
        for (size_t c = 0; c < N_CODE; c++) {
            unsigned long long v = atomic_load_explicit(&requests[a][c], memory_order_relaxed);
            if (v)
                fprintf(f, "kooisv_requests_total{activity=\"%s\",result_code=\"%s\"} %llu\n",
                        activities[a], codes[c], v);
        }
    fprintf(f, "# HELP kooisv_request_duration_seconds Time from request to answer.\n"
               "# TYPE kooisv_request_duration_seconds histogram\n");
    for (size_t a = 0; a < N_ACT; a++) {
        unsigned long long count = atomic_load_explicit(&duration_count[a], memory_order_relaxed);
        if (!count)
            continue;
        for (size_t b = 0; b < N_BUCKET; b++)
            fprintf(f, "kooisv_request_duration_seconds_bucket{activity=\"%s\",le=\"%g\"} %llu\n",
                    activities[a], buckets[b],
                    atomic_load_explicit(&duration_bucket[a][b], memory_order_relaxed));
        fprintf(f, "kooisv_request_duration_seconds_bucket{activity=\"%s\",le=\"+Inf\"} %llu\n",
                activities[a], count);
        fprintf(f, "kooisv_request_duration_seconds_sum{activity=\"%s\"} %.6f\n", activities[a],
                (double)atomic_load_explicit(&duration_sum_us[a], memory_order_relaxed) / 1e6);
        fprintf(f, "kooisv_request_duration_seconds_count{activity=\"%s\"} %llu\n", activities[a],
                count);
    }
    fprintf(f, "# HELP kooisv_http_responses_total Answers by HTTP status.\n"
               "# TYPE kooisv_http_responses_total counter\n");
    for (size_t i = 0; i <= N_STATUS; i++) {
        unsigned long long v = atomic_load_explicit(&http_status[i], memory_order_relaxed);
        if (!v)
            continue;
        if (i < N_STATUS)
            fprintf(f, "kooisv_http_responses_total{status=\"%d\"} %llu\n", statuses[i], v);
        else
            fprintf(f, "kooisv_http_responses_total{status=\"other\"} %llu\n", v);
    }
    fprintf(f,
            "# HELP kooisv_requests_in_flight Requests being served.\n"
            "# TYPE kooisv_requests_in_flight gauge\n"
            "kooisv_requests_in_flight %ld\n"
            "# HELP kooisv_connections Open client connections.\n"
            "# TYPE kooisv_connections gauge\n"
            "kooisv_connections %ld\n"
            "# HELP kooisv_connections_refused_total Connections refused at the limit.\n"
            "# TYPE kooisv_connections_refused_total counter\n"
            "kooisv_connections_refused_total %llu\n"
            "# HELP kooisv_throttled_calls_total Calls refused at once because their source "
            "had used up its budget of refused unauthenticated calls.\n"
            "# TYPE kooisv_throttled_calls_total counter\n"
            "kooisv_throttled_calls_total %llu\n"
            "# HELP kooisv_unrecorded_rejects_total Refused unauthenticated calls beyond their "
            "source's per-minute record quota (recorded as one summary entry per source).\n"
            "# TYPE kooisv_unrecorded_rejects_total counter\n"
            "kooisv_unrecorded_rejects_total %llu\n"
            "# HELP kooisv_proxy_headers_refused_total Connections closed because a PROXY "
            "protocol header came from a peer outside KOOISV_PROXY_PROTOCOL_FROM, or was "
            "malformed.\n"
            "# TYPE kooisv_proxy_headers_refused_total counter\n"
            "kooisv_proxy_headers_refused_total %lu\n",
            atomic_load(&inflight), atomic_load(&connections), atomic_load(&connections_refused),
            atomic_load(&sources_throttled), atomic_load(&rejects_unrecorded),
            proxyproto_refused_total());
    fprintf(f, "# HELP kooisv_service_connections Open connections to a service's replicas "
               "(one per replica and gateway socket: each worker thread and the admin API).\n"
               "# TYPE kooisv_service_connections gauge\n");
    for (int s = 0; s < SVC__COUNT; s++)
        fprintf(f, "kooisv_service_connections{service=\"%s\"} %ld\n",
                services_name((service_id_t)s), atomic_load(&replicas[s]));
    fprintf(f,
            "# HELP kooisv_audit_retry_queue Audit records waiting to be stored.\n"
            "# TYPE kooisv_audit_retry_queue gauge\n"
            "kooisv_audit_retry_queue %ld\n"
            "# HELP kooisv_audit_lost_total Audit records given up on.\n"
            "# TYPE kooisv_audit_lost_total counter\n"
            "kooisv_audit_lost_total %llu\n"
            "# HELP kooisv_up 1 while the gateway serves.\n"
            "# TYPE kooisv_up gauge\n"
            "kooisv_up %d\n"
            "# HELP kooisv_ready 1 while the gateway serves and the audit service answers "
            "(/readyz).\n"
            "# TYPE kooisv_ready gauge\n"
            "kooisv_ready %d\n",
            atomic_load(&audit_queue), atomic_load(&audit_lost),
            atomic_load(&serving_state) == 1 ? 1 : 0, ready_now());
    fprintf(f, "# HELP kooisv_tls_certificate_expiry_timestamp_seconds When the certificate a TLS "
               "listener presents expires (Unix time).\n"
               "# TYPE kooisv_tls_certificate_expiry_timestamp_seconds gauge\n");
    for (int i = 0; i < 2; i++) {
        long long t = atomic_load(&cert_expiry[i]);
        if (t)
            fprintf(f, "kooisv_tls_certificate_expiry_timestamp_seconds{listener=\"%s\"} %lld\n",
                    i ? "admin" : "marketplace", t);
    }
    fclose(f);
    return text;
}

char *metrics_ready(int *status)
{
    char why[200] = "";
    int state = atomic_load(&serving_state);
    bool ok = state == 1 && readiness_audit(why, sizeof why);
    if (state != 1)
        snprintf(why, sizeof why, "%s", state == 0 ? "starting" : "stopping");
    *status = ok ? 200 : 503;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    if (ok)
        fprintf(f, "ready\n");
    else
        fprintf(f, "not ready: %s\n", why);
    fclose(f);
    return text;
}

char *metrics_health(const char *const endpoints[SVC__COUNT], int *status)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    int state = atomic_load(&serving_state);
    *status = state == 1 ? 200 : 503;
    fprintf(f, "%s\n", state == 1 ? "ok" : state == 0 ? "starting" : "stopping");
    for (int s = 0; s < SVC__COUNT; s++) {
        if (!endpoints[s] || !*endpoints[s])
            continue;
        long n = atomic_load(&replicas[s]);
        fprintf(f, "service %s %s connections=%ld\n", services_name((service_id_t)s),
                n > 0 ? "up" : "down", n);
    }
    fclose(f);
    return text;
}

/* ------------------------------------------------------------------ listener thread */

/* Each service is asked for its series with this budget; a scrape waits at most this long per
 * configured service that does not answer. */
#define SERVICE_METRICS_TIMEOUT_MS 1000
/* Scrapes waiting at once (each list); more are answered 503 at once. */
#define MAX_WAITING_SCRAPES 16

static struct {
    pthread_t thread;
    struct event_base *base;
    struct evhttp *http;
    struct event *stop;
    const char *const *endpoints;
    const char *const *server_keys;
    bool running;
} listener;

/* The services' series are collected on a thread of its own (up to a second for each service
 * that does not answer), so that the probes (/healthz, /readyz, /livez) an orchestrator acts on
 * never wait behind a scrape. A scrape that arrives while a collection runs is served by the
 * next one, so that what it shows is never older than the request. */
static struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool wanted;        /* under lock: a collection is asked for */
    bool stopping;      /* under lock */
    char *result;       /* under lock: the last collection's text */
    struct event *done; /* in listener.base: a collection has finished */
    /* listener thread only */
    bool in_flight;
    struct evhttp_request *current[MAX_WAITING_SCRAPES]; /* served by the collection running */
    size_t ncurrent;
    struct evhttp_request *next[MAX_WAITING_SCRAPES]; /* served by the one after it */
    size_t nnext;
} scraper = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void send_text(struct evhttp_request *req, int status, const char *reason, const char *type,
                      const char *text)
{
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, status, reason, out);
    evbuffer_free(out);
}

static void *scraper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&scraper.lock);
    for (;;) {
        while (!scraper.wanted && !scraper.stopping)
            pthread_cond_wait(&scraper.wake, &scraper.lock);
        if (scraper.stopping)
            break;
        scraper.wanted = false;
        pthread_mutex_unlock(&scraper.lock);
        char *text = svcmetrics_collect(listener.endpoints, listener.server_keys,
                                        SERVICE_METRICS_TIMEOUT_MS);
        pthread_mutex_lock(&scraper.lock);
        free(scraper.result);
        scraper.result = text;
        event_active(scraper.done, EV_TIMEOUT, 1);
    }
    pthread_mutex_unlock(&scraper.lock);
    return NULL;
}

static void scraper_ask(void)
{
    scraper.in_flight = true;
    pthread_mutex_lock(&scraper.lock);
    scraper.wanted = true;
    pthread_cond_signal(&scraper.wake);
    pthread_mutex_unlock(&scraper.lock);
}

/* Listener thread: answer the scrapes the finished collection serves, start the next one. */
static void on_scrape_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    pthread_mutex_lock(&scraper.lock);
    char *svc_text = scraper.result;
    scraper.result = NULL;
    pthread_mutex_unlock(&scraper.lock);
    char *text = metrics_render();
    char *both = xasprintf("%s%s", text, svc_text ? svc_text : "");
    for (size_t i = 0; i < scraper.ncurrent; i++)
        send_text(scraper.current[i], 200, "OK", "text/plain; version=0.0.4; charset=utf-8", both);
    free(both);
    free(text);
    free(svc_text);
    memcpy(scraper.current, scraper.next, scraper.nnext * sizeof *scraper.next);
    scraper.ncurrent = scraper.nnext;
    scraper.nnext = 0;
    scraper.in_flight = false;
    if (scraper.ncurrent)
        scraper_ask();
}

/* Listener thread: queue a /metrics request for the next collection that starts. */
static void scrape_request(struct evhttp_request *req)
{
    struct evhttp_request **list = scraper.in_flight ? scraper.next : scraper.current;
    size_t *n = scraper.in_flight ? &scraper.nnext : &scraper.ncurrent;
    if (*n >= MAX_WAITING_SCRAPES) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        send_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8",
                  "too many scrapes at once\n");
        return;
    }
    list[(*n)++] = req;
    if (!scraper.in_flight)
        scraper_ask();
}

static void on_metrics_request(struct evhttp_request *req, void *arg)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    bool readonly = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;
    if (path && strcmp(path, "/metrics") == 0 && readonly) {
        scrape_request(req);
    } else if (path && strcmp(path, "/healthz") == 0 && readonly) {
        int status;
        char *text = metrics_health(listener.endpoints, &status);
        send_text(req, status, status == 200 ? "OK" : "Service Unavailable",
                  "text/plain; charset=utf-8", text);
        free(text);
    } else if (path && strcmp(path, "/readyz") == 0 && readonly) {
        int status;
        char *text = metrics_ready(&status);
        send_text(req, status, status == 200 ? "OK" : "Service Unavailable",
                  "text/plain; charset=utf-8", text);
        free(text);
    } else if (path && strcmp(path, "/livez") == 0 && readonly) {
        send_text(req, 200, "OK", "text/plain; charset=utf-8", "alive\n");
    } else if (path && (strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0 ||
                        strcmp(path, "/readyz") == 0 || strcmp(path, "/livez") == 0)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        send_text(req, 405, "Method Not Allowed", "text/plain; charset=utf-8",
                  "method not allowed\n");
    } else {
        send_text(req, 404, "Not Found", "text/plain; charset=utf-8", "not found\n");
    }
}

static void on_listener_stop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(listener.base);
}

static void *listener_main(void *arg)
{
    event_base_dispatch(listener.base);
    return NULL;
}

int metrics_listener_start(const char *listen, const char *const endpoints[SVC__COUNT],
                           const char *const server_keys[SVC__COUNT])
{
    char err[256];
    int fd = netaddr_listen(listen, false, err, sizeof err);
    if (fd < 0) {
        log_error(NULL, "metrics listener: %s", err);
        return -1;
    }
    listener.endpoints = endpoints;
    listener.server_keys = server_keys;
    listener.base = event_base_new();
    listener.http = evhttp_new(listener.base);
    if (!listener.base || !listener.http) {
        log_error(NULL, "metrics listener: cannot create the event loop");
        close(fd);
        return -1;
    }
    evhttp_set_allowed_methods(listener.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                                  EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_max_body_size(listener.http, 4096);
    evhttp_set_max_headers_size(listener.http, 8192);
    evhttp_set_timeout(listener.http, 10);
    evhttp_set_gencb(listener.http, on_metrics_request, NULL);
    if (!evhttp_accept_socket_with_handle(listener.http, fd)) {
        log_error(NULL, "metrics listener: cannot accept on %s", listen);
        close(fd);
        return -1;
    }
    listener.stop = event_new(listener.base, -1, 0, on_listener_stop, NULL);
    scraper.done = event_new(listener.base, -1, 0, on_scrape_done, NULL);
    scraper.stopping = false;
    if (pthread_create(&scraper.thread, NULL, scraper_main, NULL) != 0) {
        log_error(NULL, "metrics listener: cannot start its scrape thread");
        return -1;
    }
    if (pthread_create(&listener.thread, NULL, listener_main, NULL) != 0) {
        log_error(NULL, "metrics listener: cannot start its thread");
        return -1;
    }
    listener.running = true;
    int port = netaddr_local_port(fd);
    log_info(NULL, "metrics and health on http://%s (port %d)", listen, port);
    return 0;
}

void metrics_listener_stop(void)
{
    if (!listener.running)
        return;
    event_active(listener.stop, EV_TIMEOUT, 1);
    pthread_join(listener.thread, NULL);
    listener.running = false;
    pthread_mutex_lock(&scraper.lock);
    scraper.stopping = true;
    pthread_cond_signal(&scraper.wake);
    pthread_mutex_unlock(&scraper.lock);
    pthread_join(scraper.thread, NULL);
    /* Scrapes still waiting get an answer, not a silent close. */
    for (size_t i = 0; i < scraper.ncurrent; i++)
        send_text(scraper.current[i], 503, "Service Unavailable", "text/plain; charset=utf-8",
                  "stopping\n");
    for (size_t i = 0; i < scraper.nnext; i++)
        send_text(scraper.next[i], 503, "Service Unavailable", "text/plain; charset=utf-8",
                  "stopping\n");
    scraper.ncurrent = scraper.nnext = 0;
    scraper.in_flight = false;
    free(scraper.result);
    scraper.result = NULL;
    event_free(scraper.done);
    event_free(listener.stop);
    evhttp_free(listener.http);
    event_base_free(listener.base);
}
