/* transport: protobuf envelopes over ZeroMQ (ARCHITECTURE.md "Messages").
 * Wire: a client DEALER sends [empty frame][packed Kooisv__Envelope]; a service replica's ROUTER
 * hands the request to one of its worker threads; the reply is [empty frame][packed Kooisv__Reply]
 * carrying the same request_id. Endpoints are "tcp://host:port" lists separated by commas; a host
 * name is expanded to every address it resolves to (one connection per replica). */
#ifndef KOOISV_TRANSPORT_H
#define KOOISV_TRANSPORT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "envelope.pb-c.h"

/* ---- service side ---- */

typedef struct svc_call svc_call_t;

/* The request being served (owned by the runtime, valid during the handler). */
const Kooisv__Envelope *svc_call_request(const svc_call_t *call);
/* The reply to fill (pre-initialised, result_code "000005" until set). Pointers stored in it
 * must come from svc_call_alloc/svc_call_strdup or be static: they are freed after sending. */
Kooisv__Reply *svc_call_reply(svc_call_t *call);
/* Zeroed memory that lives until the reply is sent. */
void *svc_call_alloc(svc_call_t *call, size_t size);
/* Copy of s that lives until the reply is sent (NULL gives ""). */
char *svc_call_strdup(svc_call_t *call, const char *s);
/* printf into memory that lives until the reply is sent. */
char *svc_call_printf(svc_call_t *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Set the reply's result code and message (printf-style). */
void svc_call_result(svc_call_t *call, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Request id of the call, for log lines. */
const char *svc_call_rid(const svc_call_t *call);

typedef struct {
    const char *name;                         /* "order": log and metrics name */
    const char *bind;                         /* bind endpoint, e.g. tcp://0.0.0.0:7101 */
    int workers;                              /* worker threads, >= 1 */
    /* Per-worker state (e.g. a PostgreSQL connection); NULL aborts start-up. */
    void *(*worker_init)(int index, void *arg);
    void (*worker_fini)(void *state);
    /* Serve one call; must set a result code. Runs on a worker thread. */
    void (*handle)(void *state, svc_call_t *call);
    void *arg;
} service_def_t;

/* Bind and serve until SIGINT/SIGTERM; returns the process exit code. Installs the signal
 * handlers itself. */
int service_run(const service_def_t *def);
/* True once a stop signal arrived (background threads poll it). */
bool service_stopping(void);
/* Ask service_run to return (as a signal would). */
void service_stop(void);
/* The process-wide ZeroMQ context (created on first use). */
void *transport_context(void);

/* ---- client side: blocking, for services, tools and tests (the gateway has its own) ---- */

typedef struct rpc_client rpc_client_t;

/* Expand "tcp://name:port,..." into one endpoint per resolved address. Caller owns the array
 * and its strings (free each, then the array). Returns the count, or -1 if a name fails. */
int transport_resolve(const char *endpoints, char ***out);
/* Free what transport_resolve returned. */
void transport_resolved_free(char **list, int n);
/* A client connected to every replica of endpoints; NULL if endpoints is malformed. */
rpc_client_t *rpc_client_new(const char *endpoints);
/* Destroy and set *self_p to NULL. */
void rpc_client_destroy(rpc_client_t **self_p);
/* Send req (request_id must be set) and wait up to timeout_ms for the matching reply. Retries
 * once on another replica when half the time passed without an answer. Returns 0 with *reply
 * set (caller frees with kooisv__reply__free_unpacked(*reply, NULL)), or -1 on timeout / no
 * replica. */
int rpc_call(rpc_client_t *self, const Kooisv__Envelope *req, int timeout_ms,
             Kooisv__Reply **reply);

/* Pack an envelope into a new buffer. Caller owns *buf. */
size_t transport_pack_envelope(const Kooisv__Envelope *env, uint8_t **buf);

#endif
