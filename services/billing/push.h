/* push: usage of pay-per-use instances, billing -> the marketplace's usage-data API (spec §6).
 * One push thread per replica, every cycle:
 *  1. seal (one replica at a time: a transaction-level advisory lock): the usage rows of
 *     pay-per-use (ON_DEMAND), non-test instances whose hour (or UTC day) ended at least
 *     delay_s ago become one push record per instance and bucket, with a metering_sn and an
 *     interval fixed there, before any attempt; every usage row names its record (push_id).
 *     Usage arriving for a bucket that already has a record is late: it waits for the next
 *     reporting window (the next hour's, or day's, delay_s after it starts) and is sealed into a
 *     record of its own whose interval begins late_seq seconds after the bucket's start (the
 *     marketplace ignores a second record with the same instance and interval).
 *  2. send: pending records whose retry time has come are claimed FOR UPDATE SKIP LOCKED, up to
 *     batch_max (<= 1000) per request, and the row locks are held while the request is out and
 *     until its outcome is committed: two replicas never send the same record at once, and a
 *     replica killed mid-push leaves nothing locked and nothing decided (the record is sent
 *     again, same metering_sn and interval, which the marketplace de-duplicates).
 *     Accepted -> accepted. A record-level refusal (MKT.9001/9002/9004, or MKT.0101 naming a
 *     record) -> that record is refused (code and message kept) and the others are sent again at
 *     once; a refusal that names no record splits the batch until it does. Anything else (no
 *     answer, timeout, 5xx, MKT.0250 rate limiting, MKT.0999...) -> retried with exponential
 *     backoff, until max_attempts (0 = no limit) or until the next attempt would come within 10
 *     minutes of the 21-day limit: then dead (the dead letter; pushadmin lists and re-drives).
 * Every decision uses billclock (billing's clock); state lives only in PostgreSQL. */
#ifndef KOOISV_PUSH_H
#define KOOISV_PUSH_H
#include <stdint.h>

#include "pgutil.h"

typedef struct {
    const char *dsn;     /* the push thread's own connection (role kooisv_billing) */
    const char *url;     /* the usage-data URL (marketplace base + spec §6 path) */
    const char *key;     /* the seller's basic key (signature) */
    const char *ca_file; /* PEM CA bundle of the marketplace; "" = the system store */
    int timeout_ms;      /* one request */
    int delay_s;         /* after a bucket's end, before it is sealed (0..840) */
    int poll_ms;         /* pause between cycles when nothing was due */
    int batch_max;       /* records per request (1..1000) */
    int backoff_ms;      /* first retry delay, doubled per attempt ... */
    int backoff_max_ms;  /* ... up to this */
    int max_attempts;    /* attempts before a record is dead; 0 = until the 21-day limit */
    const char *replica; /* names this replica in log lines */
} push_config_t;

typedef struct push push_t;

/* The push thread's statements (push_claim first), for tests that look at their plans. Sets
 * *n. */
const pg_stmt_t *push_statements(size_t *n);
/* A pusher as cfg says (its strings are copied). */
push_t *push_new(const push_config_t *cfg);
/* Stop the push thread if it runs (it ends at svc_stopping or here), free, set *self_p NULL. */
void push_destroy(push_t **self_p);
/* Start the push thread; 0 or -1 (logged). */
int push_start(push_t *self);

/* The path of the usage-data API under the marketplace's base URL. */
#define PUSH_USAGE_PATH "/api/mkp-openapi-public/global/v1/isv/usage-data"

/* The variables push_from_config reads; list them in the service's table. */
// clang-format off
#define PUSH_CONFIG_VARS                                                                         \
    {"KOOISV_MARKETPLACE_URL", NULL, CONFIG_REQUIRED,                                            \
     "marketplace API base URL; usage goes to <url>" PUSH_USAGE_PATH},                           \
    {"KOOISV_BASIC_KEY", NULL, CONFIG_REQUIRED | CONFIG_SECRET | CONFIG_KEY,                     \
     "seller key of the basic interfaces: signs the usage pushes (spec section 6)"},             \
    {"KOOISV_MARKETPLACE_CA_FILE", "", 0, "PEM CA bundle of the marketplace (empty = system)"},  \
    {"KOOISV_MARKETPLACE_TIMEOUT_MS", "5000", 0, "usage push request timeout (100..60000)"},     \
    {"KOOISV_USAGE_PUSH_DELAY_S", "300", 0,                                                      \
     "seconds after an hour (daily products: a UTC day) ends before its usage is pushed, so "     \
     "that the application's last reports arrive; inside the 15-minute window (0..840)"},        \
    {"KOOISV_USAGE_POLL_MS", "5000", 0, "pause between push cycles when nothing is due"          \
     " (50..60000)"},                                                                             \
    {"KOOISV_USAGE_BATCH_MAX", "1000", 0, "usage records per push request (1..1000)"},           \
    {"KOOISV_USAGE_BACKOFF_MS", "5000", 0,                                                       \
     "first retry delay of a failed push; doubles per attempt (10..600000)"},                     \
    {"KOOISV_USAGE_BACKOFF_MAX_MS", "600000", 0, "longest retry delay (10..3600000)"},          \
    {"KOOISV_USAGE_MAX_ATTEMPTS", "0", 0,                                                        \
     "attempts before a record goes to the dead letter; 0 = retried until 10 minutes before "    \
     "its begin time is 21 days old (0..100000)"},                                                \
    {"KOOISV_BILLING_CLOCK_OFFSET_FILE", "", 0,                                                  \
     "tests only: file with seconds added to billing's clock (windows, retries), read at "       \
     "every use; empty = the real clock"}
// clang-format on

/* A pusher from the variables above (config_load done), connecting with dsn; sets up
 * billclock. svcrt_die() on a bad value. */
push_t *push_from_config(const char *dsn);

#endif
