#include "query.h"
#include "resultcode.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Parameters shared by both shapes (NULL = no filter):
 *   $1 from_ms (inclusive)  $2 to_ms (exclusive)  $3 event type ("x*" = prefix)
 *   $4 resource id  $5 caller id  $6 source address ("x*" = prefix)  $7 result code
 *   $8 request id  $9 cursor seq  $10 excluded event types (JSON array)  $11 row limit
 *   $12 (follow only) the chain head the call is bounded by */
#define QUERY_COLUMNS                                                                         \
    " i.seq, i.request_id, i.received_ms, i.caller_kind, i.caller_id, i.event_type,"          \
    " i.resources::text, i.source_addr, i.test_flag, i.reject_reason, i.reject_code,"        \
    " i.trace_id, i.nonce, o.seq, o.result_code, o.result_msg, o.latency_us, o.http_status," \
    " o.recorded_ms, greatest(i.seq, coalesce(o.seq, 0)) AS last_seq"
#define QUERY_FILTERS                                                                         \
    " ($1::bigint IS NULL OR i.received_ms >= $1::bigint)"                                    \
    " AND ($2::bigint IS NULL OR i.received_ms < $2::bigint)"                                 \
    " AND ($3::text IS NULL OR CASE WHEN right($3::text, 1) = '*'"                            \
    "      THEN starts_with(i.event_type, left($3::text, -1)) ELSE i.event_type = $3::text END)" \
    " AND ($4::text IS NULL OR i.resources @> jsonb_build_array(jsonb_build_object('id', $4::text)))" \
    " AND ($5::text IS NULL OR i.caller_id = $5::text)"                                       \
    " AND ($6::text IS NULL OR CASE WHEN right($6::text, 1) = '*'"                            \
    "      THEN starts_with(i.source_addr, left($6::text, -1)) ELSE i.source_addr = $6::text END)" \
    " AND ($7::text IS NULL OR coalesce(o.result_code, nullif(i.reject_code, '')) = $7::text)" \
    " AND ($8::text IS NULL OR i.request_id = $8::text)"                                      \
    " AND i.event_type NOT IN (SELECT jsonb_array_elements_text($10::jsonb))"

const pg_stmt_t query_stmts[] = {
    {"query_head",
     "SELECT coalesce(greatest((SELECT max(seq) FROM audit.intents),"
     " (SELECT max(seq) FROM audit.outcomes)), 0)",
     0},
    {"query_page",
     "SELECT" QUERY_COLUMNS
     " FROM audit.intents i LEFT JOIN audit.outcomes o ON o.request_id = i.request_id"
     " WHERE ($9::bigint IS NULL OR i.seq < $9::bigint) AND" QUERY_FILTERS
     " ORDER BY i.seq DESC LIMIT $11::int",
     11},
    /* A page of one resource ($4 set): its rows of intent_resources (migration 004) from the
     * cursor down, each intent read by its seq and checked against every filter, its own
     * resources included; reads about as many rows as the page holds, whatever the resource's
     * size or age. The intent is a LATERAL subquery behind OFFSET 0 so that it is always read
     * by seq: joined plainly, PostgreSQL may walk intents_pkey backwards from the newest entry
     * instead (it cannot estimate the resources check), a second at a million entries. */
    {"query_page_resource",
     "SELECT" QUERY_COLUMNS
     " FROM audit.intent_resources x"
     " CROSS JOIN LATERAL (SELECT * FROM audit.intents WHERE seq = x.seq OFFSET 0) i"
     " LEFT JOIN audit.outcomes o ON o.request_id = i.request_id"
     " WHERE x.resource_id = $4::text AND ($9::bigint IS NULL OR x.seq < $9::bigint) AND"
     QUERY_FILTERS " ORDER BY x.seq DESC LIMIT $11::int",
     11},
    /* Follow: every entry that changed (intent or outcome appended) after $9, up to head $12. */
    {"query_follow",
     "WITH changed AS ("
     " SELECT request_id FROM audit.intents WHERE seq > $9::bigint AND seq <= $12::bigint"
     " UNION"
     " SELECT request_id FROM audit.outcomes WHERE seq > $9::bigint AND seq <= $12::bigint)"
     " SELECT" QUERY_COLUMNS
     " FROM changed c JOIN audit.intents i ON i.request_id = c.request_id"
     " LEFT JOIN audit.outcomes o ON o.request_id = i.request_id AND o.seq <= $12::bigint"
     " WHERE" QUERY_FILTERS
     " ORDER BY last_seq LIMIT $11::int",
     12},
};
const size_t query_nstmts = sizeof query_stmts / sizeof *query_stmts;

