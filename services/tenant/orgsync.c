/* singleOrgSync and allOrgSync (spec §4): idempotency key instance + tenant + orgCode. Orgs may
 * arrive in any order (a child before its parent, two moves swapped): every single org change is
 * stored as sent, and the tree is resolved when it is read (orgtree). A move that closes a cycle
 * given the current tree is accepted too, since the move that breaks it may still be on its way;
 * it is logged as a warning and the operators' tree view marks the cycle. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "resultcode.h"
#include "orgtree.h"
#include "tenant.h"
#include "svcadmin.h"
#include "xmalloc.h"

const pg_stmt_t orgsync_stmts[] = {
    /* one lock per (instance, tenant) tree, released at commit or rollback */
    {"org_lock",
     "SELECT pg_advisory_xact_lock(hashtextextended('kooisv.tenants.orgs' || chr(31) || $1"
     " || chr(31) || $2, 0))",
     2},
    {"org_add",
     "INSERT INTO orgs (instance_id, tenant_id, org_code, org_name, parent_code, test_flag)"
     " VALUES ($1, $2, $3, $4, $5, $6::boolean)"
     " ON CONFLICT (instance_id, tenant_id, org_code) DO NOTHING RETURNING org_code",
     6},
    /* modify of a missing org creates it (upsert), as for tenants */
    {"org_modify",
     "INSERT INTO orgs (instance_id, tenant_id, org_code, org_name, parent_code, test_flag)"
     " VALUES ($1, $2, $3, $4, $5, $6::boolean)"
     " ON CONFLICT (instance_id, tenant_id, org_code) DO UPDATE SET org_name = EXCLUDED.org_name,"
     " parent_code = EXCLUDED.parent_code, updated_at = now()"
     " WHERE (orgs.org_name, orgs.parent_code) IS DISTINCT FROM"
     " (EXCLUDED.org_name, EXCLUDED.parent_code)"
     " RETURNING (xmax = 0) AS inserted",
     6},
    /* After a change to org $3: do its ancestors include itself (it is on a cycle)? UNION (not
     * ALL) stops on a cycle elsewhere in the tree too. */
    {"org_cycle",
     "WITH RECURSIVE up(code) AS ("
     " SELECT parent_code FROM orgs WHERE instance_id = $1 AND tenant_id = $2 AND org_code = $3"
     " AND parent_code <> ''"
     " UNION"
     " SELECT o.parent_code FROM orgs o JOIN up ON o.org_code = up.code"
     " WHERE o.instance_id = $1 AND o.tenant_id = $2 AND o.parent_code <> '')"
     " SELECT EXISTS (SELECT 1 FROM up WHERE code = $3)",
     3},
    {"org_delete",
     "DELETE FROM orgs WHERE instance_id = $1 AND tenant_id = $2 AND org_code = $3"
     " RETURNING org_code",
     3},
    {"org_list",
     "SELECT org_code, org_name, parent_code FROM orgs WHERE instance_id = $1 AND tenant_id = $2"
     " ORDER BY org_code COLLATE \"C\"",
     2},
    {"org_delete_all", "DELETE FROM orgs WHERE instance_id = $1 AND tenant_id = $2", 2},
    {"org_insert_many",
     "INSERT INTO orgs (instance_id, tenant_id, org_code, org_name, parent_code, test_flag)"
     " SELECT $1, $2, x.org_code, x.org_name, coalesce(x.parent_code, ''), $3::boolean"
     " FROM jsonb_to_recordset($4::jsonb) AS x(org_code text, org_name text, parent_code text)",
     4},
};
const size_t orgsync_stmts_count = sizeof orgsync_stmts / sizeof orgsync_stmts[0];

static bool lock_tree(svcrt_tx_t *tx, const char *instance_id, const char *tenant_id)
{
    const char *p[] = {instance_id, tenant_id};
    PGresult *r = svcrt_exec(tx, "org_lock", 2, p);
    if (!r)
        return false;
    PQclear(r);
    return true;
}

/* ---- singleOrgSync ---- */

