/* license: getLicenseAsync (spec §3). One license per (instance, eventId, deviceFingerprint),
 * kept in orders.licenses; a repeat keeps the stored one, whatever format it was issued in
 * (licenses from before Ed25519 signing stay the HMAC "KL1." tokens they were). New licenses are
 * signed with the service's Ed25519 key (KOOISV_LICENSE_KEY; common/licensesig: format KL2):
 *   payload = {eff, eid, exp, fp (sha256 hex of the fingerprint), iat, iid, kid} (times: epoch
 *   ms, UTC; exp null when absent).
 * expireTime is mandatory for periodic products (spec §3): without it only ONE_TIME and
 * ON_DEMAND instances get a license (exp null). */
#include "order.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cryptoutil.h"
#include "instance_state.h"
#include "log.h"
#include "timeutil.h"
#include "xmalloc.h"

const pg_stmt_t license_stmts[] = {
    /* Only an instance of the call's kind: test (testFlag 1) or real. */
    {"license_instance",
     "SELECT state, charging_mode FROM orders.instances"
     " WHERE instance_id = $1 AND test_flag = $2::boolean FOR SHARE",
     2},
    {"license_insert",
     "INSERT INTO orders.licenses (instance_id, event_id, fingerprint_sha256, device_fingerprint,"
     " effective_time, expire_time, license, request_id)"
     " VALUES ($1, $2, $3, $4, to_timestamp($5::bigint / 1000.0),"
     " to_timestamp($6::bigint / 1000.0), $7, $8) ON CONFLICT DO NOTHING",
     8},
    {"license_get",
     "SELECT license FROM orders.licenses"
     " WHERE instance_id = $1 AND event_id = $2 AND fingerprint_sha256 = $3",
     3},
};
const size_t license_stmts_count = sizeof license_stmts / sizeof license_stmts[0];

/* The license for these facts (common/licensesig: KL2, Ed25519). Caller owns the result;
 * NULL when signing failed. */
static char *license_token(const licensesig_t *signer, const char *instance_id,
                           const char *event_id, const char *fp_hex, int64_t eff, int64_t exp,
                           bool has_exp)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:o, s:I}", "iid", instance_id, "eid", event_id, "fp",
                  fp_hex, "eff", (json_int_t)eff, "exp", has_exp ? json_integer(exp) : json_null(),
                  "iat", (json_int_t)time_now_ms());
    char *token = licensesig_sign(signer, o);
    json_decref(o);
    return token;
}

typedef struct {
    const char *rid;
    const order_config_t *cfg;
    const Kooisv__GetLicenseAsync *req;
    bool test_flag; /* the call's testFlag */
    const char *code;
    const char *msg;
    char fp_hex[65];
    int64_t eff, exp;
    bool has_exp;
    bool issued;
} license_ctx_t;

