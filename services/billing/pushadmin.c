/* pushadmin: usage.failed, usage.redrive, billing.status and the metrics series (pushadmin.h). */
#include "pushadmin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billclock.h"
#include "log.h"
#include "svcadmin.h"
#include "timeutil.h"

#define ISO(col) "to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The counts of a set of usage rows (usage_push_state); $1 is billing's now. */
#define COUNTS                                                                                     \
    "count(*), count(*) FILTER (WHERE state = 'excluded'),"                                        \
    " count(*) FILTER (WHERE state = 'unsealed'), count(*) FILTER (WHERE pushed),"                 \
    " count(*) FILTER (WHERE state = 'accepted'), count(*) FILTER (WHERE state = 'refused'),"      \
    " count(*) FILTER (WHERE state = 'dead'),"                                                     \
    " count(*) FILTER (WHERE state IN ('unsealed', 'pending')),"                                   \
    " coalesce(trim_scale(sum(quantity)), 0)::text,"                                               \
    " coalesce(trim_scale(sum(quantity) FILTER (WHERE state = 'accepted')), 0)::text,"             \
    " greatest(0, coalesce(extract(epoch FROM $1::timestamptz - min(received_at)"                  \
    "   FILTER (WHERE state IN ('unsealed', 'pending'))), 0))::bigint"
enum { NCOUNTS = 11 };

/* clang-format off */
const pg_stmt_t pushadmin_stmts[] = {
    /* $1 limit, $2 state filter ("" = both). */
    {"pushadmin_failed",
     "SELECT id, metering_sn, instance_id, " ISO("bucket_start") ", " ISO("begin_time") ","
     " " ISO("end_time") ", trim_scale(usage_value)::text, record_count, state, attempts,"
     " coalesce(last_code, ''), coalesce(last_message, ''),"
     " coalesce(" ISO("last_attempt_at") ", ''), redrives FROM billing.usage_pushes"
     " WHERE state IN ('refused', 'dead') AND ($2 = '' OR state = $2)"
     " ORDER BY id LIMIT $1::int",
     2},
    /* $1 id or NULL (all), $2 state filter, $3 now. */
    {"pushadmin_redrive",
     "UPDATE billing.usage_pushes SET state = 'pending', attempts = 0, redrives = redrives + 1,"
     " next_attempt_at = $3::timestamptz WHERE state IN ('refused', 'dead')"
     " AND ($1::bigint IS NULL OR id = $1::bigint) AND ($2 = '' OR state = $2) RETURNING id",
     3},
    {"pushadmin_state", "SELECT state FROM billing.usage_pushes WHERE id = $1::bigint", 1},
    /* $1 now, $2 from, $3 to. */
    {"pushadmin_hours",
     "SELECT " COUNTS ", " ISO("bucket_start") ", min(granularity)"
     " FROM billing.usage_push_state"
     " WHERE bucket_start >= $2::timestamptz AND bucket_start < $3::timestamptz"
     " GROUP BY bucket_start ORDER BY bucket_start LIMIT 2000",
     3},
    /* $1 now. The usage rows and accepted records of the horizon only (indexed on
     * bucket_start), so that a status call or a metrics scrape reads a bounded part of tables
     * that grow for ever. Pending, refused and dead records are counted
     * whatever their age (their partial indexes are small): an old dead letter keeps alerting. */
    {"pushadmin_overall",
     "SELECT " COUNTS ", (SELECT count(*) FROM billing.usage_pushes WHERE state = 'pending'),"
     " (SELECT count(*) FROM billing.usage_pushes WHERE state = 'accepted'"
     "  AND bucket_start >= $1::timestamptz - interval '" PUSHADMIN_HORIZON "'),"
     " (SELECT count(*) FROM billing.usage_pushes WHERE state = 'refused'),"
     " (SELECT count(*) FROM billing.usage_pushes WHERE state = 'dead')"
     " FROM billing.usage_push_state"
     " WHERE bucket_start >= $1::timestamptz - interval '" PUSHADMIN_HORIZON "'",
     1},
};
/* clang-format on */
const size_t pushadmin_stmts_count = sizeof pushadmin_stmts / sizeof pushadmin_stmts[0];

