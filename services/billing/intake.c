/* intake: usage from the seller's application (intake.h). One call = one transaction: every
 * record is checked (format here, instances in one statement), then all are inserted by one
 * statement over arrays; the unique (instance_id, client_record_id) makes a repeat a no-op, also
 * under concurrent identical calls. */
#include "intake.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resultcode.h"
#include "svcadmin.h"
#include "timeutil.h"
#include "xmalloc.h"

#define HOUR_MS (3600LL * 1000)

const pg_stmt_t intake_stmts[] = {
    /* The first record (1-based position) whose instance refuses usage, and why. */
    {"intake_check",
     "SELECT r.n, CASE WHEN i.instance_id IS NULL THEN 'unknown instance'"
     " WHEN i.state = 'released' THEN 'instance released'"
     /* Known from its purchase, not yet from its provisioning (Query Order): a moment later
      * it may well be pay-per-use, so this is not "not pay-per-use". */
     " WHEN i.charging_mode IS NULL THEN 'instance''s charging mode not known yet (still being"
     " provisioned)'"
     " WHEN i.charging_mode <> 'ON_DEMAND' THEN 'instance is not pay-per-use'"
     " ELSE 'interval crosses the ' || i.usage_granularity || ' it begins in' END"
     " FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY"
     "  AS r(id, b, e, n)"
     " LEFT JOIN instances i ON i.instance_id = r.id"
     " WHERE i.instance_id IS NULL OR i.state = 'released'"
     "  OR i.charging_mode IS DISTINCT FROM 'ON_DEMAND'"
     "  OR r.e > date_trunc(i.usage_granularity, r.b AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
     "   + CASE WHEN i.usage_granularity = 'day' THEN interval '1 day' ELSE interval '1 hour' END"
     " ORDER BY r.n LIMIT 1",
     3},
    {"intake_insert",
     "WITH ins AS (INSERT INTO usage_records (instance_id, client_record_id, quantity,"
     " used_begin, used_end, bucket_start, request_id, test_flag)"
     " SELECT r.id, r.rec, r.q, r.b, r.e,"
     "  date_trunc(i.usage_granularity, r.b AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', $6,"
     "  i.test_flag"
     " FROM unnest($1::text[], $2::text[], $3::numeric[], $4::timestamptz[], $5::timestamptz[])"
     "  AS r(id, rec, q, b, e) JOIN instances i ON i.instance_id = r.id"
     " ON CONFLICT (instance_id, client_record_id) DO NOTHING RETURNING 1)"
     " SELECT count(*) FROM ins",
     6},
};
const size_t intake_stmts_count = sizeof intake_stmts / sizeof intake_stmts[0];

/* The call's records as columns (text), ready for the array parameters. */
typedef struct {
    size_t n;
    const char **instance, **record, **quantity;
    char **begin, **end; /* ISO-8601 UTC, owned */
} batch_t;

static void batch_free(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->begin[i]);
        free(b->end[i]);
    }
    free(b->instance);
    free(b->record);
    free(b->quantity);
    free(b->begin);
    free(b->end);
}

/* A decimal > 0 with 1..16 digits before the point and at most 4 after (numeric(20,4)). */
static bool quantity_ok(const char *s)
{
    size_t whole = strspn(s, "0123456789");
    if (whole == 0 || whole > 16)
        return false;
    const char *p = s + whole;
    if (*p == '.') {
        size_t frac = strspn(p + 1, "0123456789");
        if (frac == 0 || frac > 4 || p[1 + frac])
            return false;
    } else if (*p) {
        return false;
    }
    return strspn(s, "0.") < strlen(s); /* some digit other than 0 */
}

/* A time member into *ms; false when absent or unreadable. */
static bool time_member(const json_t *rec, const char *key, int64_t *ms)
{
    const char *s = json_string_value(json_object_get(rec, key));
    return s && time_parse_any(s, ms);
}