static const char *opt_text(const char *s)
{
    return s && *s ? s : NULL;
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
    const char *v = pg_value(r, row, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

static char *col_str(svc_call_t *call, const PGresult *r, int row, int col)
{
    return svc_call_strdup(call, pg_value(r, row, col));
}

static void entry_resources(svc_call_t *call, Kooisv__AuditEntry *e, const char *json)
{
    json_error_t err;
    json_t *arr = json ? json_loads(json, 0, &err) : NULL;
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    e->n_resources = n;
    e->resources = svc_call_alloc(call, (n ? n : 1) * sizeof *e->resources);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        Kooisv__ResourceRef *ref = svc_call_alloc(call, sizeof *ref);
        kooisv__resource_ref__init(ref);
        ref->kind = svc_call_strdup(call, json_string_value(json_object_get(o, "kind")));
        ref->id = svc_call_strdup(call, json_string_value(json_object_get(o, "id")));
        e->resources[i] = ref;
    }
    json_decref(arr);
}

static Kooisv__AuditEntry *entry_from_row(svc_call_t *call, const PGresult *r, int row)
{
    Kooisv__AuditEntry *e = svc_call_alloc(call, sizeof *e);
    kooisv__audit_entry__init(e);
    e->seq = col_i64(r, row, 0);
    e->request_id = col_str(call, r, row, 1);
    e->received_ms = col_i64(r, row, 2);
    e->caller_kind = col_str(call, r, row, 3);
    e->caller_id = col_str(call, r, row, 4);
    e->event_type = col_str(call, r, row, 5);
    entry_resources(call, e, pg_value(r, row, 6));
    e->source_addr = col_str(call, r, row, 7);
    const char *test = pg_value(r, row, 8);
    e->test_flag = test && test[0] == 't';
    e->reject_reason = col_str(call, r, row, 9);
    e->reject_code = col_str(call, r, row, 10);
    e->trace_id = col_str(call, r, row, 11);
    e->nonce = col_str(call, r, row, 12);
    e->has_outcome = pg_value(r, row, 13) != NULL;
    e->outcome_seq = col_i64(r, row, 13);
    e->result_code = col_str(call, r, row, 14);
    e->result_msg = col_str(call, r, row, 15);
    e->latency_us = col_i64(r, row, 16);
    e->http_status = col_i64(r, row, 17);
    e->outcome_ms = col_i64(r, row, 18);
    e->last_seq = col_i64(r, row, 19);
    return e;
}

void query_handle(PGconn *conn, svc_call_t *call)
{
    const Kooisv__AuditQuery *q = svc_call_request(call)->audit_query;
    const char *rid = svc_call_rid(call);
    if (!q) {
        svc_call_result(call, RC_INVALID, "audit_query body missing");
        return;
    }
    int limit = q->limit == 0 ? QUERY_DEFAULT_LIMIT : q->limit;
    if (limit < 1 || limit > QUERY_MAX_LIMIT) {
        svc_call_result(call, RC_INVALID, "limit must be 1..%d", QUERY_MAX_LIMIT);
        return;
    }
    if (q->from_ms < 0 || q->to_ms < 0 || (q->from_ms && q->to_ms && q->to_ms <= q->from_ms)) {
        svc_call_result(call, RC_INVALID, "time range is empty or negative");
        return;
    }
    if (!q->follow && (q->before_seq < 0 || q->after_seq != 0)) {
        svc_call_result(call, RC_INVALID, "after_seq is for follow mode; before_seq must be >= 0");
        return;
    }

    PGresult *hr = pg_exec(conn, "query_head", 0, NULL);
    if (!pg_ok(hr) || PQntuples(hr) != 1) {
        log_warn(rid, "audit query: head lookup failed: %s", PQresultErrorMessage(hr));
        PQclear(hr);
        svc_call_result(call, RC_INTERNAL, "audit store unavailable");
        return;
    }
    int64_t head = col_i64(hr, 0, 0);
    PQclear(hr);

    char from[24], to[24], cursor[24], lim[16], headtxt[24];
    snprintf(from, sizeof from, "%lld", (long long)q->from_ms);
    snprintf(to, sizeof to, "%lld", (long long)q->to_ms);
    int64_t after = q->after_seq < 0 ? head : q->after_seq;
    snprintf(cursor, sizeof cursor, "%lld", (long long)(q->follow ? after : q->before_seq));
    snprintf(lim, sizeof lim, "%d", limit + 1);
    snprintf(headtxt, sizeof headtxt, "%lld", (long long)head);
    json_t *ex = json_array();
    for (size_t i = 0; i < q->n_exclude_event_types; i++)
        json_array_append_new(ex, json_string(q->exclude_event_types[i] ? q->exclude_event_types[i]
                                                                        : ""));
    char *exclude = json_dumps(ex, JSON_COMPACT);
    json_decref(ex);
    if (!exclude) {
        /* An excluded event type that is not UTF-8 cannot match anything stored. */
        svc_call_result(call, RC_INVALID, "exclude_event_types must be UTF-8");
        return;
    }
    const char *params[12] = {
        q->from_ms ? from : NULL,    q->to_ms ? to : NULL,         opt_text(q->event_type),
        opt_text(q->resource_id),    opt_text(q->caller),          opt_text(q->source_addr),
        opt_text(q->result_code),    opt_text(q->request_id),
        q->follow || q->before_seq ? cursor : NULL,
        exclude,                     lim,                          headtxt};
    const char *stmt = q->follow               ? "query_follow"
                       : opt_text(q->resource_id) ? "query_page_resource"
                                                  : "query_page";
    PGresult *r = pg_exec(conn, stmt, q->follow ? 12 : 11, params);
    free(exclude);
    if (!pg_ok(r)) {
        /* Invalid input (bad UTF-8 in a filter) is the caller's; anything else is ours. */
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        bool bad_input = state && strncmp(state, "22", 2) == 0;
        log_warn(rid, "audit query failed: %s", PQresultErrorMessage(r));
        PQclear(r);
        if (bad_input)
            svc_call_result(call, RC_INVALID, "a filter value is not valid text");
        else
            svc_call_result(call, RC_INTERNAL, "audit store unavailable");
        return;
    }

    int rows = PQntuples(r);
    int n = rows > limit ? limit : rows;
    Kooisv__AuditQueryResult *res = svc_call_alloc(call, sizeof *res);
    kooisv__audit_query_result__init(res);
    res->n_entries = (size_t)n;
    res->entries = svc_call_alloc(call, (size_t)(n ? n : 1) * sizeof *res->entries);
    for (int i = 0; i < n; i++)
        res->entries[i] = entry_from_row(call, r, i);
    res->head_seq = head;
    if (q->follow) {
        /* A full page resumes after its last entry; otherwise everything up to head was seen. */
        res->next_after_seq = rows > limit ? res->entries[n - 1]->last_seq : (after > head ? after : head);
    } else if (rows > limit) {
        res->next_before_seq = res->entries[n - 1]->seq;
    }
    PQclear(r);

    Kooisv__Reply *reply = svc_call_reply(call);
    reply->result_case = KOOISV__REPLY__RESULT_AUDIT_QUERY;
    reply->audit_query = res;
    svc_call_result(call, RC_OK, "%d entries", n);
}
