/* Operator look-ups of the tenant service (reached only through the gateway's admin API, which
 * authenticates, authorises and audits): tenant.get, tenant.tree, outbox.failed/redrive. Every
 * read is keyed by instance + tenant. */
#include <stdlib.h>
#include <string.h>

#include "orgtree.h"
#include "resultcode.h"
#include "tenant.h"
#include "svcadmin.h"
#include "xmalloc.h"

#define TS_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'"

const pg_stmt_t tenantadmin_stmts[] = {
    {"tenant_get",
     "SELECT order_id, tenant_code, name, domain_name, test_flag,"
     " to_char(created_at AT TIME ZONE 'UTC', " TS_FMT "),"
     " to_char(updated_at AT TIME ZONE 'UTC', " TS_FMT ")"
     " FROM tenants WHERE instance_id = $1 AND tenant_id = $2",
     2},
    {"org_count", "SELECT count(*) FROM orgs WHERE instance_id = $1 AND tenant_id = $2", 2},
};
const size_t tenantadmin_stmts_count = sizeof tenantadmin_stmts / sizeof tenantadmin_stmts[0];

/* instance (may be "") and tenant (required) from the arguments, and stmt run with them ($1, $2);
 * NULL once call is answered (000002 for a bad key, or the database's failure). */
static PGresult *tenant_query(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req,
                              const char *stmt, const char **instance, const char **tenant)
{
    *instance = svcadmin_arg(req, "instance");
    *tenant = svcadmin_arg(req, "tenant");
    if (!svcrt_text_ok(*tenant, 64, true) || !svcrt_text_ok(*instance, 64, false)) {
        svc_call_result(call, RC_INVALID, "args: tenant (1..64 chars) and instance (0..64) required");
        return NULL;
    }
    const char *p[] = {*instance, *tenant};
    return svcrt_admin_query(w, call, stmt, 2, p);
}

static void admin_get(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *instance, *tenant;
    PGresult *t = tenant_query(w, call, req, "tenant_get", &instance, &tenant);
    if (!t)
        return;
    const char *p[] = {instance, tenant};
    PGresult *c = svcrt_admin_query(w, call, "org_count", 2, p);
    if (!c) {
        PQclear(t);
        return;
    }
    long orgs = atol(PQgetvalue(c, 0, 0));
    PQclear(c);
    if (PQntuples(t) == 0 && orgs == 0) {
        PQclear(t);
        svc_call_result(call, RC_NO_INSTANCE, "no tenant %s in instance '%s'", tenant, instance);
        return;
    }
    json_t *doc = json_pack("{s:s,s:s,s:I}", "instanceId", instance, "tenantId", tenant, "orgCount",
                            (json_int_t)orgs);
    if (PQntuples(t) == 1)
        json_object_set_new(
            doc, "tenant",
            json_pack("{s:s,s:s,s:s,s:s,s:b,s:s,s:s}", "orderId", PQgetvalue(t, 0, 0), "tenantCode",
                      PQgetvalue(t, 0, 1), "name", PQgetvalue(t, 0, 2), "domainName",
                      PQgetvalue(t, 0, 3), "testFlag", strcmp(PQgetvalue(t, 0, 4), "t") == 0,
                      "createdAt", PQgetvalue(t, 0, 5), "updatedAt", PQgetvalue(t, 0, 6)));
    else
        json_object_set_new(doc, "tenant", json_null()); /* orgs arrived before the tenant */
    PQclear(t);
    svcadmin_reply(call, doc);
}

static void admin_tree(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *instance, *tenant;
    PGresult *r = tenant_query(w, call, req, "org_list", &instance, &tenant);
    if (!r)
        return;
    size_t n = (size_t)PQntuples(r);
    orgtree_node_t *nodes = xmalloc((n ? n : 1) * sizeof *nodes);
    size_t orphans = 0;
    for (size_t i = 0; i < n; i++)
        nodes[i] = (orgtree_node_t){PQgetvalue(r, (int)i, 0), PQgetvalue(r, (int)i, 1),
                                    PQgetvalue(r, (int)i, 2)};
    orgtree_t *tree = orgtree_new(nodes, n);
    free(nodes);
    json_t *roots = orgtree_json(tree);
    const char *cycle = orgtree_cycle(tree);
    json_t *cycle_at = cycle ? json_string(cycle) : json_null();
    size_t cycle_count = 0;
    size_t k;
    json_t *root;
    json_array_foreach(roots, k, root)
    {
        orphans += json_is_true(json_object_get(root, "orphan"));
        cycle_count += json_is_true(json_object_get(root, "cycle"));
    }
    orgtree_destroy(&tree);
    PQclear(r);
    /* Moves are stored in any order; a cycle that no later move broke is the operators' to see. */
    svcadmin_reply(call, json_pack("{s:s,s:s,s:I,s:I,s:I,s:o,s:o}", "instanceId", instance,
                                   "tenantId", tenant, "orgCount", (json_int_t)n, "orphanCount",
                                   (json_int_t)orphans, "cycleCount", (json_int_t)cycle_count,
                                   "cycleAt", cycle_at, "tree", roots));
}

bool tenantadmin_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    if (strcmp(req->action, "tenant.get") == 0)
        admin_get(w, call, req);
    else if (strcmp(req->action, "tenant.tree") == 0)
        admin_tree(w, call, req);
    else
        return false;
    return true;
}