static pg_status_t license_body(pg_tx_t *tx, void *arg)
{
    PGconn *conn = tx->conn;
    license_ctx_t *c = arg;
    const Kooisv__GetLicenseAsync *r = c->req;
    pg_status_t st = PG_OK;
    const char *p[] = {r->instance_id, c->test_flag ? "true" : "false"};
    PGresult *res = pg_exec_logged(conn, c->rid, "license_instance", 2, p, &st);
    if (!res)
        return st;
    instance_state_t cur = INSTANCE_RELEASED, to;
    const char *why = "";
    bool found = PQntuples(res) == 1;
    bool known = found && instance_state_parse(pg_value(res, 0, 0), &cur);
    const char *mode = found ? pg_value(res, 0, 1) : NULL;
    /* A periodic product's license ends with its period; only ONE_TIME and ON_DEMAND ones may be
     * perpetual. Before Query Order answered, the mode is unknown: ask again later. */
    bool needs_end = mode && strcmp(mode, "ONE_TIME") != 0 && strcmp(mode, "ON_DEMAND") != 0;
    bool mode_unknown = !mode;
    PQclear(res);
    if (!found) {
        c->code = RC_NO_INSTANCE;
        c->msg = "instance does not exist";
        return PG_ROLLBACK;
    }
    if (!known)
        return PG_FAIL;
    if (instance_transition(cur, INSTANCE_EV_LICENSE, &to, &why) != INSTANCE_APPLY) {
        c->code = RC_INVALID;
        c->msg = why;
        return PG_ROLLBACK;
    }
    if (!c->has_exp && needs_end) {
        c->code = RC_INVALID;
        c->msg = "expireTime is required for a periodic product";
        return PG_ROLLBACK;
    }
    if (!c->has_exp && mode_unknown) {
        c->code = RC_BUSY;
        c->msg = "the instance's order is still being fetched; without expireTime, retry later";
        return PG_ROLLBACK;
    }
    const char *g[] = {r->instance_id, r->event_id, c->fp_hex};
    res = pg_exec_logged(conn, c->rid, "license_get", 3, g, &st);
    if (!res)
        return st;
    bool exists = PQntuples(res) == 1;
    PQclear(res);
    if (exists) {
        c->code = RC_OK;
        c->msg = "success (license already issued)";
        return PG_ROLLBACK;
    }
    char eff[24], exp[24];
    snprintf(eff, sizeof eff, "%lld", (long long)c->eff);
    snprintf(exp, sizeof exp, "%lld", (long long)c->exp);
    char *token = license_token(c->cfg->license_signer, r->instance_id, r->event_id, c->fp_hex,
                                c->eff, c->exp, c->has_exp);
    if (!token) {
        log_error(c->rid, "license signing failed");
        return PG_FAIL;
    }
    const char *ins[] = {
        r->instance_id,          r->event_id, c->fp_hex, r->device_fingerprint, eff,
        c->has_exp ? exp : NULL, token,       c->rid};
    /* A concurrent twin may win the insert; ON CONFLICT keeps its license, never a second. */
    res = pg_exec_logged(conn, c->rid, "license_insert", 8, ins, &st);
    free(token);
    if (!res)
        return st;
    c->issued = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    c->code = RC_OK;
    c->msg = "success";
    return PG_OK;
}

void license_issue(svcrt_worker_t *w, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    const Kooisv__GetLicenseAsync *r = env->get_license_async;
    if (!order_require(call, "instanceId", r->instance_id, 256) ||
        !order_require(call, "eventId", r->event_id, 256) ||
        !order_require(call, "effectiveTime", r->effective_time, 32))
        return;
    if (strlen(r->device_fingerprint) > 1024) {
        svc_call_result(call, RC_INVALID, "deviceFingerprint is longer than 1024 characters");
        return;
    }
    license_ctx_t c = {
        .rid = svc_call_rid(call), .cfg = order_cfg(w), .req = r, .test_flag = env->test_flag};
    /* Always UTC (spec §3), whatever KOOISV_MARKETPLACE_TIME_ZONE says about other times. */
    char why[160];
    if (!time_parse_license(r->effective_time, &c.eff, why, sizeof why)) {
        svc_call_result(call, RC_INVALID, "effectiveTime %s", why);
        return;
    }
    c.has_exp = *r->expire_time != '\0';
    if (c.has_exp && !time_parse_license(r->expire_time, &c.exp, why, sizeof why)) {
        svc_call_result(call, RC_INVALID, "expireTime %s", why);
        return;
    }
    uint8_t digest[32];
    sha256(r->device_fingerprint, strlen(r->device_fingerprint), digest);
    hex_encode(digest, sizeof digest, c.fp_hex);
    pg_status_t st = pg_tx_run(w->db, c.rid, license_body, &c);
    order_reply(call, st, c.code, c.msg);
    if (st == PG_OK && c.issued)
        log_info(c.rid, "license issued instance=%s event=%s", r->instance_id, r->event_id);
}