static const char *const count_names[NCOUNTS] = {"received",
                                                 "excluded",
                                                 "unsealed",
                                                 "pushed",
                                                 "accepted",
                                                 "refused",
                                                 "dead",
                                                 "waiting",
                                                 "receivedQuantity",
                                                 "acceptedQuantity",
                                                 "oldestUnacceptedAgeSeconds"};

/* The counts of row i (columns 0..NCOUNTS-1) as an object. */
static json_t *counts_json(const PGresult *r, int i)
{
    json_t *o = json_object();
    for (int c = 0; c < NCOUNTS; c++) {
        const char *v = pg_value(r, i, c);
        if (c == 8 || c == 9)
            json_object_set_new(o, count_names[c], json_string(v ? v : "0"));
        else
            json_object_set_new(o, count_names[c], json_integer(v ? strtoll(v, NULL, 10) : 0));
    }
    return o;
}

static void now_text(char out[32])
{
    time_format_iso(billclock_now_ms(), out, 32);
}

static bool state_arg(svc_call_t *call, const Kooisv__AdminRequest *req, const char **state)
{
    *state = svcadmin_arg(req, "state");
    if (**state && strcmp(*state, "refused") != 0 && strcmp(*state, "dead") != 0) {
        svc_call_result(call, RC_INVALID, "state: must be refused or dead");
        return false;
    }
    return true;
}

static void admin_failed(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *state;
    char nbuf[16];
    if (!svcadmin_limit(call, req, 100, 1000, nbuf) || !state_arg(call, req, &state))
        return;
    const char *p[] = {nbuf, state};
    PGresult *r = svcrt_admin_query(w, call, "pushadmin_failed", 2, p);
    if (!r)
        return;
    json_t *rows = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(
            rows, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:i,s:s,s:s,s:s,s:i}", "id",
                            (json_int_t)strtoll(pg_value(r, i, 0), NULL, 10), "meteringSn",
                            pg_value(r, i, 1), "instanceId", pg_value(r, i, 2), "bucketStart",
                            pg_value(r, i, 3), "beginTime", pg_value(r, i, 4), "endTime",
                            pg_value(r, i, 5), "usageValue", pg_value(r, i, 6), "usageRows",
                            atoi(pg_value(r, i, 7)), "state", pg_value(r, i, 8), "attempts",
                            atoi(pg_value(r, i, 9)), "lastCode", pg_value(r, i, 10), "lastMessage",
                            pg_value(r, i, 11), "lastAttemptAt", pg_value(r, i, 12), "redrives",
                            atoi(pg_value(r, i, 13))));
    PQclear(r);
    svcadmin_reply(call, json_pack("{s:o}", "records", rows));
}

static void admin_redrive(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *rid = svc_call_rid(call);
    const char *id = svcadmin_arg(req, "id"), *state;
    bool by_id = strcmp(id, "all") != 0;
    if (by_id && (!*id || strlen(id) > 18 || strspn(id, "0123456789") != strlen(id))) {
        svc_call_result(call, RC_INVALID, "id: a usage push record id (digits) or all");
        return;
    }
    if (!state_arg(call, req, &state))
        return;
    char now[32];
    now_text(now);
    const char *p[] = {by_id ? id : NULL, state, now};
    PGresult *r = svcrt_admin_query(w, call, "pushadmin_redrive", 3, p);
    if (!r)
        return;
    int n = PQntuples(r);
    json_t *ids = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(ids, json_integer(strtoll(pg_value(r, i, 0), NULL, 10)));
    PQclear(r);
    if (by_id && n == 0) {
        json_decref(ids);
        const char *sp[] = {id};
        r = svcrt_admin_query(w, call, "pushadmin_state", 1, sp);
        if (!r)
            return;
        const char *was = PQntuples(r) == 1 ? pg_value(r, 0, 0) : NULL;
        if (was)
            svc_call_result(call, RC_INVALID, "usage push record %s is %s: nothing to redrive", id,
                            was);
        else
            svc_call_result(call, RC_INVALID, "no usage push record %s", id);
        PQclear(r);
        return;
    }
    log_info(rid, "%d usage push record(s) re-driven by operator", n);
    svcadmin_reply(call, json_pack("{s:i,s:o}", "redriven", n, "ids", ids));
}

/* The overall counts (the horizon) and the push records by state; NULL after answering 000005
 * when call is given, else after logging. */
