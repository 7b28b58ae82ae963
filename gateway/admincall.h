/* admincall: one operator call on the admin API, from arrival to answer, and what every route
 * shares: its identity (request id, operator, source address), its parameters, its envelopes to
 * the services, its audit record (auditrec: intent before the route runs, outcome after the
 * answer) and the answers. Every call ends in exactly one admincall_finish* (which frees it).
 * Answers are JSON ({"error","code","request_id"} on failure) with X-Request-Id; the log line
 * names the event, operator, source, status and result. Runs on the admin thread only. */
#ifndef KOOISV_ADMINCALL_H
#define KOOISV_ADMINCALL_H
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "adminroute.h"
#include "resultcode.h"
#include "auditq.h"
#include "dispatch.h"
#include "envelope.pb-c.h"
#include "peer.h"

#define ADMINCALL_SERVICE_TIMEOUT_MS 3000 /* one request to a service (audit queries included) */

typedef struct admincall admincall_t;

/* What the calls run in: the admin thread's event base, dispatcher and audit queue, and the
 * calls not yet answered. */
typedef struct {
    struct event_base *base;
    dispatch_t *dispatch;
    auditq_t *auditq;
    admincall_t *calls;
} admincall_host_t;

struct admincall {
    admincall_t *prev, *next; /* the host's live calls, for shutdown */
    admincall_host_t *host;
    struct evhttp_request *req; /* NULL once answered */
    const adminroute_t *route;  /* NULL until routed */
    char rid[37];
    char event[64];
    char caller_id[65];
    char source[PEER_ADDR_MAX];
    admintoken_t token; /* the caller's token (a copy), once authenticated */
    char session[65];   /* the browser session the call came with ("" = a bearer token) */
    int64_t received_ms, start_us;
    struct evkeyvalq params;
    char *seg[ADMINROUTE_SEGMENTS_MAX]; /* decoded path parameters */
    int nseg;
    Kooisv__ResourceRef **res; /* resources named in the audit record */
    size_t n_res;
    bool intent_stored;
    int subcalls; /* numbering of sub-requests */
    /* audit views (adminaudit) */
    Kooisv__AuditQuery query;
    char *exclude[1];
    bool csv;
    int64_t until_us; /* follow: answer by then; verify: stop by then */
    struct event *timer;
    struct evbuffer *out; /* export: the page being rendered */
    size_t exported;
    bool streaming;                  /* a chunked answer has started */
    void (*written)(admincall_t *c); /* streaming: runs once the last chunk has left */
    int64_t verify_from, verify_checked;
    int64_t verify_head_seq; /* > 0: a chain head kept outside the database (?head=SEQ:HASH) */
    char verify_head_hash[65];
    /* billing export download (adminexport): the next chunk asked for, of how many */
    int64_t chunk_seq, chunk_count;
    /* service requests not yet answered; a call answered meanwhile (its client went away during
     * a streamed answer) is freed when the last of them comes back */
    int inflight;
    bool finished;
    /* fan-out to several services (adminsvc) */
    int pending;
    int answered;
    json_t *fan;
    json_t *body; /* the request body a route parsed in its prepare (usage intake) */
};

/* A call for req, registered with host (event "admin.unknown", operator "-" until known; the
 * source is the TCP peer: the admin API believes no proxy). Freed by admincall_finish*. */
admincall_t *admincall_new(admincall_host_t *host, struct evhttp_request *req);
/* The call is routed, authenticated and validated: store its intent (event c->event, resources
 * c->res), then run c->route. Answers 503 when the audit service cannot store it (the route
 * does not run), 499 when the client left meanwhile. */
void admincall_start(admincall_t *c);
/* Answer 503 to the calls waiting on a timer (follow): the admin thread is stopping. */
void admincall_finish_waiting(admincall_host_t *host);

/* Send the answer (body may be NULL; disposition: Content-Disposition or NULL), log it, record
 * its outcome (after the intent as a rejection when it was never stored), then free c. */
void admincall_finish(admincall_t *c, int status, const char *code, const char *msg,
                      const char *content_type, struct evbuffer *body, const char *disposition);
/* Start a streamed answer: status 200 and its headers now, the body in chunks
 * (admincall_stream_write), ended by admincall_finish. A finish with an error status after the
 * start cuts the connection, so the client sees a truncated answer, never a complete-looking
 * one. If the client leaves meanwhile, the call is finished (499) on the next loop turn. */
void admincall_stream_start(admincall_t *c, const char *content_type, const char *disposition);
/* Send buf (drained) as one chunk; written(c) runs once it has left for the socket, so that at
 * most one chunk waits in memory. */
void admincall_stream_write(admincall_t *c, struct evbuffer *buf, void (*written)(admincall_t *c));
/* Answer doc (taken over) as JSON; 500 when it cannot be encoded. */
void admincall_finish_json(admincall_t *c, int status, const char *code, const char *msg,
                           json_t *doc);
/* Answer an error document with the printf-style message. */
void admincall_finish_error(admincall_t *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Answer a failed service reply (NULL = no answer in time: 503); what names the service. */
void admincall_finish_failed(admincall_t *c, const char *what, const Kooisv__Reply *reply);

/* True when reply is a success (RC_OK). */
bool admincall_reply_ok(const Kooisv__Reply *reply);
/* True when reply is a success carrying result; otherwise c is answered as failed (what names
 * the service) and reply is freed. */
bool admincall_expect(admincall_t *c, Kooisv__Reply *reply, Kooisv__Reply__ResultCase result,
                      const char *what);

/* A query parameter of c, NULL when absent or empty. */
const char *admincall_param(const admincall_t *c, const char *name);
/* The same, "" when absent: protobuf string fields are never NULL. */
char *admincall_param_or_empty(const admincall_t *c, const char *name);
/* True once the client is gone (libevent detaches the request from its connection). */
bool admincall_client_gone(const admincall_t *c);

/* An envelope carrying c's identity (caller: operator c->caller_id, filled into *caller) and a
 * deadline timeout_ms from now; no body yet. Valid while c and *caller are. */
Kooisv__Envelope admincall_envelope(admincall_t *c, Kooisv__Caller *caller, int timeout_ms);
/* Send env to svc through the host's dispatcher (dispatch_call's contract). */
int admincall_dispatch(admincall_t *c, service_id_t svc, const Kooisv__Envelope *env,
                       int timeout_ms, dispatch_done_fn done, void *arg);

#endif
