#include "stats.h"
#include "resultcode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "svcadmin.h"
#include "timeutil.h"

#define STATS_ROWS_MAX 20000 /* (minute, event, code) groups in one answer */

/* $1 from_ms (inclusive), $2 to_ms (exclusive), $3 group limit. */
const pg_stmt_t stats_stmts[] = {
    {"stats_calls",
     "WITH calls AS ("
     " SELECT i.received_ms, i.event_type,"
     "  coalesce(o.result_code, nullif(i.reject_code, ''), '') AS code, o.latency_us"
     " FROM audit.intents i LEFT JOIN audit.outcomes o ON o.request_id = i.request_id"
     " WHERE i.received_ms >= $1::bigint AND i.received_ms < $2::bigint"
     "  AND i.caller_kind <> 'operator'),"
     " per AS (SELECT (received_ms / 60000) * 60000 AS t, event_type, code, count(*) AS n"
     "  FROM calls GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT $3::int)"
     " SELECT jsonb_build_object('from', $1::bigint, 'to', $2::bigint,"
     "  'calls', (SELECT count(*) FROM calls),"
     "  'minutes', (SELECT coalesce(jsonb_agg(jsonb_build_array(t, event_type, code, n)"
     "   ORDER BY t, event_type, code), '[]') FROM per),"
     "  'latencyMs', (SELECT jsonb_build_object('count', count(*),"
     "   'p50', round((percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_us) / 1000.0)"
     "    ::numeric, 2),"
     "   'p99', round((percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_us) / 1000.0)"
     "    ::numeric, 2))"
     "   FROM calls WHERE latency_us IS NOT NULL))::text",
     3},
};
const size_t stats_nstmts = sizeof stats_stmts / sizeof stats_stmts[0];

void stats_handle(PGconn *conn, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *h = svcadmin_arg(req, "hours");
    char *end = NULL;
    long hours = *h ? strtol(h, &end, 10) : 24;
    if ((*h && (!end || *end)) || hours < 1 || hours > 168) {
        svc_call_result(call, RC_INVALID, "hours must be 1..168");
        return;
    }
    int64_t to = time_now_ms();
    char from_s[24], to_s[24], limit_s[16];
    snprintf(from_s, sizeof from_s, "%lld", (long long)(to - hours * 3600000LL));
    snprintf(to_s, sizeof to_s, "%lld", (long long)to);
    snprintf(limit_s, sizeof limit_s, "%d", STATS_ROWS_MAX);
    const char *p[] = {from_s, to_s, limit_s};
    PGresult *r = pg_exec(conn, "stats_calls", 3, p);
    if (!pg_ok(r) || PQntuples(r) != 1) {
        log_error(svc_call_rid(call), "audit stats: %s", PQerrorMessage(conn));
        svc_call_result(call, RC_INTERNAL, "audit store unavailable");
    } else {
        svcadmin_reply_text(call, pg_value(r, 0, 0));
    }
    PQclear(r);
}
