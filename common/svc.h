/* svc: the service side of the transport (transport.h). A service replica binds a ROUTER and
 * hands each request to a worker thread that is idle (the one idle longest), so a stuck call
 * holds up no other; a worker serves one call at a time through the svc_call_t it is given, and
 * its reply goes back to the caller with the request's id. A copy of a request the replica
 * already answered with success (a client's resend, a retry) gets that answer again without
 * running twice (seenreq.h).
 * Per-key rights (zmqauth.h): before anything else, a request is checked against the peer its
 * CURVE key makes of the sender (the ZAP User-Id of its frames). A gateway may send every request
 * but the admin actions in svc_def_t.system_actions; a system client only PING and those; an
 * unidentified peer nothing. A refusal is answered 000001 (logged at most once a second), so the
 * caller does not wait for its deadline.
 * Calls that only wait (the audit service's records wait for a group commit) can skip the
 * worker thread and its two hand-offs: the service takes them on the broker thread
 * (svc_def_t.handle_async) and finishes them later from its own thread (svc_call_finish). */
#ifndef KOOISV_SVC_H
#define KOOISV_SVC_H
#include <stdbool.h>
#include <stddef.h>
#include "envelope.pb-c.h"
#include "resultcode.h"
#include "zmqauth.h"

typedef struct svc_call svc_call_t;

/* The request being served (owned by the runtime, valid during the handler). */
const Kooisv__Envelope *svc_call_request(const svc_call_t *call);
/* The reply to fill (pre-initialised, result_code RC_INTERNAL until set). Pointers stored in it
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
/* Who sent the call, by its CURVE key (never ZMQAUTH_PEER_UNKNOWN: those are refused). */
zmqauth_peer_t svc_call_peer(const svc_call_t *call);

typedef struct {
    const char *name; /* "order": log and metrics name */
    const char *bind; /* bind endpoint, e.g. tcp://127.0.0.1:7101 */
    int workers;      /* worker threads, >= 1 */
    /* Per-worker state (e.g. a PostgreSQL connection); NULL aborts start-up. */
    void *(*worker_init)(int index, void *arg);
    void (*worker_fini)(void *state);
    /* Serve one call; must set a result code. Runs on a worker thread. */
    void (*handle)(void *state, svc_call_t *call);
    void *arg;
    /* Whether the service can do its work (its database reachable): a PING is answered 000000
     * only then, else 000005 with why (a gateway is not ready without its audit service). Runs
     * on a worker thread; NULL = always ready. */
    bool (*ready)(void *arg, char *why, size_t whylen);
    /* The admin actions only system clients may call, and all they may call besides PING
     * (NULL-terminated); NULL = none. */
    const char *const *system_actions;
    /* Serve a call without a worker thread (NULL: workers serve every call). Runs on the
     * broker thread, after the per-key rights and the copy check, for every request but PING;
     * it must not block. True when it took the call: it (or another thread) then sets the
     * reply and calls svc_call_finish once. False: a worker serves it with handle. */
    bool (*handle_async)(void *arg, svc_call_t *call);
} svc_def_t;

/* Answer a call taken by svc_def_t.handle_async with its reply, from any thread, once; the
 * call is gone afterwards. After the service stopped the reply is dropped (logged). */
void svc_call_finish(svc_call_t *call);

/* Longest a stopping service goes on answering the requests it holds (SVC_DRAIN_MS). */
#define SVC_DRAIN_MS 5000

/* Bind (a CURVE server admitting the clients given to zmqauth_setup: without them it fails) and
 * serve until SIGINT/SIGTERM; returns the process exit code. Installs the signal handlers
 * itself. On the signal it stops gracefully: every request already received (being served or
 * waiting for a worker) is answered, for at most SVC_DRAIN_MS, before the workers end. */
int svc_run(const svc_def_t *def);
/* True once a stop signal arrived (background threads poll it). */
bool svc_stopping(void);
/* Ask svc_run to return (as a signal would). */
void svc_stop(void);

#endif