static pg_status_t single_tx(svcrt_tx_t *tx, void *arg)
{
    const Kooisv__SingleOrgSync *m = arg;
    const Kooisv__Envelope *env = svc_call_request(tx->call);
    if (!lock_tree(tx, m->instance_id, m->tenant_id))
        return PG_FAIL;
    const char *p[] = {m->instance_id, m->tenant_id,   m->org_code,
                       m->org_name,    m->parent_code, env->test_flag ? "true" : "false"};
    PGresult *r;
    const char *action = NULL;
    bool created = false, cycle = false;
    if (m->flag == 0) {
        /* delete: children stay, shown as orphans until their parent returns */
        if (!(r = svcrt_exec(tx, "org_delete", 3, p)))
            return PG_FAIL;
        if (PQntuples(r) == 1)
            action = "delete";
        else
            tx->ok_msg = "success (org already absent)";
        PQclear(r);
    } else {
        const char *stmt = m->flag == 1 ? "org_add" : "org_modify";
        if (!(r = svcrt_exec(tx, stmt, 6, p)))
            return PG_FAIL;
        if (PQntuples(r) == 1) {
            action = m->flag == 1 ? "add" : "modify";
            created = m->flag == 1 || strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        } else {
            tx->ok_msg = m->flag == 1 ? "success (org already exists)" : "success (no change)";
        }
        PQclear(r);
        if (action && *m->parent_code) {
            if (!(r = svcrt_exec(tx, "org_cycle", 3, p)))
                return PG_FAIL;
            cycle = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
            PQclear(r);
            if (cycle)
                log_warn(svc_call_rid(tx->call),
                         "singleOrgSync instance=%s tenant=%s: org %s under %s closes a cycle;"
                         " stored as sent (a later move may break it), shown in tenant.tree",
                         m->instance_id, m->tenant_id, m->org_code, m->parent_code);
        }
    }
    if (!action)
        return PG_OK;
    json_t *data = json_pack("{s:s,s:s,s:s}", "orgCode", m->org_code, "orgName", m->org_name,
                             "parentCode", m->parent_code);
    if (m->flag != 0)
        json_object_set_new(data, "created", json_boolean(created));
    if (cycle)
        json_object_set_new(data, "cycle", json_true());
    return svcrt_emit(tx, "singleOrgSync", action, m->instance_id, m->tenant_id, data);
}

void orgsync_single(svcrt_worker_t *w, svc_call_t *call, const Kooisv__SingleOrgSync *m)
{
    if (!svcrt_text_ok(m->instance_id, 64, false) || !svcrt_text_ok(m->tenant_id, 64, true) ||
        !svcrt_text_ok(m->org_code, 64, true) || !svcrt_text_ok(m->org_name, 128, m->flag != 0) ||
        !svcrt_text_ok(m->parent_code, 64, false) || m->flag < 0 || m->flag > 2) {
        svc_call_result(call, RC_INVALID, "invalid singleOrgSync message");
        return;
    }
    if (strcmp(m->parent_code, m->org_code) == 0) {
        svc_call_result(call, RC_INVALID, "parentCode: an org cannot be its own parent");
        return;
    }
    svcrt_tx_run(w, call, single_tx, (void *)m);
}

/* ---- allOrgSync ---- */

typedef struct {
    const Kooisv__AllOrgSync *m;
    orgtree_t *tree; /* the new list, sorted by code */
} all_org_t;

/* True when the stored rows (sorted by code, byte order) equal the new list. */
static bool same_tree(PGresult *r, const orgtree_t *tree)
{
    size_t n;
    const orgtree_node_t *nodes = orgtree_nodes(tree, &n);
    if ((size_t)PQntuples(r) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(PQgetvalue(r, (int)i, 0), nodes[i].code) != 0 ||
            strcmp(PQgetvalue(r, (int)i, 1), nodes[i].name) != 0 ||
            strcmp(PQgetvalue(r, (int)i, 2), nodes[i].parent) != 0)
            return false;
    return true;
}

