#include "syncoutbox.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpc.h"
#include "log.h"
#include "randutil.h"
#include "sealbox.h"
#include "timeutil.h"
#include "webhook.h"
#include "xmalloc.h"

enum {
    OUTBOX_BATCH = 10,
    OUTBOX_LEASE_S = 60, /* a claimed row is someone's for this long (> post timeout) */
    OUTBOX_POST_TIMEOUT_MS = 5000,
    OUTBOX_BACKOFF_CAP_MS = 600000,
    OUTBOX_IDLE_WAIT_MS = 1000, /* poll even without NOTIFY: retries fall due silently */
};

#define TS_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'"

const pg_stmt_t syncoutbox_stmts[] = {
    {"outbox_next_id", "SELECT nextval('outbox_seq')", 0},
    {"outbox_insert",
     "INSERT INTO outbox (id, event_id, event_type, instance_id, tenant_id, test_flag, payload,"
     " sealed) VALUES ($1::bigint, $2, $3, $4, $5, $6::boolean, $7, $8::boolean)",
     8},
    {"outbox_notify", "SELECT pg_notify($1, '')", 1},
    {"outbox_failed",
     "SELECT id, event_id, event_type, instance_id, tenant_id, status, attempts,"
     " coalesce(last_error, ''), to_char(created_at AT TIME ZONE 'UTC', " TS_FMT "),"
     " to_char(next_attempt_at AT TIME ZONE 'UTC', " TS_FMT ")"
     " FROM outbox WHERE status = 'failed' OR (status = 'pending' AND attempts > 0)"
     " ORDER BY id LIMIT $1::int",
     1},
    {"outbox_redrive",
     "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),"
     " delivered_at = NULL WHERE id = $1::bigint AND status IN ('failed', 'pending', 'skipped')"
     " RETURNING id",
     1},
    {"outbox_status", "SELECT status FROM outbox WHERE id = $1::bigint", 1},
};
const size_t syncoutbox_stmts_count = sizeof syncoutbox_stmts / sizeof syncoutbox_stmts[0];

/* The delivery thread's own statements. */
static const pg_stmt_t delivery_stmts[] = {
    {"outbox_claim",
     "WITH c AS (UPDATE outbox SET attempts = attempts + 1,"
     " next_attempt_at = now() + make_interval(secs => $2::int)"
     " WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= now()"
     " ORDER BY id LIMIT $1::int FOR UPDATE SKIP LOCKED)"
     " RETURNING id, event_id, payload, sealed, attempts) SELECT * FROM c ORDER BY id",
     2},
    {"outbox_delivered",
     "UPDATE outbox SET status = 'delivered', delivered_at = now(), last_error = NULL"
     " WHERE id = $1::bigint AND status = 'pending'",
     1},
    {"outbox_retry",
     "UPDATE outbox SET last_error = $2,"
     " status = CASE WHEN attempts >= $3::int THEN 'failed' ELSE 'pending' END,"
     " next_attempt_at = now() + $4::bigint * interval '1 millisecond'"
     " WHERE id = $1::bigint AND status = 'pending'",
     4},
    {"outbox_skip_all",
     "UPDATE outbox SET status = 'skipped', delivered_at = now() WHERE status = 'pending'", 0},
};

static struct {
    syncoutbox_config_t cfg;
    const char *url;
    const char *secret;
    const char *ca_file;
    int max_attempts;
    int backoff_ms;
    char channel[64];
    pthread_t thread;
    bool started;
} outbox;

void syncoutbox_init(const syncoutbox_config_t *cfg)
{
    outbox.cfg = *cfg;
    outbox.url = config_get("KOOISV_SYNC_WEBHOOK_URL");
    outbox.secret = config_get("KOOISV_SYNC_WEBHOOK_SECRET");
    outbox.ca_file = config_get("KOOISV_SYNC_WEBHOOK_CA_FILE");
    if (!*outbox.ca_file)
        outbox.ca_file = config_get("KOOISV_MARKETPLACE_CA_FILE");
    outbox.max_attempts = (int)config_get_long("KOOISV_SYNC_WEBHOOK_MAX_ATTEMPTS", 1, 100);
    outbox.backoff_ms = (int)config_get_long("KOOISV_SYNC_WEBHOOK_BACKOFF_MS", 10, 600000);
    if (*outbox.url && !*outbox.secret) {
        fprintf(stderr,
                "kooisv-%s: KOOISV_SYNC_WEBHOOK_SECRET: required when "
                "KOOISV_SYNC_WEBHOOK_URL is set\n",
                cfg->source);
        exit(2);
    }
    if (*outbox.url && strncmp(outbox.url, "https://", 8) != 0 &&
        strncmp(outbox.url, "http://", 7) != 0) {
        fprintf(stderr, "kooisv-%s: KOOISV_SYNC_WEBHOOK_URL: must be an http(s) URL\n",
                cfg->source);
        exit(2);
    }
    snprintf(outbox.channel, sizeof outbox.channel, "kooisv_%s_outbox", cfg->schema);
}