/* Check record i (0-based) and add it to b; NULL, or why it is refused (static text). */
static const char *record_take(const json_t *rec, batch_t *b, int64_t now)
{
    if (!json_is_object(rec))
        return "not an object";
    const char *inst = json_string_value(json_object_get(rec, "instanceId"));
    const char *id = json_string_value(json_object_get(rec, "recordId"));
    const json_t *q = json_object_get(rec, "quantity");
    if (!inst || !svcrt_text_ok(inst, 64, true))
        return "instanceId: 1..64 characters required";
    if (!id || !svcrt_text_ok(id, 64, true))
        return "recordId: 1..64 characters required";
    if (!json_is_string(q))
        return "quantity: a decimal string required (e.g. \"1.25\")";
    if (!quantity_ok(json_string_value(q)))
        return "quantity: must be a decimal > 0 with at most 4 decimals";
    int64_t begin, end;
    bool at = json_object_get(rec, "usedAt") != NULL;
    if (at) {
        if (json_object_get(rec, "begin") || json_object_get(rec, "end"))
            return "usedAt or begin/end, not both";
        if (!time_member(rec, "usedAt", &begin))
            return "usedAt: an ISO-8601 time required";
        end = begin;
    } else if (!time_member(rec, "begin", &begin) || !time_member(rec, "end", &end)) {
        return "usedAt, or begin and end: ISO-8601 times required";
    }
    if (end < begin)
        return "end is before begin";
    if (end > now + INTAKE_SKEW_S * 1000LL)
        return "time in the future";
    if (begin < now - INTAKE_MAX_AGE_DAYS * 24 * HOUR_MS)
        return "older than 21 days";
    size_t i = b->n++;
    b->instance[i] = inst;
    b->record[i] = id;
    b->quantity[i] = json_string_value(q);
    b->begin[i] = xmalloc(32);
    b->end[i] = xmalloc(32);
    time_format_iso(begin, b->begin[i], 32);
    time_format_iso(end, b->end[i], 32);
    return NULL;
}

/* Refuse the call naming record i (0-based) of records. */
static void refuse(svc_call_t *call, const json_t *records, size_t i, const char *why)
{
    const char *id = json_string_value(json_object_get(json_array_get(records, i), "recordId"));
    if (id && svcrt_text_ok(id, 64, true))
        svc_call_result(call, RC_INVALID, "record %zu (recordId %s): %s; nothing stored", i + 1, id,
                        why);
    else
        svc_call_result(call, RC_INVALID, "record %zu: %s; nothing stored", i + 1, why);
}

typedef struct {
    const json_t *records;
    batch_t *b;
    char *arrays[5]; /* instance, record, quantity, begin, end */
    long stored;
} intake_ctx_t;

static pg_status_t intake_body(svcrt_tx_t *tx, void *arg)
{
    intake_ctx_t *c = arg;
    const char *cp[] = {c->arrays[0], c->arrays[3], c->arrays[4]};
    PGresult *r = svcrt_exec(tx, "intake_check", 3, cp);
    if (!r)
        return tx->db->failed;
    if (PQntuples(r) == 1) {
        refuse(tx->call, c->records, strtoul(PQgetvalue(r, 0, 0), NULL, 10) - 1,
               PQgetvalue(r, 0, 1));
        PQclear(r);
        return PG_ROLLBACK;
    }
    PQclear(r);
    const char *ip[] = {c->arrays[0], c->arrays[1], c->arrays[2],
                        c->arrays[3], c->arrays[4], svc_call_rid(tx->call)};
    r = svcrt_exec(tx, "intake_insert", 6, ip);
    if (!r)
        return tx->db->failed;
    c->stored = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return PG_OK;
}

static void usage_add(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    json_error_t err;
    json_t *records = json_loads(svcadmin_arg(req, "records"), 0, &err);
    size_t n = json_array_size(records);
    if (!json_is_array(records) || n == 0 || n > INTAKE_RECORDS_MAX) {
        svc_call_result(call, RC_INVALID, "records: a JSON array of 1..%d records",
                        INTAKE_RECORDS_MAX);
        json_decref(records);
        return;
    }
    batch_t b = {0};
    b.instance = xcalloc(n, sizeof *b.instance);
    b.record = xcalloc(n, sizeof *b.record);
    b.quantity = xcalloc(n, sizeof *b.quantity);
    b.begin = xcalloc(n, sizeof *b.begin);
    b.end = xcalloc(n, sizeof *b.end);
    int64_t now = time_now_ms();
    for (size_t i = 0; i < n; i++) {
        const char *why = record_take(json_array_get(records, i), &b, now);
        if (why) {
            refuse(call, records, i, why);
            batch_free(&b);
            json_decref(records);
            return;
        }
    }
    intake_ctx_t c = {.records = records, .b = &b};
    c.arrays[0] = pg_text_array(b.instance, n);
    c.arrays[1] = pg_text_array(b.record, n);
    c.arrays[2] = pg_text_array(b.quantity, n);
    c.arrays[3] = pg_text_array((const char *const *)b.begin, n);
    c.arrays[4] = pg_text_array((const char *const *)b.end, n);
    svcrt_tx_run(w, call, intake_body, &c);
    const Kooisv__Reply *reply = svc_call_reply(call);
    if (reply && strcmp(reply->result_code, RC_OK) == 0) {
        json_t *doc = json_pack("{s:I, s:I, s:I}", "received", (json_int_t)n, "stored",
                                (json_int_t)c.stored, "repeated", (json_int_t)(n - c.stored));
        svcadmin_reply(call, doc);
    }
    for (int i = 0; i < 5; i++)
        free(c.arrays[i]);
    batch_free(&b);
    json_decref(records);
}

bool intake_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    if (strcmp(req->action, "usage.add") != 0)
        return false;
    usage_add(w, call, req);
    return true;
}
