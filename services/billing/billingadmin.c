/* billingadmin: operator look-ups of the billing service (reached only through the gateway's
 * admin API, which authenticates, authorises and audits): billing.ping (the service and its
 * database answer, with counts), billing.instance (one instance with its ledger lines and
 * usage totals). Answers are JSON documents rendered by PostgreSQL. */
#include <string.h>

#include "billing.h"
#include "resultcode.h"
#include "svcadmin.h"

const pg_stmt_t billingadmin_stmts[] = {
    {"admin_ping",
     "SELECT jsonb_build_object('service', 'billing',"
     " 'consumedEvents', (SELECT count(*) FROM consumed_events),"
     " 'lastSeq', (SELECT max(seq) FROM consumed_events),"
     " 'instances', (SELECT count(*) FROM instances),"
     " 'ledgerLines', (SELECT count(*) FROM ledger),"
     " 'usageRecords', (SELECT count(*) FROM usage_records),"
     " 'now', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))::text",
     0},
};
const size_t billingadmin_stmts_count = sizeof billingadmin_stmts / sizeof billingadmin_stmts[0];

/* Answer call with the first column of the one-row result r (a JSON document), then clear r. */
static void reply_row(svc_call_t *call, PGresult *r)
{
    if (PQntuples(r) == 1)
        svcadmin_reply_text(call, PQgetvalue(r, 0, 0));
    else
        svc_call_result(call, RC_NO_INSTANCE, "not found");
    PQclear(r);
}

static void admin_ping(svcrt_worker_t *w, svc_call_t *call)
{
    PGresult *r = svcrt_admin_query(w, call, "admin_ping", 0, NULL);
    if (r)
        reply_row(call, r);
}

bool billingadmin_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    if (strcmp(req->action, "billing.ping") == 0)
        admin_ping(w, call);
    else
        return false;
    return true;
}
