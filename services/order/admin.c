/* admin: operator look-ups and actions on instances and jobs, and the public key of licenses
 * (AdminRequest, caller kind "operator" only). Answers are JSON documents rendered by
 * PostgreSQL; sealed credentials never leave the database through here. */
#include "order.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instance_state.h"
#include "log.h"
#include "svcadmin.h"

const pg_stmt_t admin_stmts[] = {
    {"admin_instance_get",
     "SELECT jsonb_build_object("
     " 'instance', to_jsonb(i) - 'user_name_sealed' - 'password_sealed'"
     "   || jsonb_build_object('hasCredentials', i.password_sealed IS NOT NULL),"
     " 'history', (SELECT coalesce(jsonb_agg(to_jsonb(h) ORDER BY h.id), '[]')"
     "   FROM orders.instance_history h WHERE h.instance_id = i.instance_id),"
     " 'orders', (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.applied_at), '[]')"
     "   FROM orders.order_applications a WHERE a.instance_id = i.instance_id),"
     " 'jobs', (SELECT coalesce(jsonb_agg(to_jsonb(j) ORDER BY j.id), '[]')"
     "   FROM orders.jobs j WHERE j.instance_id = i.instance_id),"
     " 'licenses', (SELECT coalesce(jsonb_agg(to_jsonb(l) - 'license' ORDER BY l.created_at),"
     "   '[]') FROM orders.licenses l WHERE l.instance_id = i.instance_id)"
     ")::text FROM orders.instances i WHERE i.instance_id = $1",
     1},
    {"admin_instance_list",
     "SELECT jsonb_build_object('instances', coalesce(jsonb_agg(s.x ORDER BY s.seq DESC), '[]'),"
     " 'nextBefore', CASE WHEN count(*) = $3::int THEN min(s.seq) END)::text"
     " FROM (SELECT seq, jsonb_build_object('instanceId', instance_id, 'seq', seq,"
     "   'state', state, 'orderId', order_id, 'orderLineId', order_line_id,"
     "   'testFlag', test_flag, 'productId', product_id, 'chargingMode', charging_mode,"
     "   'trial', trial, 'expireTime', expire_time, 'provisionedAt', provisioned_at,"
     "   'createdAt', created_at, 'releasedAt', released_at) AS x"
     "  FROM orders.instances WHERE ($1::text IS NULL OR state = $1)"
     "  AND ($2::bigint IS NULL OR seq < $2::bigint)"
     "  AND ($4::text IS NULL OR order_id = $4 OR instance_id IN (SELECT a.instance_id"
     "   FROM orders.order_applications a WHERE a.order_id = $4))"
     "  ORDER BY seq DESC LIMIT $3::int) s",
     4},
    /* Given up jobs, and jobs still retrying after an error. */
    {"admin_jobs_failed",
     "SELECT jsonb_build_object('jobs', coalesce(jsonb_agg(to_jsonb(j) ORDER BY j.id), '[]'))::text"
     " FROM (SELECT * FROM orders.jobs WHERE state = 'failed'"
     "  OR (state IN ('pending', 'running') AND last_error IS NOT NULL)"
     "  ORDER BY id LIMIT $1::int) j",
     1},
    {"admin_job_redrive",
     "UPDATE orders.jobs SET state = 'pending', attempts = 0, next_attempt_at = now(),"
     " lease_owner = NULL, lease_until = NULL, updated_at = now()"
     " WHERE id = $1::bigint AND (state IN ('failed', 'pending')"
     "  OR (state = 'running' AND lease_until < now()))"
     " RETURNING jsonb_build_object('id', id, 'instanceId', instance_id, 'kind', kind,"
     "  'state', state, 'attempts', attempts, 'nextAttemptAt', next_attempt_at)::text",
     1},
    {"admin_job_state", "SELECT state FROM orders.jobs WHERE id = $1::bigint", 1},
    /* Waiting jobs through the jobs_due_order partial index; failed ones are few (operators redrive
     * them). */
    {"admin_job_stats",
     "SELECT (SELECT count(*) FROM orders.jobs WHERE state = 'pending'),"
     " (SELECT count(*) FROM orders.jobs WHERE state = 'running'),"
     " (SELECT count(*) FROM orders.jobs WHERE state = 'failed'),"
     " (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM orders.jobs"
     "   WHERE state IN ('pending', 'running'))",
     0},
};
const size_t admin_stmts_count = sizeof admin_stmts / sizeof admin_stmts[0];

/* True when s is a count (svcadmin_count: 1..18 decimal digits), as ids and cursors are. */
static bool is_count(const char *s)
{
    int64_t v;
    return svcadmin_count(s, 0, INT64_MAX, &v);
}

/* Run a statement answering one JSON text cell into the reply; no row -> missing_code/msg. */
static void answer_json(svcrt_worker_t *w, svc_call_t *call, const char *stmt, int n,
                        const char *const *params, const char *missing_code,
                        const char *missing_msg)
{
    pg_status_t st = PG_OK;
    PGresult *res = pg_session_exec(w->db, svc_call_rid(call), stmt, n, params, &st);
    if (!res) {
        order_reply(call, st, RC_INTERNAL, "");
        return;
    }
    if (PQntuples(res) == 1 && pg_value(res, 0, 0))
        svcadmin_reply_text(call, pg_value(res, 0, 0));
    else
        svc_call_result(call, missing_code, "%s", missing_msg);
    PQclear(res);
}

