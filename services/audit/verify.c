#include "verify.h"
#include "resultcode.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cryptoutil.h"
#include "log.h"
#include "timeutil.h"
#include "xmalloc.h"

const pg_stmt_t verify_stmts[] = {
    {"verify_anchor", "SELECT encode(hash, 'hex') FROM audit.chain WHERE seq = $1::bigint", 1},
    /* Both tables in chain order; an intent sorts before an outcome forged onto the same seq.
     * Each side is cut to $2 rows by its primary key first (the first $2 of the union are among
     * them): sorting the union as a whole read and sorted every row from $1 on, the whole trail
     * when verifying from the start (a timeout at 10 million entries). */
    {"verify_rows",
     "SELECT * FROM ("
     " (SELECT true AS is_intent, seq, request_id, trace_id, received_ms AS at_ms, caller_kind,"
     "  caller_id, event_type, resources::text AS resources, source_addr, test_flag, nonce,"
     "  nonce_ts_ms, reject_reason, reject_code, NULL::text AS result_code,"
     "  NULL::text AS result_msg, NULL::bigint AS latency_us, NULL::bigint AS http_status,"
     "  encode(prev_hash, 'hex') AS prev_hash, encode(hash, 'hex') AS hash"
     " FROM audit.intents WHERE seq >= $1::bigint ORDER BY seq LIMIT $2::int)"
     " UNION ALL"
     " (SELECT false, seq, request_id, NULL, recorded_ms, NULL, NULL, NULL, NULL, NULL, NULL,"
     "  NULL, NULL, NULL, NULL, result_code, result_msg, latency_us, http_status,"
     "  encode(prev_hash, 'hex'), encode(hash, 'hex')"
     " FROM audit.outcomes WHERE seq >= $1::bigint ORDER BY seq LIMIT $2::int)) c"
     " ORDER BY seq, is_intent DESC LIMIT $2::int",
     2},
};
const size_t verify_nstmts = sizeof verify_stmts / sizeof *verify_stmts;

/* ---------------------------------------------------------------- judging one row */

static int64_t row_seq(const verify_row_t *r)
{
    return r->is_intent ? r->intent.seq : r->outcome.seq;
}

static const char *row_kind(const verify_row_t *r)
{
    return r->is_intent ? "intent" : "outcome";
}

static const char *row_request(const verify_row_t *r)
{
    const char *rid = r->is_intent ? r->intent.request_id : r->outcome.request_id;
    return rid ? rid : "";
}

/* The hash r would have if it sat at position seq after its stored prev_hash. */
static void row_hash_at(const verify_row_t *r, const entry_chain_t *chain, int64_t seq,
                        uint8_t out[ENTRY_HASH_LEN])
{
    if (r->is_intent) {
        entry_intent_t e = r->intent;
        e.seq = seq;
        entry_intent_hash(&e, chain, r->prev, out);
    } else {
        entry_outcome_t e = r->outcome;
        e.seq = seq;
        entry_outcome_hash(&e, chain, r->prev, out);
    }
}

static bool verdict(verify_verdict_t *out, const char *problem, int64_t seq, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

static bool verdict(verify_verdict_t *out, const char *problem, int64_t seq, const char *fmt, ...)
{
    out->problem = problem;
    out->bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->detail, sizeof out->detail, fmt, ap);
    va_end(ap);
    return false;
}

