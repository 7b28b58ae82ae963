/* tenantSync (spec §4): idempotency key instance + tenant, enforced by the primary key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "resultcode.h"
#include "tenant.h"

const pg_stmt_t tenantsync_stmts[] = {
    /* a repeated add creates nothing and changes nothing. A new tenant comes back with its
     * event's id (taken after the row, so events of one tenant are numbered in the order their
     * changes took its row): the event costs no round trip of its own. */
    {"tenant_add",
     "WITH t AS (INSERT INTO tenants (instance_id, tenant_id, order_id, tenant_code, name,"
     " domain_name, test_flag) VALUES ($1, $2, $3, $4, $5, $6, $7::boolean)"
     " ON CONFLICT (instance_id, tenant_id) DO NOTHING RETURNING tenant_id)"
     " SELECT t.tenant_id, " OUTBOX_NEXT_ID " FROM t WHERE " OUTBOX_XACT_FIRST,
     7},
    /* modify of a missing tenant creates it (upsert): the marketplace's view wins, and an add
     * that was lost must not make every later modify fail. Only name and domain change. A
     * change comes back with its event's id, as tenant_add's. */
    {"tenant_modify",
     "WITH t AS (INSERT INTO tenants (instance_id, tenant_id, order_id, tenant_code, name,"
     " domain_name, test_flag) VALUES ($1, $2, $3, $4, $5, $6, $7::boolean)"
     " ON CONFLICT (instance_id, tenant_id) DO UPDATE SET name = EXCLUDED.name,"
     " domain_name = EXCLUDED.domain_name, updated_at = now()"
     " WHERE (tenants.name, tenants.domain_name)"
     " IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.domain_name)"
     " RETURNING (xmax = 0) AS inserted)"
     " SELECT t.inserted, " OUTBOX_NEXT_ID " FROM t WHERE " OUTBOX_XACT_FIRST,
     7},
    {"tenant_delete",
     "DELETE FROM tenants WHERE instance_id = $1 AND tenant_id = $2 RETURNING tenant_id", 2},
    {"tenant_delete_orgs", "DELETE FROM orgs WHERE instance_id = $1 AND tenant_id = $2", 2},
};
const size_t tenantsync_stmts_count = sizeof tenantsync_stmts / sizeof tenantsync_stmts[0];

static pg_status_t tenant_tx(svcrt_tx_t *tx, void *arg)
{
    const Kooisv__TenantSync *m = arg;
    const Kooisv__Envelope *env = svc_call_request(tx->call);
    const char *test = env->test_flag ? "true" : "false";
    const char *p[] = {m->instance_id, m->tenant_id,   m->order_id, m->tenant_code,
                       m->name,        m->domain_name, test};
    PGresult *r;
    json_t *data = NULL;
    const char *action = NULL;
    bool created = false;
    char event_id[32] = ""; /* taken by tenant_add or tenant_modify with their change */
    switch (m->flag) {
    case 1:
        if (!(r = svcrt_exec(tx, "tenant_add", 7, p)))
            return PG_FAIL;
        if (PQntuples(r) == 1) {
            action = "add";
            snprintf(event_id, sizeof event_id, "%s", PQgetvalue(r, 0, 1));
        } else
            tx->ok_msg = "success (tenant already exists)";
        PQclear(r);
        break;
    case 2:
        if (!(r = svcrt_exec(tx, "tenant_modify", 7, p)))
            return PG_FAIL;
        if (PQntuples(r) == 1) {
            action = "modify";
            created = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
            snprintf(event_id, sizeof event_id, "%s", PQgetvalue(r, 0, 1));
        } else
            tx->ok_msg = "success (no change)";
        PQclear(r);
        break;
    default: {
        /* delete: never checks that the instance exists; a second delete is a success */
        if (!(r = svcrt_exec(tx, "tenant_delete", 2, p)))
            return PG_FAIL;
        bool had_tenant = PQntuples(r) == 1;
        PQclear(r);
        if (!(r = svcrt_exec(tx, "tenant_delete_orgs", 2, p)))
            return PG_FAIL;
        long orgs = atol(PQcmdTuples(r));
        PQclear(r);
        if (had_tenant || orgs > 0) {
            action = "delete";
            data = json_pack("{s:I}", "orgsDeleted", (json_int_t)orgs);
        } else {
            tx->ok_msg = "success (tenant already absent)";
        }
        break;
    }
    }
    if (!action)
        return PG_OK;
    if (!data)
        data = json_pack("{s:s,s:s,s:s,s:s,s:b}", "orderId", m->order_id, "tenantCode",
                         m->tenant_code, "name", m->name, "domainName", m->domain_name, "created",
                         created || m->flag == 1);
    return svcrt_emit_id(tx, *event_id ? event_id : NULL, "tenantSync", action, m->instance_id,
                         m->tenant_id, data);
}

void tenantsync_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__TenantSync *m)
{
    if (!svcrt_text_ok(m->instance_id, 64, false) || !svcrt_text_ok(m->tenant_id, 64, true) ||
        !svcrt_text_ok(m->order_id, 64, false) || !svcrt_text_ok(m->tenant_code, 64, false) ||
        !svcrt_text_ok(m->name, 128, m->flag != 0) || !svcrt_text_ok(m->domain_name, 256, false) ||
        m->flag < 0 || m->flag > 2) {
        svc_call_result(call, RC_INVALID, "invalid tenantSync message");
        return;
    }
    svcrt_tx_run(w, call, tenant_tx, (void *)m);
}