static char *seal_aad(const char *event_id)
{
    return xasprintf("%s.outbox\x1f%s", outbox.cfg.schema, event_id);
}

/* Insert the event row and notify the delivery thread (at commit); 0 or -1. */
static int event_add(sync_tx_t *tx, const char *event_type, const char *instance_id,
                     const char *tenant_id, const json_t *data)
{
    const Kooisv__Envelope *env = svc_call_request(tx->call);
    PGresult *r = sync_exec(tx, "outbox_next_id", 0, NULL);
    if (!r)
        return -1;
    char seq[32];
    snprintf(seq, sizeof seq, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    char event_id[37], when[32];
    rand_uuid(event_id);
    time_format_iso(time_now_ms(), when, sizeof when);
    json_t *ev = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:O}", "eventId", event_id, "seq",
                           (json_int_t)strtoll(seq, NULL, 10), "eventType", event_type, "source",
                           outbox.cfg.source, "requestId", svc_call_rid(tx->call), "instanceId",
                           instance_id, "tenantId", tenant_id, "testFlag", env->test_flag,
                           "occurredAt", when, "data", data);
    char *text = sync_json_text(ev);
    json_decref(ev);
    char *stored = text;
    if (outbox.cfg.seal_key) {
        char *aad = seal_aad(event_id);
        stored = sealbox_seal(outbox.cfg.seal_key, aad, text, strlen(text));
        free(aad);
        xfree_secret(text, strlen(text));
        text = NULL;
    }
    const char *p[] = {seq,        event_id,
                       event_type, instance_id,
                       tenant_id,  env->test_flag ? "true" : "false",
                       stored,     outbox.cfg.seal_key ? "true" : "false"};
    r = sync_exec(tx, "outbox_insert", 8, p);
    free(stored);
    if (!r)
        return -1;
    PQclear(r);
    const char *np[] = {outbox.channel};
    r = sync_exec(tx, "outbox_notify", 1, np);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

pg_status_t syncoutbox_emit(sync_tx_t *tx, const char *interface, const char *action,
                            const char *instance_id, const char *tenant_id, json_t *data)
{
    char type[64];
    snprintf(type, sizeof type, "%s.%s", interface, action);
    int rc = event_add(tx, type, instance_id, tenant_id, data);
    json_decref(data);
    return rc == 0 ? PG_OK : PG_FAIL;
}

/* ---- admin ---- */

static void admin_failed(sync_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *limit = sync_admin_arg(req, "limit");
    long n = *limit ? strtol(limit, NULL, 10) : 100;
    if (n < 1 || n > 1000) {
        svc_call_result(call, "000002", "limit: must be 1..1000");
        return;
    }
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%ld", n);
    const char *p[] = {nbuf};
    PGresult *r = pg_exec(w->conn, "outbox_failed", 1, p);
    if (!pg_ok(r)) {
        log_warn(svc_call_rid(call), "outbox.failed: %s", PQerrorMessage(w->conn));
        PQclear(r);
        svc_call_result(call, "000005", "database error");
        return;
    }
    json_t *rows = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(
            rows, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s}", "id",
                            (json_int_t)strtoll(PQgetvalue(r, i, 0), NULL, 10), "eventId",
                            PQgetvalue(r, i, 1), "eventType", PQgetvalue(r, i, 2), "instanceId",
                            PQgetvalue(r, i, 3), "tenantId", PQgetvalue(r, i, 4), "status",
                            PQgetvalue(r, i, 5), "attempts", atoi(PQgetvalue(r, i, 6)), "lastError",
                            PQgetvalue(r, i, 7), "createdAt", PQgetvalue(r, i, 8), "nextAttemptAt",
                            PQgetvalue(r, i, 9)));
    PQclear(r);
    sync_admin_reply(call, json_pack("{s:s,s:o}", "source", outbox.cfg.source, "events", rows));
}