bool verify_row(const verify_row_t *r, const verify_row_t *next, const verify_expect_t *ex,
                verify_verdict_t *out)
{
    memset(out, 0, sizeof *out);
    int64_t seq = row_seq(r);
    long long s = (long long)seq;
    if (seq > ex->seq)
        return verdict(out, "removed", ex->seq, "entry %lld is missing: the chain jumps to %lld",
                       (long long)ex->seq, s);
    if (seq < ex->seq)
        return verdict(out, "inserted", seq, "a second entry %lld (%s of request %s)", s,
                       row_kind(r), row_request(r));
    uint8_t h[ENTRY_HASH_LEN];
    row_hash_at(r, ex->chain, seq, h);
    bool self_ok = bytes_equal(h, r->hash, ENTRY_HASH_LEN);
    bool link_ok = !ex->prev_known || bytes_equal(r->prev, ex->prev, ENTRY_HASH_LEN);
    if (self_ok && link_ok)
        return true;
    if (ex->prev_known && next && row_seq(next) == seq + 1 &&
        bytes_equal(next->prev, ex->prev, ENTRY_HASH_LEN))
        return verdict(out, "inserted", seq,
                       "entry %lld (%s of request %s) does not belong: entry %lld chains to "
                       "entry %lld",
                       s, row_kind(r), row_request(r), s + 1, s - 1);
    if (!link_ok && ex->prev_prev_known && bytes_equal(r->prev, ex->prev_prev, ENTRY_HASH_LEN))
        return verdict(out, "inserted", seq - 1,
                       "entry %lld does not belong: entry %lld (%s of request %s) chains to "
                       "entry %lld",
                       s - 1, s, row_kind(r), row_request(r), s - 2);
    if (self_ok && !next)
        return verdict(out, "inserted", seq,
                       "the newest entry %lld (%s of request %s) does not chain to entry %lld", s,
                       row_kind(r), row_request(r), s - 1);
    if (!self_ok) {
        row_hash_at(r, ex->chain, seq + 1, h);
        if (bytes_equal(h, r->hash, ENTRY_HASH_LEN))
            return verdict(out, "removed", seq,
                           "entry %lld was removed: the %s of request %s was moved down from %lld",
                           s, row_kind(r), row_request(r), s + 1);
        return verdict(out, "modified", seq,
                       "entry %lld (%s of request %s) no longer matches its hash", s,
                       row_kind(r), row_request(r));
    }
    return verdict(out, "modified", seq - 1,
                   "entry %lld was rewritten: entry %lld chained to a different hash", s - 1, s);
}

void verify_expect_advance(verify_expect_t *ex, const verify_row_t *r)
{
    memcpy(ex->prev_prev, ex->prev, ENTRY_HASH_LEN);
    ex->prev_prev_known = ex->prev_known;
    memcpy(ex->prev, r->hash, ENTRY_HASH_LEN);
    ex->prev_known = true;
    ex->seq = row_seq(r) + 1;
}

/* ---------------------------------------------------------------- reading rows */

static char *dup_col(const PGresult *r, int row, int col)
{
    const char *v = pg_value(r, row, col);
    return xstrdup(v ? v : "");
}

