/* kooisv-emulator: a local stand-in for the marketplace's own APIs (spec §6: Query Order, usage
 * push), a receiver for the seller webhooks, and a control API for tests. Single-threaded: one
 * event_base, so the state below needs no locks. State lives in jansson values because tests
 * read most of it back as JSON anyway. */
#ifndef KOOISV_EMULATOR_H
#define KOOISV_EMULATOR_H
#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "timeutil.h"

#define EMU_ORDER_QUERY_PATH "/api/mkp-openapi-public/global/v1/order/query"
#define EMU_USAGE_PATH "/api/mkp-openapi-public/global/v1/isv/usage-data"
#define EMU_CONTROL_PREFIX "/_emulator/"
#define EMU_CALLS_KEPT 100 /* per path; older calls only count */
#define EMU_CLOCK_SKEW_MS (15 * 60 * 1000)

typedef struct {
    struct event_base *base;
    const char *ak;             /* Query Order access key id */
    const char *sk;             /* Query Order secret key */
    const char *basic_key;      /* seller key: usage-push signatures */
    const char *webhook_secret; /* "" = webhook signatures are not checked */
    bool control_any;           /* control API from any address, not only loopback */
    time_zone_t *zone;          /* KOOISV_MARKETPLACE_TIME_ZONE: zone of Query Order's times */
    json_t *orders;             /* orderId -> orderInfo: registered, or answered once (frozen) */
    json_t *verbatim;           /* orderId -> true: answered as registered, never narrowed */
    json_t *calls;              /* path key -> {"count": n, "calls": [...]} */
    json_t *faults;          /* path key -> {"mode", "count", "delay_ms", "code", "http_status"} */
    json_t *usage;           /* accepted usage records, in arrival order */
    json_t *usage_seen;      /* "instance|begin|end" -> true: the marketplace's dedup key */
    json_t *usage_nonces;    /* nonce -> ts ms, pruned past the skew window */
    json_t *usage_instances; /* null = any instance is known; else array of known ids */
    json_t *usage_pushes;    /* count of accepted pushes (integer) */
    json_t *webhooks;        /* name -> {"status": n, "body": json} configured answers */
    long seq;                /* call sequence number, shared by every path */
    void *delayed;           /* replies waiting for a "slow" fault's delay (exchange.c) */
} emu_t;

/* How an endpoint words an error body: Query Order / webhooks use resultCode, usage push
 * uses error_code. */
typedef enum { EMU_STYLE_RESULT, EMU_STYLE_ERROR } emu_style_t;

/* One HTTP exchange being handled. */
typedef struct {
    emu_t *emu;
    struct evhttp_request *req;
    const char *method; /* "GET", "POST", ... */
    char *raw_path;     /* path as sent (percent-encoded), what signatures cover */
    char *path;         /* decoded path */
    char *query;        /* raw query, "" when none */
    char *body;         /* NUL-terminated copy of the request body */
    size_t body_len;
    char rid[64];   /* X-Request-Id or a sequence number, for logs */
    json_t *call;   /* borrowed: this exchange's record in emu->calls, or NULL */
    int delay_ms;   /* > 0: a "slow" fault delays the reply */
    bool body_sign; /* add Body-Sign (basic key) to the reply, as the gateway does */
} emu_exchange_t;

typedef void (*emu_handler_fn)(emu_exchange_t *ex);

/* --- exchange.c: replies, call log, faults -------------------------------------------- */
/* A fresh emulator state with empty collections. */
void emu_state_init(emu_t *emu);
/* Drop every recorded call, fault, order, usage record and webhook setting. */
void emu_state_reset(emu_t *emu);
/* Free the collections and forget replies still waiting (before evhttp_free at exit). */
void emu_state_free(emu_t *emu);
/* Request header value (case-insensitive) or NULL. */
const char *emu_header(const emu_exchange_t *ex, const char *name);
/* Decoded query parameter or NULL; caller owns the result. */
char *emu_query_param(const emu_exchange_t *ex, const char *name);
/* The client's port of the connection ex came on (0 when unknown). */
int emu_peer_port(emu_exchange_t *ex);
/* Send status + JSON body (takes ownership of body; NULL sends no body) now, or after
 * ex->delay_ms; records the status and body in the call log. */
void emu_reply(emu_exchange_t *ex, int status, json_t *body);
/* Answer with the endpoint's error body {"resultCode"|"error_code": code, ...msg}. */
void emu_reply_error(emu_exchange_t *ex, emu_style_t style, int status, const char *code,
                     const char *msg);
/* True when ex came with method; else answers it 405 (MKT.0101) in the endpoint's style. */
bool emu_method_allowed(emu_exchange_t *ex, emu_style_t style, const char *method);
/* Record the call under key, apply a pending fault for key, else run handler. */
void emu_dispatch_faultable(emu_exchange_t *ex, const char *key, emu_style_t style,
                            emu_handler_fn handler);
/* Milliseconds since the epoch. */
int64_t emu_now_ms(void);
/* Parse "yyyyMMdd'T'HHmmss'Z'" (UTC) into epoch ms; false if malformed. */
bool emu_parse_utc_compact(const char *s, int64_t *ms_out);

/* --- orders.c ------------------------------------------------------------------------- */
/* GET order/query: verify SDK-HMAC-SHA256, answer the order. */
void emu_order_query(emu_exchange_t *ex);
/* Register an order (orderInfo object, or {"orderInfo": ...}); missing fields get yearly
 * defaults. With "answerFor": ID beside "orderInfo", queries for ID get that orderInfo as it is
 * (its own orderId, every line, whatever orderLineId was asked): a wrong answer for tests of the
 * seller's checks. Returns the stored (asked-for) orderId or NULL with why set. */
const char *emu_order_register(emu_t *emu, json_t *order, const char **why);

/* --- usage.c -------------------------------------------------------------------------- */
/* POST usage-data: verify ts/nonce/signature and the body rules of spec §6, store records. */
void emu_usage_push(emu_exchange_t *ex);

/* --- control.c ------------------------------------------------------------------------ */
/* Everything under /_emulator/ (control API and webhook receiver). */
void emu_control_route(emu_exchange_t *ex);

#endif