static void admin_redrive(sync_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *id = sync_admin_arg(req, "id");
    if (!*id || strlen(id) > 18 || strspn(id, "0123456789") != strlen(id)) {
        svc_call_result(call, "000002", "id: must be an outbox event id (digits)");
        return;
    }
    const char *p[] = {id};
    PGresult *r = pg_exec(w->conn, "outbox_redrive", 1, p);
    if (!pg_ok(r)) {
        PQclear(r);
        svc_call_result(call, "000005", "database error");
        return;
    }
    int n = PQntuples(r);
    PQclear(r);
    if (n == 0) {
        r = pg_exec(w->conn, "outbox_status", 1, p);
        const char *status = pg_ok(r) ? pg_value(r, 0, 0) : NULL;
        if (status)
            svc_call_result(call, "000002", "outbox event %s is %s: nothing to redrive", id,
                            status);
        else
            svc_call_result(call, "000002", "no outbox event %s", id);
        PQclear(r);
        return;
    }
    const char *np[] = {outbox.channel};
    PQclear(pg_exec(w->conn, "outbox_notify", 1, np));
    log_info(svc_call_rid(call), "outbox event %s re-driven by operator", id);
    sync_admin_reply(call, json_pack("{s:s,s:s}", "id", id, "status", "pending"));
}

bool syncoutbox_admin(sync_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    if (strcmp(req->action, "outbox.failed") == 0)
        admin_failed(w, call, req);
    else if (strcmp(req->action, "outbox.redrive") == 0)
        admin_redrive(w, call, req);
    else
        return false;
    return true;
}

/* ---- delivery ---- */