static void job_redrive(svcrt_worker_t *w, svc_call_t *call, const char *id)
{
    const char *rid = svc_call_rid(call);
    const char *p[] = {id};
    pg_status_t st = PG_OK;
    PGresult *res = pg_session_exec(w->db, rid, "admin_job_redrive", 1, p, &st);
    if (res && PQntuples(res) == 1) {
        svcadmin_reply_text(call, pg_value(res, 0, 0));
        PQclear(res);
        /* Autocommit: the row is already updated; the notification only saves a poll. */
        change_notify_jobs(w->conn, rid);
        log_info(rid, "job %s redriven by operator", id);
        return;
    }
    if (res) {
        PQclear(res);
        res = pg_session_exec(w->db, rid, "admin_job_state", 1, p, &st);
    }
    if (!res) {
        order_reply(call, st, RC_INTERNAL, "");
        return;
    }
    if (PQntuples(res) == 0)
        svc_call_result(call, RC_INVALID, "job %s does not exist", id);
    else
        svc_call_result(call, RC_BUSY,
                        "job %s is %s; only failed, waiting or abandoned jobs are redriven", id,
                        pg_value(res, 0, 0));
    PQclear(res);
}

/* The public half of the license key, for the seller's software to verify licenses offline. */
static void license_pubkey(svcrt_worker_t *w, svc_call_t *call)
{
    const licensesig_t *signer = order_cfg(w)->license_signer;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "algorithm", "Ed25519", "format", "KL2", "keyId",
                          licensesig_key_id(signer), "publicKey", licensesig_public_pem(signer));
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    svcadmin_reply_text(call, text);
    free(text);
}

void admin_handle(svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__AdminRequest *r = env->admin;
    /* A system client's key (billing) pulls the order events; nothing else (the runtime lets
     * it send nothing else). Its identity is its CURVE key, not the caller kind it claims. */
    if (svc_call_peer(call) == ZMQAUTH_PEER_SYSTEM) {
        if (!eventfeed_handle(w, call, r))
            svc_call_result(call, RC_AUTH, "a service may only call events.pending, events.ack");
        return;
    }
    if (!env->caller || !env->caller->kind || strcmp(env->caller->kind, "operator") != 0) {
        svc_call_result(call, RC_AUTH, "admin actions are for operators only");
        return;
    }
    const char *action = r->action ? r->action : "";
    char limit[16];
    if (strcmp(action, "instance.get") == 0) {
        const char *id = svcadmin_arg(r, "id");
        if (!order_require(call, "id", id, 256))
            return;
        const char *p[] = {id};
        answer_json(w, call, "admin_instance_get", 1, p, RC_NO_INSTANCE, "instance does not exist");
    } else if (strcmp(action, "instance.list") == 0) {
        const char *state = order_nullable(svcadmin_arg(r, "state"));
        const char *before = order_nullable(svcadmin_arg(r, "before"));
        instance_state_t s;
        if (state && !instance_state_parse(state, &s)) {
            svc_call_result(call, RC_INVALID,
                            "state must be provisioning, active, frozen or released");
            return;
        }
        if (before && !is_count(before)) {
            svc_call_result(call, RC_INVALID, "before must be a sequence number");
            return;
        }
        if (!svcadmin_limit(call, r, 50, 500, limit))
            return;
        const char *order_id = order_nullable(svcadmin_arg(r, "order"));
        if (order_id && !order_require(call, "order", order_id, 256))
            return;
        const char *p[] = {state, before, limit, order_id};
        answer_json(w, call, "admin_instance_list", 4, p, RC_INTERNAL, "");
    } else if (strcmp(action, "jobs.failed") == 0) {
        if (!svcadmin_limit(call, r, 100, 1000, limit))
            return;
        const char *p[] = {limit};
        answer_json(w, call, "admin_jobs_failed", 1, p, RC_INTERNAL, "");
    } else if (strcmp(action, "jobs.redrive") == 0) {
        const char *id = svcadmin_arg(r, "id");
        if (!id || !is_count(id)) {
            svc_call_result(call, RC_INVALID, "id must be a job id");
            return;
        }
        job_redrive(w, call, id);
    } else if (strcmp(action, "license.pubkey") == 0) {
        license_pubkey(w, call);
    } else if (!(w->outbox && outbox_admin(w->outbox, w->db, call, r))) {
        svc_call_result(call, RC_INVALID,
                        "unknown action; the order service knows instance.get, instance.list, "
                        "jobs.failed, jobs.redrive, license.pubkey, outbox.failed, "
                        "outbox.redrive");
    }
}

int admin_metrics(svcrt_worker_t *w, json_t *series)
{
    PGresult *r = pg_session_exec(w->db, NULL, "admin_job_stats", 0, NULL, NULL);
    if (!r)
        return -1;
    static const char *const states[] = {"pending", "running", "failed"};
    for (int i = 0; i < 3; i++) {
        const char *labels[] = {"state", states[i], NULL};
        svcadmin_series_add(series, "kooisv_provisioning_jobs", "gauge",
                            "provisioning and order-sync jobs by state (failed: attempts "
                            "exhausted, waiting for an operator's jobs.redrive)",
                            strtod(PQgetvalue(r, 0, i), NULL), labels);
    }
    svcadmin_series_add(series, "kooisv_provisioning_oldest_waiting_seconds", "gauge",
                        "age of the oldest job not yet done (pending or running; 0 when none)",
                        strtod(PQgetvalue(r, 0, 3), NULL), NULL);
    PQclear(r);
    return 0;
}
