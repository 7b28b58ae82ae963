/* license: getLicenseAsync (spec §3). One license per (instance, eventId, deviceFingerprint),
 * kept in orders.licenses; a repeat returns the stored one. The license is a token signed with a
 * key derived from the data key:
 *   "KL1." base64url(payload JSON) "." hex(HMAC-SHA256(license key, "KL1." base64url(payload)))
 * payload = {iid, eid, fp (sha256 hex of the fingerprint), eff, exp, iat} (epoch ms).
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

/* yyyyMMddHHmmss (marketplace time) or epoch milliseconds. */
static bool parse_time(const char *s, int64_t *ms)
{
    if (strlen(s) == 14 && time_parse_compact(s, ms))
        return true;
    return strlen(s) == 13 && time_parse_ms(s, ms);
}

/* The signed token for these facts. Caller owns the result. */
static char *license_token(const uint8_t key[32], const char *instance_id, const char *event_id,
                           const char *fp_hex, int64_t eff, int64_t exp, bool has_exp)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:o, s:I}", "iid", instance_id, "eid", event_id, "fp",
                  fp_hex, "eff", (json_int_t)eff, "exp", has_exp ? json_integer(exp) : json_null(),
                  "iat", (json_int_t)time_now_ms());
    char *payload = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    char *b64 = b64_encode((const uint8_t *)payload, strlen(payload));
    free(payload);
    /* base64url without padding: the token travels in URLs and headers. */
    size_t n = 0;
    for (char *p = b64; *p && *p != '='; p++, n++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    b64[n] = '\0';
    char *signed_part = xasprintf("KL1.%s", b64);
    free(b64);
    uint8_t mac[32];
    char mac_hex[65];
    hmac_sha256(key, 32, signed_part, strlen(signed_part), mac);
    hex_encode(mac, sizeof mac, mac_hex);
    char *token = xasprintf("%s.%s", signed_part, mac_hex);
    free(signed_part);
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

static db_status_t license_body(PGconn *conn, void *arg)
{
    license_ctx_t *c = arg;
    const Kooisv__GetLicenseAsync *r = c->req;
    db_status_t st = DB_OK;
    const char *p[] = {r->instance_id, c->test_flag ? "true" : "false"};
    PGresult *res = orderdb_exec(conn, c->rid, "license_instance", 2, p, &st);
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
        return DB_ROLLBACK;
    }
    if (!known)
        return DB_FAIL;
    if (instance_transition(cur, INSTANCE_EV_LICENSE, &to, &why) != INSTANCE_APPLY) {
        c->code = RC_INVALID;
        c->msg = why;
        return DB_ROLLBACK;
    }
    if (!c->has_exp && needs_end) {
        c->code = RC_INVALID;
        c->msg = "expireTime is required for a periodic product";
        return DB_ROLLBACK;
    }
    if (!c->has_exp && mode_unknown) {
        c->code = RC_BUSY;
        c->msg = "the instance's order is still being fetched; without expireTime, retry later";
        return DB_ROLLBACK;
    }
    const char *g[] = {r->instance_id, r->event_id, c->fp_hex};
    res = orderdb_exec(conn, c->rid, "license_get", 3, g, &st);
    if (!res)
        return st;
    bool exists = PQntuples(res) == 1;
    PQclear(res);
    if (exists) {
        c->code = RC_OK;
        c->msg = "success (license already issued)";
        return DB_ROLLBACK;
    }
    char eff[24], exp[24];
    snprintf(eff, sizeof eff, "%lld", (long long)c->eff);
    snprintf(exp, sizeof exp, "%lld", (long long)c->exp);
    char *token = license_token(c->cfg->license_key, r->instance_id, r->event_id, c->fp_hex, c->eff,
                                c->exp, c->has_exp);
    const char *ins[] = {
        r->instance_id,          r->event_id, c->fp_hex, r->device_fingerprint, eff,
        c->has_exp ? exp : NULL, token,       c->rid};
    /* A concurrent twin may win the insert; ON CONFLICT keeps its license, never a second. */
    res = orderdb_exec(conn, c->rid, "license_insert", 8, ins, &st);
    free(token);
    if (!res)
        return st;
    c->issued = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    c->code = RC_OK;
    c->msg = "success";
    return DB_OK;
}

void license_issue(order_worker_t *w, svc_call_t *call)
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
        .rid = svc_call_rid(call), .cfg = w->cfg, .req = r, .test_flag = env->test_flag};
    if (!parse_time(r->effective_time, &c.eff)) {
        svc_call_result(call, RC_INVALID, "effectiveTime must be yyyyMMddHHmmss");
        return;
    }
    c.has_exp = *r->expire_time != '\0';
    if (c.has_exp && !parse_time(r->expire_time, &c.exp)) {
        svc_call_result(call, RC_INVALID, "expireTime must be yyyyMMddHHmmss");
        return;
    }
    uint8_t digest[32];
    sha256(r->device_fingerprint, strlen(r->device_fingerprint), digest);
    hex_encode(digest, sizeof digest, c.fp_hex);
    db_status_t st = orderdb_tx(w->conn, c.rid, license_body, &c);
    order_reply(call, st, c.code, c.msg);
    if (st == DB_OK && c.issued)
        log_info(c.rid, "license issued instance=%s event=%s", r->instance_id, r->event_id);
}