static PGconn *delivery_connect(void)
{
    char app[64];
    snprintf(app, sizeof app, "kooisv-%s-outbox", outbox.cfg.source);
    PGconn *conn = pg_connect(outbox.cfg.dsn, app, 5);
    if (!conn)
        return NULL;
    char listen[96];
    snprintf(listen, sizeof listen, "LISTEN %s", outbox.channel);
    if (!sync_session_setup(conn, outbox.cfg.schema) || !pg_command(conn, listen) ||
        pg_prepare_all(conn, delivery_stmts, sizeof delivery_stmts / sizeof delivery_stmts[0]) !=
            0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static void mark_retry(PGconn *conn, const char *id, int attempts, const char *error)
{
    long long delay = outbox.backoff_ms;
    for (int i = 1; i < attempts && delay < OUTBOX_BACKOFF_CAP_MS; i++)
        delay *= 2;
    if (delay > OUTBOX_BACKOFF_CAP_MS)
        delay = OUTBOX_BACKOFF_CAP_MS;
    char max[16], delay_s[24];
    snprintf(max, sizeof max, "%d", outbox.max_attempts);
    snprintf(delay_s, sizeof delay_s, "%lld", delay);
    const char *p[] = {id, error, max, delay_s};
    PGresult *r = pg_exec(conn, "outbox_retry", 4, p);
    if (!pg_ok(r))
        log_warn(NULL, "outbox: cannot record failed delivery of %s: %s", id, PQerrorMessage(conn));
    PQclear(r);
    if (attempts >= outbox.max_attempts)
        log_error(NULL, "outbox: event %s failed after %d attempts: %s", id, attempts, error);
    else
        log_warn(NULL, "outbox: delivery of %s failed (attempt %d): %s; retry in %lld ms", id,
                 attempts, error, delay);
}

/* Deliver one claimed row. */
static void deliver_row(PGconn *conn, PGresult *rows, int i)
{
    const char *id = PQgetvalue(rows, i, 0);
    const char *event_id = PQgetvalue(rows, i, 1);
    const char *payload = PQgetvalue(rows, i, 2);
    bool sealed = strcmp(PQgetvalue(rows, i, 3), "t") == 0;
    int attempts = atoi(PQgetvalue(rows, i, 4));
    char *plain = NULL;
    size_t plain_len = 0;
    if (sealed) {
        char *aad = seal_aad(event_id);
        int rc = outbox.cfg.seal_key
                     ? sealbox_open(outbox.cfg.seal_key, aad, payload, &plain, &plain_len)
                     : -1;
        free(aad);
        if (rc != 0) {
            /* wrong data key or tampered row: retrying will not help, but an operator can fix
             * the key and redrive */
            mark_retry(conn, id, outbox.max_attempts, "sealed payload cannot be opened");
            return;
        }
    }
    httpc_options_t opt = {.ca_file = *outbox.ca_file ? outbox.ca_file : NULL,
                           .verify_peer = 1,
                           .timeout_ms = OUTBOX_POST_TIMEOUT_MS};
    httpc_response_t resp;
    int rc = webhook_post(outbox.url, outbox.secret, plain ? plain : payload, &opt, &resp);
    if (plain)
        xfree_secret(plain, plain_len);
    if (rc == 0) {
        const char *p[] = {id};
        PGresult *r = pg_exec(conn, "outbox_delivered", 1, p);
        if (!pg_ok(r))
            log_warn(NULL, "outbox: event %s delivered but not recorded (will repeat): %s", id,
                     PQerrorMessage(conn));
        PQclear(r);
        log_debug(NULL, "outbox: event %s delivered", id);
    } else {
        char error[200];
        if (resp.status)
            snprintf(error, sizeof error, "HTTP status %d", resp.status);
        else
            snprintf(error, sizeof error, "%s", resp.error[0] ? resp.error : "no response");
        mark_retry(conn, id, attempts, error);
    }
    httpc_response_free(&resp);
}

/* One round: returns rows handled (0 = nothing due), -1 on a database failure. */
static int deliver_batch(PGconn *conn)
{
    if (!*outbox.url) {
        PGresult *r = pg_exec(conn, "outbox_skip_all", 0, NULL);
        int n = pg_ok(r) ? atoi(PQcmdTuples(r)) : -1;
        PQclear(r);
        return n > 0 ? 0 : n; /* nothing more to do until the next notification */
    }
    char batch[16], lease[16];
    snprintf(batch, sizeof batch, "%d", OUTBOX_BATCH);
    snprintf(lease, sizeof lease, "%d", OUTBOX_LEASE_S);
    const char *p[] = {batch, lease};
    PGresult *rows = pg_exec(conn, "outbox_claim", 2, p);
    if (!pg_ok(rows)) {
        log_warn(NULL, "outbox: claim failed: %s", PQerrorMessage(conn));
        PQclear(rows);
        return -1;
    }
    int n = PQntuples(rows);
    for (int i = 0; i < n && !service_stopping(); i++)
        deliver_row(conn, rows, i);
    PQclear(rows);
    return n;
}

/* Sleep until a NOTIFY arrives or timeout_ms passes. */
static void wait_notify(PGconn *conn, int timeout_ms)
{
    struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
    if (pfd.fd < 0) {
        usleep((useconds_t)timeout_ms * 1000);
        return;
    }
    if (poll(&pfd, 1, timeout_ms) > 0) {
        PQconsumeInput(conn);
        PGnotify *note;
        while ((note = PQnotifies(conn)) != NULL)
            PQfreemem(note);
    }
}

static void *delivery_main(void *arg)
{
    (void)arg;
    PGconn *conn = NULL;
    while (!service_stopping()) {
        if (!conn || PQstatus(conn) != CONNECTION_OK) {
            PQfinish(conn);
            conn = delivery_connect();
            if (!conn) {
                sleep(1);
                continue;
            }
        }
        int n = deliver_batch(conn);
        if (n > 0)
            continue;
        if (n < 0 && PQstatus(conn) != CONNECTION_OK)
            continue;
        wait_notify(conn, OUTBOX_IDLE_WAIT_MS);
    }
    PQfinish(conn);
    return NULL;
}

int syncoutbox_start(void)
{
    if (pthread_create(&outbox.thread, NULL, delivery_main, NULL) != 0)
        return -1;
    outbox.started = true;
    if (*outbox.url)
        log_info(NULL, "outbox: delivering %s events to the sync webhook", outbox.cfg.source);
    else
        log_info(NULL, "outbox: no KOOISV_SYNC_WEBHOOK_URL: events are recorded and skipped");
    return 0;
}

void syncoutbox_join(void)
{
    if (outbox.started)
        pthread_join(outbox.thread, NULL);
    outbox.started = false;
}
