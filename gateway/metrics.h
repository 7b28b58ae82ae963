/* metrics: process-wide counters (C11 atomics, safe from every worker thread), their Prometheus
 * text form, and the plain-HTTP listener serving /metrics and /healthz on its own thread. */
#ifndef KOOISV_METRICS_H
#define KOOISV_METRICS_H
#include <stdbool.h>
#include <stdint.h>
#include "services.h"

/* Count one answered request: activity or sync name ("unknown" for anything else), spec result
 * code, latency from first byte handled to answer queued. */
void metrics_request_done(const char *activity, const char *result_code, int64_t latency_us);
/* Count an answer by HTTP status (200, 404, 405...). */
void metrics_http_status(int status);
/* Requests being served (+1 on arrival, -1 on answer). */
void metrics_inflight_add(int delta);
/* Open client connections (+1 accepted, -1 closed). */
void metrics_connections_add(int delta);
/* Count a connection refused because KOOISV_MAX_CONNECTIONS was reached. */
void metrics_connection_refused(void);
/* A call refused at once: its source had no budget of refused unauthenticated calls left. */
void metrics_source_throttled(void);
/* A refused unauthenticated call counted for its source's summary instead of recorded alone. */
void metrics_reject_unrecorded(void);
/* Replicas of svc with a completed ZeroMQ handshake, summed over worker threads. */
void metrics_replicas_add(service_id_t svc, int delta);
/* Current value of the above. */
long metrics_replicas(service_id_t svc);
/* Audit records waiting in the retry queues (+/-). */
void metrics_audit_queue_add(long delta);
/* Count an audit record given up on (lost at shutdown or queue overflow). */
void metrics_audit_lost(long n);
/* Whether the gateway is serving; healthz answers 503 "starting" before the first call and
 * 503 "stopping" after serving ends. */
void metrics_set_serving(bool serving);

/* The certificate of a TLS listener expires at not_after (Unix time): metric
 * kooisv_tls_certificate_expiry_timestamp_seconds{listener="marketplace"|"admin"}. */
void metrics_set_cert_expiry(bool admin, long long not_after);

/* Prometheus text exposition of every counter. Caller owns the result. */
char *metrics_render(void);
/* The /healthz body for the configured services (endpoints[i] "" = not configured); *status is
 * 200 while serving, else 503. Caller owns the result. */
char *metrics_health(const char *const endpoints[SVC__COUNT], int *status);

/* The /readyz body; *status 200 only while serving and the audit service (hence its database)
 * answers (readiness.h), else 503 with the reason. /livez answers 200 "alive" whenever the
 * listener runs, starting and stopping included. Caller owns the result. */
char *metrics_ready(int *status);

/* Serve /metrics, /healthz, /readyz and /livez over plain HTTP on listen ("host:port") on a new
 * thread; /metrics adds the configured services' own series (svcmetrics.h), collected on a
 * second thread so that the probes never wait behind a scrape. endpoints and
 * server_keys must outlive the listener. Returns 0, or -1 with a logged reason. */
int metrics_listener_start(const char *listen, const char *const endpoints[SVC__COUNT],
                           const char *const server_keys[SVC__COUNT]);
/* Stop the listener and scrape threads and wait for them (a waiting scrape is answered 503). */
void metrics_listener_stop(void);

#endif
