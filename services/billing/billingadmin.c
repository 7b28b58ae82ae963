/* billingadmin: operator look-ups of the billing service (reached only through the gateway's
 * admin API, which authenticates, authorises and audits): billing.ping (the service and its
 * database answer, with counts), billing.instance (arg id: one instance with its ledger lines
 * and usage totals; 000003 when billing has no such instance). Answers are JSON documents rendered
 * by PostgreSQL. */
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
    {"admin_instance",
     "SELECT jsonb_build_object('instance', to_jsonb(i),"
     " 'ledger', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.id), '[]')"
     "   FROM ledger l WHERE l.instance_id = i.instance_id),"
     " 'usage', (SELECT jsonb_build_object('records', count(*),"
     "   'quantity', coalesce(sum(u.quantity), 0)::text)"
     "   FROM usage_records u WHERE u.instance_id = i.instance_id))::text"
     " FROM instances i WHERE i.instance_id = $1",
     1},
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

static void admin_instance(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *id = svcadmin_arg(req, "id");
    if (!svcrt_text_ok(id, 256, true)) {
        svc_call_result(call, RC_INVALID, "id: an instance id (1..256 characters)");
        return;
    }
    const char *p[] = {id};
    PGresult *r = svcrt_admin_query(w, call, "admin_instance", 1, p);
    if (r)
        reply_row(call, r);
}

bool billingadmin_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    if (strcmp(req->action, "billing.ping") == 0)
        admin_ping(w, call);
    else if (strcmp(req->action, "billing.instance") == 0)
        admin_instance(w, call, req);
    else
        return false;
    return true;
}