static int64_t i64_col(const PGresult *r, int row, int col)
{
    const char *v = pg_value(r, row, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

static void row_load(verify_row_t *v, const PGresult *r, int row)
{
    memset(v, 0, sizeof *v);
    const char *is_intent = pg_value(r, row, 0);
    v->is_intent = is_intent && is_intent[0] == 't';
    if (v->is_intent) {
        entry_intent_t *e = &v->intent;
        e->seq = i64_col(r, row, 1);
        e->request_id = dup_col(r, row, 2);
        e->trace_id = dup_col(r, row, 3);
        e->received_ms = i64_col(r, row, 4);
        e->caller_kind = dup_col(r, row, 5);
        e->caller_id = dup_col(r, row, 6);
        e->event_type = dup_col(r, row, 7);
        json_error_t err;
        const char *res = pg_value(r, row, 8);
        json_t *arr = res ? json_loads(res, 0, &err) : NULL;
        e->nresources = json_is_array(arr) ? json_array_size(arr) : 0;
        e->resources = xcalloc(e->nresources ? e->nresources : 1, sizeof *e->resources);
        for (size_t i = 0; i < e->nresources; i++) {
            json_t *o = json_array_get(arr, i);
            const char *kind = json_string_value(json_object_get(o, "kind"));
            const char *id = json_string_value(json_object_get(o, "id"));
            e->resources[i].kind = xstrdup(kind ? kind : "");
            e->resources[i].id = xstrdup(id ? id : "");
        }
        json_decref(arr);
        e->source_addr = dup_col(r, row, 9);
        const char *test = pg_value(r, row, 10);
        e->test_flag = test && test[0] == 't';
        e->nonce = dup_col(r, row, 11);
        e->nonce_ts_ms = i64_col(r, row, 12);
        e->reject_reason = dup_col(r, row, 13);
        e->reject_code = dup_col(r, row, 14);
    } else {
        entry_outcome_t *e = &v->outcome;
        e->seq = i64_col(r, row, 1);
        e->request_id = dup_col(r, row, 2);
        e->recorded_ms = i64_col(r, row, 4);
        e->result_code = dup_col(r, row, 15);
        e->result_msg = dup_col(r, row, 16);
        e->latency_us = i64_col(r, row, 17);
        e->http_status = i64_col(r, row, 18);
    }
    /* A hash that is not 32 bytes of hex stays zero and fails the comparison. */
    entry_hash_from_hex(pg_value(r, row, 19), v->prev);
    entry_hash_from_hex(pg_value(r, row, 20), v->hash);
}

static void row_clear(verify_row_t *v)
{
    if (v->is_intent)
        entry_intent_clear(&v->intent);
    else
        entry_outcome_clear(&v->outcome);
}

/* ---------------------------------------------------------------- the walk */

static void reply_failed(svc_call_t *call, const char *what, PGresult *r)
{
    log_warn(svc_call_rid(call), "audit verify: %s failed: %s", what,
             r ? PQresultErrorMessage(r) : "");
    PQclear(r);
    svc_call_result(call, RC_INTERNAL, "audit store unavailable");
}

/* Compare the chain with a head kept outside the database: 0 (out filled when it does not
 * match), or -1 when the lookup failed (the reply is already sent). */
static int head_check(PGconn *conn, svc_call_t *call, const Kooisv__AuditVerify *v,
                      verify_verdict_t *out)
{
    uint8_t want[ENTRY_HASH_LEN], have[ENTRY_HASH_LEN];
    long long s = (long long)v->expect_head_seq;
    char seq[24];
    snprintf(seq, sizeof seq, "%lld", s);
    const char *p[] = {seq};
    PGresult *r = pg_exec(conn, "verify_anchor", 1, p);
    if (!pg_ok(r)) {
        reply_failed(call, "head lookup", r);
        return -1;
    }
    bool found = PQntuples(r) > 0;
    bool same = found && entry_hash_from_hex(pg_value(r, 0, 0), have) &&
                entry_hash_from_hex(v->expect_head_hash, want) &&
                bytes_equal(want, have, ENTRY_HASH_LEN);
    PQclear(r);
    if (!found)
        verdict(out, "removed", v->expect_head_seq,
                "entry %lld, the head kept outside the database, is missing: the chain was "
                "truncated",
                s);
    else if (!same)
        verdict(out, "modified", v->expect_head_seq,
                "entry %lld no longer has the hash of the head kept outside the database", s);
    return 0;
}

void verify_handle(PGconn *conn, const entry_chain_t *chain, svc_call_t *call)
{
    const Kooisv__AuditVerify *v = svc_call_request(call)->audit_verify;
    if (!v || v->from_seq < 0 || v->max_entries < 0) {
        svc_call_result(call, RC_INVALID, "from_seq and max_entries must be >= 0");
        return;
    }
    uint8_t kept[ENTRY_HASH_LEN];
    if (v->expect_head_seq < 0 ||
        (v->expect_head_seq > 0 && !entry_hash_from_hex(v->expect_head_hash, kept))) {
        svc_call_result(call, RC_INVALID,
                        "expect_head_seq must be >= 0 and expect_head_hash 64 hex digits");
        return;
    }
    verify_expect_t ex = {
        .chain = chain, .seq = v->from_seq > 1 ? v->from_seq : 1, .prev_known = true};
    if (ex.seq > 1) {
        char anchor[24];
        snprintf(anchor, sizeof anchor, "%lld", (long long)(ex.seq - 1));
        const char *p[] = {anchor};
        PGresult *r = pg_exec(conn, "verify_anchor", 1, p);
        if (!pg_ok(r)) {
            reply_failed(call, "anchor lookup", r);
            return;
        }
        /* Without its predecessor the first entry's prev_hash is taken on trust. */
        ex.prev_known = PQntuples(r) == 1 && entry_hash_from_hex(pg_value(r, 0, 0), ex.prev);
        PQclear(r);
    }

    Kooisv__AuditVerifyResult *res = svc_call_alloc(call, sizeof *res);
    kooisv__audit_verify_result__init(res);
    int64_t deadline = time_mono_us() + (int64_t)VERIFY_BUDGET_MS * 1000;
    int64_t checked = 0, head = ex.seq - 1;
    verify_verdict_t bad = {0};
    bool more = true, stopped = false;
    char limit[16];
    snprintf(limit, sizeof limit, "%d", VERIFY_CHUNK + 1);
    while (more && !bad.problem && !stopped) {
        char from[24];
        snprintf(from, sizeof from, "%lld", (long long)ex.seq);
        const char *p[] = {from, limit};
        PGresult *r = pg_exec(conn, "verify_rows", 2, p);
        if (!pg_ok(r)) {
            reply_failed(call, "reading the chain", r);
            return;
        }
        int n = PQntuples(r);
        /* The last row of a full chunk is only the look-ahead; it is judged next round. */
        more = n == VERIFY_CHUNK + 1;
        int judge = more ? n - 1 : n;
        verify_row_t *rows = xcalloc((size_t)(n ? n : 1), sizeof *rows);
        for (int i = 0; i < n; i++)
            row_load(&rows[i], r, i);
        PQclear(r);
        for (int i = 0; i < judge; i++) {
            if (!verify_row(&rows[i], i + 1 < n ? &rows[i + 1] : NULL, &ex, &bad))
                break;
            verify_expect_advance(&ex, &rows[i]);
            head = row_seq(&rows[i]);
            checked++;
            if (v->max_entries && checked >= v->max_entries) {
                stopped = true;
                break;
            }
        }
        for (int i = 0; i < n; i++)
            row_clear(&rows[i]);
        free(rows);
        if (more && time_mono_us() > deadline)
            stopped = true;
    }

    /* The kept head is checked once the walk found nothing (a truncation leaves no trace in it). */
    if (!bad.problem && v->expect_head_seq > 0 && head_check(conn, call, v, &bad) != 0)
        return;
    char hex[2 * ENTRY_HASH_LEN + 1];
    res->checked = checked;
    res->head_seq = head;
    res->head_hash =
        svc_call_strdup(call, head > 0 && ex.prev_known ? hex_encode(ex.prev, ENTRY_HASH_LEN, hex) : "");
    if (bad.problem) {
        res->ok = false;
        res->first_bad_seq = bad.bad_seq;
        res->problem = svc_call_strdup(call, bad.problem);
        res->detail = svc_call_strdup(call, bad.detail);
        log_warn(svc_call_rid(call), "audit chain broken at %lld: %s: %s",
                 (long long)bad.bad_seq, bad.problem, bad.detail);
    } else {
        res->ok = true;
        res->next_seq = stopped ? ex.seq : 0;
        res->detail = svc_call_printf(call, "%lld entries verified up to %lld%s",
                                      (long long)checked, (long long)head,
                                      stopped ? " (continue from next_seq)" : "");
    }
    Kooisv__Reply *reply = svc_call_reply(call);
    reply->result_case = KOOISV__REPLY__RESULT_AUDIT_VERIFY;
    reply->audit_verify = res;
    svc_call_result(call, RC_OK, "%s", res->ok ? "chain intact" : "chain broken");
}