static PGresult *overall(svcrt_worker_t *w, svc_call_t *call)
{
    char now[32];
    now_text(now);
    const char *p[] = {now};
    if (call)
        return svcrt_admin_query(w, call, "pushadmin_overall", 1, p);
    return pg_session_exec(w->db, NULL, "pushadmin_overall", 1, p, NULL);
}

/* One gauge of billing's (svcadmin_series_add), with one label when label is set. */
static void series_add(json_t *series, const char *name, const char *help, double value,
                       const char *label, const char *label_value)
{
    const char *labels[] = {label, label_value, NULL};
    svcadmin_series_add(series, name, "gauge", help, value, label ? labels : NULL);
}

static void overall_series(const PGresult *r, json_t *series)
{
    static const char *const row_states[] = {"received", "excluded", "unsealed", "pushed",
                                             "accepted", "refused",  "dead",     "waiting"};
    for (int c = 0; c < 8; c++)
        series_add(series, "kooisv_billing_usage_rows",
                   "usage rows reported by the seller's application, by push state",
                   strtod(pg_value(r, 0, c), NULL), "state", row_states[c]);
    series_add(series, "kooisv_billing_usage_oldest_unaccepted_age_seconds",
               "age of the oldest usage row not yet accepted by the marketplace (0 = none)",
               strtod(pg_value(r, 0, 10), NULL), NULL, NULL);
    static const char *const push_states[] = {"pending", "accepted", "refused", "dead"};
    for (int c = 0; c < 4; c++)
        series_add(series, "kooisv_billing_usage_push_records",
                   "usage push records (one per instance and hour, or late batch), by state",
                   strtod(pg_value(r, 0, NCOUNTS + c), NULL), "state", push_states[c]);
}

int pushadmin_metrics(svcrt_worker_t *w, json_t *series)
{
    PGresult *r = overall(w, NULL);
    if (!r)
        return -1;
    overall_series(r, series);
    PQclear(r);
    return 0;
}

static void admin_status(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *from_s = svcadmin_arg(req, "from"), *to_s = svcadmin_arg(req, "to");
    int64_t now_ms = billclock_now_ms();
    int64_t from = now_ms - 48LL * 3600 * 1000, to = now_ms + 3600LL * 1000;
    if ((*from_s && !time_parse_any(from_s, &from)) || (*to_s && !time_parse_any(to_s, &to))) {
        svc_call_result(call, RC_INVALID,
                        "from/to: epoch ms or ISO-8601 (YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM])");
        return;
    }
    if (to <= from) {
        svc_call_result(call, RC_INVALID, "to must be after from");
        return;
    }
    char now[32], fbuf[32], tbuf[32];
    time_format_iso(now_ms, now, sizeof now);
    time_format_iso(from, fbuf, sizeof fbuf);
    time_format_iso(to, tbuf, sizeof tbuf);
    const char *p[] = {now, fbuf, tbuf};
    PGresult *r = svcrt_admin_query(w, call, "pushadmin_hours", 3, p);
    if (!r)
        return;
    json_t *hours = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *h = counts_json(r, i);
        json_object_set_new(h, "bucketStart", json_string(pg_value(r, i, NCOUNTS)));
        json_object_set_new(h, "granularity", json_string(pg_value(r, i, NCOUNTS + 1)));
        json_array_append_new(hours, h);
    }
    PQclear(r);
    r = overall(w, call);
    if (!r) {
        json_decref(hours);
        return;
    }
    json_t *all = counts_json(r, 0);
    json_t *records = json_object();
    static const char *const push_states[] = {"pending", "accepted", "refused", "dead"};
    for (int c = 0; c < 4; c++)
        json_object_set_new(records, push_states[c],
                            json_integer(strtoll(pg_value(r, 0, NCOUNTS + c), NULL, 10)));
    json_object_set_new(all, "pushRecords", records);
    json_t *series = json_array();
    overall_series(r, series);
    PQclear(r);
    svcadmin_reply(call, json_pack("{s:s,s:s,s:s,s:o,s:o,s:o}", "now", now, "from", fbuf, "to",
                                   tbuf, "overall", all, "hours", hours, "series", series));
}

bool pushadmin_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    if (strcmp(req->action, "usage.failed") == 0)
        admin_failed(w, call, req);
    else if (strcmp(req->action, "usage.redrive") == 0)
        admin_redrive(w, call, req);
    else if (strcmp(req->action, "billing.status") == 0)
        admin_status(w, call, req);
    else
        return false;
    return true;
}