/* m's orgs as a JSON array of {code_key, name_key, parent_key} objects. */
static json_t *orgs_json(const Kooisv__AllOrgSync *m, const char *code_key, const char *name_key,
                         const char *parent_key)
{
    json_t *list = json_array();
    for (size_t i = 0; i < m->n_orgs; i++)
        json_array_append_new(list,
                              json_pack("{s:s,s:s,s:s}", code_key, m->orgs[i]->org_code, name_key,
                                        m->orgs[i]->org_name, parent_key, m->orgs[i]->parent_code));
    return list;
}

static pg_status_t all_tx(svcrt_tx_t *tx, void *arg)
{
    all_org_t *a = arg;
    const Kooisv__AllOrgSync *m = a->m;
    const Kooisv__Envelope *env = svc_call_request(tx->call);
    if (!lock_tree(tx, m->instance_id, m->tenant_id))
        return PG_FAIL;
    const char *key[] = {m->instance_id, m->tenant_id};
    PGresult *r = svcrt_exec(tx, "org_list", 2, key);
    if (!r)
        return PG_FAIL;
    long previous = PQntuples(r);
    bool same = same_tree(r, a->tree);
    PQclear(r);
    if (same) {
        /* a repeated replace with the same list changes nothing and tells nobody */
        tx->ok_msg = "success (no change)";
        return PG_OK;
    }
    if (!(r = svcrt_exec(tx, "org_delete_all", 2, key)))
        return PG_FAIL;
    PQclear(r);
    /* the statement reads the rows with jsonb_to_recordset: column names as keys */
    json_t *list = orgs_json(m, "org_code", "org_name", "parent_code");
    char *rows = svcadmin_json_text(list);
    json_decref(list);
    const char *p[] = {m->instance_id, m->tenant_id, env->test_flag ? "true" : "false", rows};
    r = svcrt_exec(tx, "org_insert_many", 4, p);
    free(rows);
    if (!r)
        return PG_FAIL;
    PQclear(r);
    json_t *orgs = orgs_json(m, "orgCode", "orgName", "parentCode");
    json_t *data =
        json_pack("{s:I,s:o}", "previousCount", (json_int_t)previous, "orgInfoList", orgs);
    return svcrt_emit(tx, "allOrgSync", "replace", m->instance_id, m->tenant_id, data);
}

void orgsync_all(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AllOrgSync *m)
{
    if (!svcrt_text_ok(m->instance_id, 64, false) || !svcrt_text_ok(m->tenant_id, 64, true) ||
        m->n_orgs > 10000) {
        svc_call_result(call, RC_INVALID, "invalid allOrgSync message");
        return;
    }
    orgtree_node_t *nodes = xmalloc((m->n_orgs ? m->n_orgs : 1) * sizeof *nodes);
    for (size_t i = 0; i < m->n_orgs; i++) {
        const Kooisv__SyncOrg *o = m->orgs[i];
        if (!svcrt_text_ok(o->org_code, 64, true) || !svcrt_text_ok(o->org_name, 128, true) ||
            !svcrt_text_ok(o->parent_code, 64, false)) {
            free(nodes);
            svc_call_result(call, RC_INVALID, "orgInfoList[%zu]: invalid org", i);
            return;
        }
        nodes[i] = (orgtree_node_t){o->org_code, o->org_name, o->parent_code};
    }
    all_org_t a = {.m = m, .tree = orgtree_new(nodes, m->n_orgs)};
    free(nodes);
    const char *dup = orgtree_duplicate(a.tree);
    const char *cycle = orgtree_cycle(a.tree);
    /* nothing is touched when the list is bad: the old tree stays as it was */
    if (dup)
        svc_call_result(call, RC_INVALID, "orgInfoList: orgCode %s appears more than once", dup);
    else if (cycle)
        svc_call_result(call, RC_INVALID, "orgInfoList: org %s is its own ancestor (cycle)", cycle);
    else
        svcrt_tx_run(w, call, all_tx, &a);
    orgtree_destroy(&a.tree);
}
