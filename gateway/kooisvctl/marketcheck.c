/* marketcheck: `kooisvctl market check` (see marketcheck.h).
 *
 * Re-running: the debug orders have fixed ids, so a second run's newInstance returns the
 * instance of the first (idempotent, spec §3) and the changes applied to it answer "already
 * applied" (success); nothing here leaves those instances other than active. What must be new
 * each time (the instance that is released, tenants, apps, users, organisations, license
 * events, nonces) carries the run id. */
#include "marketcheck.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctlenv.h"
#include "httpc.h"
#include "market.h"
#include "mktcall.h"
#include "randutil.h"
#include "resultcode.h"
#include "rsaoaep.h"
#include "sortid.h"
#include "timeutil.h"
#include "xmalloc.h"

#define DAY_MS (24LL * 3600 * 1000)
#define STALE_MS 120000 /* twice the signature window */
#define POLL_MS 500

typedef enum { CASE_PASS, CASE_FAIL, CASE_SKIP } verdict_t;

typedef struct {
    market_conf_t conf;
    char run[17];             /* this run's id: [0-9A-Z], sorts by time */
    const char *order_prefix; /* fresh orders: prefix + run */
    int wait_s;               /* provisioning */
    char *yearly, *trial;     /* debug-order instances */
    char *ondemand;           /* the pay-per-use debug order's instance */
    char *fresh;              /* the run's own instance (released at the end) */
    char *tenant, *app;       /* kit sync ids of the run */
} check_t;

typedef verdict_t (*case_fn)(check_t *c, char *detail, size_t n);

/* ================================================================ calls */

/* Send body (taken) to kit (NULL: basic) with fresh signing, expect Body-Sign valid and code
 * want. true on both; else false with the reason in detail. *out (may be NULL) keeps the answer
 * for the caller (market_answer_free). */
static bool expect_ex(check_t *c, const char *kit, json_t *body, const char *ts, const char *nonce,
                      const char *signature, const char *want, market_answer_t *out, char *detail,
                      size_t n)
{
    if (kit) {
        char stamp[18];
        market_kit_timestamp(stamp);
        if (!json_object_get(body, "testFlag"))
            json_object_set_new(body, "testFlag", json_integer(1));
        json_object_set_new(body, "timeStamp", json_string(stamp));
    } else if (!json_object_get(body, "testFlag")) {
        json_object_set_new(body, "testFlag", json_string("1"));
    }
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(body);
    market_answer_t local;
    market_answer_t *a = out ? out : &local;
    int rc = market_send(&c->conf, kit, text, ts, nonce, signature, a);
    free(text);
    bool ok = false;
    if (rc != 0)
        snprintf(detail, n, "no answer: %s", a->error);
    else if (!a->code)
        snprintf(detail, n, "HTTP %d without a resultCode", a->status);
    else if (strcmp(a->code, want) != 0)
        snprintf(detail, n, "expected %s, got %s %s%s%s", want, a->code, a->msg,
                 a->request_id ? " (request " : "", a->request_id ? a->request_id : "");
    else if (a->body_sign != 1)
        snprintf(detail, n, "Body-Sign %s with the %s key", a->body_sign == 0 ? "wrong" : "missing",
                 kit ? "kit sync" : "basic interfaces");
    else
        ok = true;
    if (ok)
        snprintf(detail, n, "%s %s", a->code, a->msg);
    if (!out)
        market_answer_free(&local);
    return ok;
}

static bool expect(check_t *c, const char *kit, json_t *body, const char *want,
                   market_answer_t *out, char *detail, size_t n)
{
    return expect_ex(c, kit, body, NULL, NULL, NULL, want, out, detail, n);
}

/* expireTime-style compact UTC time of now + days into out[15]. */
static const char *compact_in(int days, char out[15])
{
    return time_format_compact(NULL, time_now_ms() + days * DAY_MS, out);
}

/* newInstance of order (line -000001) with a fresh businessId; the instance id (caller frees) or
 * NULL with the reason. */
static char *buy(check_t *c, const char *order, char *detail, size_t n)
{
    char line[160], business[37];
    snprintf(line, sizeof line, "%s-000001", order);
    rand_uuid(business);
    market_answer_t a;
    char *id = NULL;
    if (expect(c, NULL,
               json_pack("{s:s, s:s, s:s, s:s}", "activity", "newInstance", "orderId", order,
                         "orderLineId", line, "businessId", business),
               RC_OK, &a, detail, n)) {
        const char *got = json_string_value(json_object_get(a.json, "instanceId"));
        if (got && *got)
            id = xstrdup(got);
        else
            snprintf(detail, n, "newInstance answered 000000 without an instanceId");
    }
    market_answer_free(&a);
    return id;
}

/* Poll queryInstance of id until its appInfo is there and decrypts; true with what was seen. */
static bool provisioned(check_t *c, const char *id, char *detail, size_t n)
{
    int64_t start = time_mono_us(), until = start + (int64_t)c->wait_s * 1000000;
    for (;;) {
        market_answer_t a;
        if (!expect(c, NULL, json_pack("{s:s, s:s}", "activity", "queryInstance", "instanceId", id),
                    RC_OK, &a, detail, n)) {
            market_answer_free(&a);
            return false;
        }
        json_t *app =
            json_object_get(json_array_get(json_object_get(a.json, "info"), 0), "appInfo");
        const char *url = json_string_value(json_object_get(app, "frontEndUrl"));
        if (url && *url) {
            char why[256];
            json_t *plain = market_appinfo_decrypt(&c->conf, a.json, why, sizeof why);
            const char *user =
                json_string_value(json_object_get(json_array_get(plain, 0), "userName"));
            bool ok = plain && user && *user;
            if (ok)
                snprintf(detail, n, "instance %s, appInfo in %.1f s (credentials decrypt)", id,
                         (double)(time_mono_us() - start) / 1e6);
            else
                snprintf(detail, n, "instance %s: %s", id, plain ? "appInfo has no userName" : why);
            json_decref(plain);
            market_answer_free(&a);
            return ok;
        }
        market_answer_free(&a);
        if (time_mono_us() >= until) {
            snprintf(detail, n, "instance %s: no appInfo within %d s (kooisvctl jobs failed?)", id,
                     c->wait_s);
            return false;
        }
        struct timespec ts = {0, POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static verdict_t purchase(check_t *c, const char *order, char **keep, char *detail, size_t n)
{
    char *id = buy(c, order, detail, n);
    if (!id)
        return CASE_FAIL;
    verdict_t v = provisioned(c, id, detail, n) ? CASE_PASS : CASE_FAIL;
    if (keep)
        *keep = id;
    else
        free(id);
    return v;
}

/* The instance a case needs, or NULL with the reason. */
static const char *need(const char *id, const char *what, char *detail, size_t n)
{
    if (!id)
        snprintf(detail, n, "needs the %s instance, which failed above", what);
    return id;
}

#define VERDICT(call) ((call) ? CASE_PASS : CASE_FAIL)

/* ================================================================ purchases */

static verdict_t case_yearly(check_t *c, char *d, size_t n)
{
    return purchase(c, "MOCKPERIODYEARNEW", &c->yearly, d, n);
}
static verdict_t case_onetime(check_t *c, char *d, size_t n)
{
    return purchase(c, "MOCKONETIMENEW", NULL, d, n);
}
static verdict_t case_ondemand(check_t *c, char *d, size_t n)
{
    return purchase(c, "MOCKONDEMAND", &c->ondemand, d, n);
}
static verdict_t case_package(check_t *c, char *d, size_t n)
{
    return purchase(c, "MOCKONDEMANDPKG", NULL, d, n);
}
static verdict_t case_trial(check_t *c, char *d, size_t n)
{
    return purchase(c, "MOCKPERIODDAYTRIAL", &c->trial, d, n);
}

/* refreshInstance of id with the debug order, scene and expiry in days. */
static verdict_t refresh(check_t *c, const char *id, const char *scene, const char *order, int days,
                         char *d, size_t n)
{
    char line[160], expire[15];
    snprintf(line, sizeof line, "%s-000001", order);
    return VERDICT(expect(c, NULL,
                          json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
                                    "instanceId", id, "scene", scene, "orderId", order,
                                    "orderLineId", line, "expireTime", compact_in(days, expire)),
                          RC_OK, NULL, d, n));
}

static verdict_t case_trial_to_formal(check_t *c, char *d, size_t n)
{
    const char *id = need(c->trial, "trial", d, n);
    return id ? refresh(c, id, "TRIAL_TO_FORMAL", "MOCKMONTYTRIALTOFORMAL", 30, d, n) : CASE_FAIL;
}
static verdict_t case_renewal(check_t *c, char *d, size_t n)
{
    const char *id = need(c->yearly, "yearly", d, n);
    return id ? refresh(c, id, "RENEWAL", "MOCKMONTYRENEW", 365 + 60, d, n) : CASE_FAIL;
}
static verdict_t case_unsubscribe(check_t *c, char *d, size_t n)
{
    const char *id = need(c->yearly, "yearly", d, n);
    return id ? refresh(c, id, "UNSUBSCRIBE_RENEWAL_PERIOD", "MOCKMONTYUNSUBSCRIBE", 365, d, n)
              : CASE_FAIL;
}
/* activity on the yearly instance with the other fields (taken), expecting 000000. */
static verdict_t on_yearly(check_t *c, const char *activity, json_t *fields, char *d, size_t n)
{
    const char *id = need(c->yearly, "yearly", d, n);
    if (!id) {
        json_decref(fields);
        return CASE_FAIL;
    }
    json_object_set_new(fields, "activity", json_string(activity));
    json_object_set_new(fields, "instanceId", json_string(id));
    return VERDICT(expect(c, NULL, fields, RC_OK, NULL, d, n));
}
static verdict_t case_change(check_t *c, char *d, size_t n)
{
    return on_yearly(c, "upgradeInstance",
                     json_pack("{s:s, s:s}", "orderId", "MOCKMONTYCHANGE", "orderLineId",
                               "MOCKMONTYCHANGE-000001"),
                     d, n);
}
static verdict_t case_change_check(check_t *c, char *d, size_t n)
{
    return on_yearly(c, "changeInstanceCheck",
                     json_pack("{s:{s:s}}", "productInfo", "productId", "OFFI000000000000000002"),
                     d, n);
}

static verdict_t set_status(check_t *c, const char *id, const char *status, const char *want,
                            char *d, size_t n)
{
    return VERDICT(expect(c, NULL,
                          json_pack("{s:s, s:s, s:s}", "activity", "updateInstanceStatus",
                                    "instanceId", id, "status", status),
                          want, NULL, d, n));
}
static verdict_t case_freeze(check_t *c, char *d, size_t n)
{
    const char *id = need(c->yearly, "yearly", d, n);
    return id ? set_status(c, id, "FREEZE", RC_OK, d, n) : CASE_FAIL;
}
static verdict_t case_unfreeze(check_t *c, char *d, size_t n)
{
    const char *id = need(c->yearly, "yearly", d, n);
    if (!id || set_status(c, id, "UNFREEZE", RC_OK, d, n) != CASE_PASS)
        return CASE_FAIL;
    return VERDICT(provisioned(c, id, d, n)); /* served again */
}
static verdict_t case_license(check_t *c, char *d, size_t n)
{
    const char *id = need(c->yearly, "yearly", d, n);
    if (!id)
        return CASE_FAIL;
    char event[40], from[15], to[15];
    snprintf(event, sizeof event, "EV%s", c->run);
    compact_in(0, from);
    compact_in(365, to);
    for (int i = 0; i < 2; i++) /* the repeat keeps the first license */
        if (!expect(c, NULL,
                    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync",
                              "instanceId", id, "eventId", event, "effectiveTime", from,
                              "expireTime", to, "deviceFingerprint", "kooisvctl-market-check"),
                    RC_OK, NULL, d, n))
            return CASE_FAIL;
    return CASE_PASS;
}

/* ================================================================ kit sync */

static const char *kit_instance(check_t *c)
{
    return c->yearly ? c->yearly : ""; /* "" as in the seller console's debugging */
}

static verdict_t case_tenant(check_t *c, char *d, size_t n)
{
    char domain[64];
    snprintf(domain, sizeof domain, "check-%s.example.com", c->run);
    return VERDICT(expect(c, "tenantSync",
                          json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "instanceId", kit_instance(c),
                                    "tenantId", c->tenant, "tenantCode", c->tenant, "name",
                                    "market check tenant", "domainName", domain, "flag", 1),
                          RC_OK, NULL, d, n));
}

static verdict_t case_application(check_t *c, char *d, size_t n)
{
    const char *why = "set KOOISV_RSA_PUBLIC_KEY_FILE or give --rsa-public-key-file";
    EVP_PKEY *pub =
        c->conf.rsa_public_key_file ? rsaoaep_load_public(c->conf.rsa_public_key_file, &why) : NULL;
    if (!pub) {
        snprintf(d, n, "no RSA public key to encrypt clientSecret: %s", why);
        return CASE_FAIL;
    }
    char secret[33];
    rand_alnum(secret, 32);
    char *cipher = rsaoaep_encrypt(pub, 0, secret, strlen(secret));
    EVP_PKEY_free(pub);
    verdict_t v =
        VERDICT(expect(c, "applicationSync",
                       json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "instanceId", kit_instance(c),
                                 "tenantId", c->tenant, "appId", c->app, "clientId", c->app,
                                 "clientSecret", cipher ? cipher : "", "flag", 1),
                       RC_OK, NULL, d, n));
    free(cipher);
    return v;
}

static verdict_t case_auth(check_t *c, char *d, size_t n)
{
    char user[40], org[40];
    snprintf(user, sizeof user, "u%s", c->run);
    snprintf(org, sizeof org, "O%s", c->run);
    return VERDICT(
        expect(c, "authSync",
               json_pack("{s:s, s:s, s:s, s:i, s:[{s:s, s:s, s:s, s:s, s:s}]}", "instanceId",
                         kit_instance(c), "tenantId", c->tenant, "appId", c->app, "flag", 1,
                         "userList", "userName", user, "name", "market check user", "orgCode", org,
                         "role", "admin", "enable", "true"),
               RC_OK, NULL, d, n));
}

static verdict_t case_org(check_t *c, char *d, size_t n)
{
    char org[40];
    snprintf(org, sizeof org, "O%s", c->run);
    return VERDICT(expect(c, "singleOrgSync",
                          json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "instanceId", kit_instance(c),
                                    "tenantId", c->tenant, "orgCode", org, "orgName",
                                    "market check", "parentCode", "", "flag", 1),
                          RC_OK, NULL, d, n));
}

static verdict_t case_allorg(check_t *c, char *d, size_t n)
{
    char org[40], sub[48];
    snprintf(org, sizeof org, "O%s", c->run);
    snprintf(sub, sizeof sub, "O%s-1", c->run);
    /* The child first: the marketplace does not promise parents before children. */
    return VERDICT(expect(
        c, "allOrgSync",
        json_pack("{s:s, s:s, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}]}", "instanceId", kit_instance(c),
                  "tenantId", c->tenant, "orgInfoList", "orgCode", sub, "orgName", "sub",
                  "parentCode", org, "orgCode", org, "orgName", "market check", "parentCode", ""),
        RC_OK, NULL, d, n));
}

/* ---------------------------------------------------------------- usage
 * Pay-per-use usage: the seller's application reports it to kooisv's admin API (POST /v1/usage,
 * role meter), billing pushes it to the marketplace every hour. The case reports one record of
 * the MOCKONDEMAND instance twice: stored once, then counted as repeated. Billing learns the
 * instance from the order events a moment after its purchase: "unknown instance" and "charging
 * mode not known yet" (before its provisioning) are retried for 20 s. Without KOOISV_METER_TOKEN (and KOOISV_ADMIN_URL) the case is skipped, never passed. */

#define USAGE_WAIT_MS 20000

/* POST body to the admin API's /v1/usage with the meter token; HTTP status (0: none) and the
 * answer in *out (caller frees). */
static int usage_post(const char *token, const char *body, httpc_response_t *out)
{
    char *url = xasprintf("%s/v1/usage", ctlenv_get("KOOISV_ADMIN_URL"));
    char *auth = xasprintf("Authorization: Bearer %s", token);
    const char *headers[] = {auth, "Content-Type: application/json", NULL};
    httpc_options_t opt = {
        .ca_file = ctlenv_get("KOOISV_CA_FILE"), .verify_peer = 1, .timeout_ms = 10000};
    int rc = httpc_request("POST", url, headers, body, strlen(body), &opt, out);
    xfree_secret(auth, strlen(auth));
    free(url);
    return rc == 0 ? out->status : 0;
}

static verdict_t case_usage(check_t *c, char *d, size_t n)
{
    if (!ctlenv_get("KOOISV_ADMIN_URL") || !ctlenv_get("KOOISV_METER_TOKEN")) {
        snprintf(d, n, "set KOOISV_METER_TOKEN and KOOISV_ADMIN_URL to check the usage intake");
        return CASE_SKIP;
    }
    if (!need(c->ondemand, "pay-per-use", d, n))
        return CASE_FAIL;
    char *token = ctlenv_secret("KOOISV_METER_TOKEN");
    char used_at[32];
    time_t t = time(NULL) - 60;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(used_at, sizeof used_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char *rec = xasprintf("%s-usage", c->run);
    json_t *doc = json_pack("{s:[{s:s,s:s,s:s,s:s}]}", "records", "instanceId", c->ondemand,
                            "recordId", rec, "quantity", "1.5", "usedAt", used_at);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    free(rec);
    verdict_t v = CASE_FAIL;
    const char *want[] = {"stored", "repeated"};
    int64_t end = time_mono_us() + (int64_t)USAGE_WAIT_MS * 1000;
    for (int round = 0; round < 2;) {
        httpc_response_t r;
        int status = usage_post(token, body, &r);
        json_t *a = status ? json_loads(r.body ? r.body : "", 0, NULL) : NULL;
        const char *msg = json_string_value(json_object_get(a, "error"));
        /* Billing learns the instance, then its charging mode, from two order events. */
        bool unknown = status == 400 && msg &&
                       (strstr(msg, "unknown instance") || strstr(msg, "not known yet"));
        if (status == 200 && json_integer_value(json_object_get(a, want[round])) == 1) {
            round++;
        } else if (unknown && time_mono_us() < end) {
            struct timespec ts = {0, 500 * 1000000L};
            nanosleep(&ts, NULL);
        } else {
            snprintf(d, n, "POST /v1/usage (%s): HTTP %d %.200s",
                     round ? "repeated" : "first", status,
                     msg ? msg : (r.body ? r.body : "no answer"));
            json_decref(a);
            httpc_response_free(&r);
            goto out;
        }
        json_decref(a);
        httpc_response_free(&r);
    }
    snprintf(d, n, "one record stored, its repeat counted once");
    v = CASE_PASS;
out:
    free(body);
    xfree_secret(token, strlen(token));
    return v;
}

/* ================================================================ refusals */

static const char zero_sign[] = "0000000000000000000000000000000000000000000000000000000000000000";

static json_t *query_body(check_t *c)
{
    return json_pack("{s:s, s:s}", "activity", "queryInstance", "instanceId",
                     c->yearly ? c->yearly : c->run);
}

static verdict_t case_bad_signature(check_t *c, char *d, size_t n)
{
    return VERDICT(expect_ex(c, NULL, query_body(c), NULL, NULL, zero_sign, RC_AUTH, NULL, d, n));
}

static verdict_t case_bad_kit_signature(check_t *c, char *d, size_t n)
{
    return VERDICT(
        expect_ex(c, "tenantSync",
                  json_pack("{s:s, s:s, s:s, s:s, s:i}", "instanceId", kit_instance(c), "tenantId",
                            c->tenant, "tenantCode", c->tenant, "name", "forged", "flag", 2),
                  NULL, NULL, zero_sign, RC_AUTH, NULL, d, n));
}

static verdict_t case_stale(check_t *c, char *d, size_t n)
{
    char ts[24], nonce[33];
    mktcall_fresh(ts, nonce);
    snprintf(ts, sizeof ts, "%lld", (long long)(time_now_ms() - STALE_MS));
    return VERDICT(expect_ex(c, NULL, query_body(c), ts, nonce, NULL, RC_INVALID, NULL, d, n));
}

static verdict_t case_replay(check_t *c, char *d, size_t n)
{
    char ts[24], nonce[33];
    mktcall_fresh(ts, nonce);
    if (!expect_ex(c, NULL, query_body(c), ts, nonce, NULL, RC_OK, NULL, d, n)) {
        char first[300];
        snprintf(first, sizeof first, "the first call: %s", d);
        snprintf(d, n, "%s", first);
        return CASE_FAIL;
    }
    return VERDICT(expect_ex(c, NULL, query_body(c), ts, nonce, NULL, RC_AUTH, NULL, d, n));
}

static verdict_t case_repeat_new(check_t *c, char *d, size_t n)
{
    char order[80];
    snprintf(order, sizeof order, "%s%s", c->order_prefix, c->run);
    char *first = buy(c, order, d, n);
    char *second = first ? buy(c, order, d, n) : NULL;
    verdict_t v = CASE_FAIL;
    if (second && strcmp(first, second) == 0) {
        snprintf(d, n, "order %s: the same instance %s twice", order, first);
        v = CASE_PASS;
    } else if (second) {
        snprintf(d, n, "order %s: two instances, %s then %s", order, first, second);
    }
    c->fresh = first;
    free(second);
    return v;
}

static verdict_t release(check_t *c, char *d, size_t n)
{
    const char *id = need(c->fresh, "repeated newInstance", d, n);
    return !id ? CASE_FAIL
               : VERDICT(expect(
                     c, NULL,
                     json_pack("{s:s, s:s}", "activity", "releaseInstance", "instanceId", id),
                     RC_OK, NULL, d, n));
}
static verdict_t case_release(check_t *c, char *d, size_t n)
{
    return release(c, d, n);
}
static verdict_t case_release_twice(check_t *c, char *d, size_t n)
{
    return release(c, d, n);
}
static verdict_t case_after_release(check_t *c, char *d, size_t n)
{
    const char *id = need(c->fresh, "repeated newInstance", d, n);
    return id ? set_status(c, id, "UNFREEZE", RC_INVALID, d, n) : CASE_FAIL;
}
static verdict_t case_unknown_instance(check_t *c, char *d, size_t n)
{
    char id[40];
    snprintf(id, sizeof id, "NOSUCH%s", c->run);
    return set_status(c, id, "FREEZE", RC_NO_INSTANCE, d, n);
}
static verdict_t case_bad_secret(check_t *c, char *d, size_t n)
{
    unsigned char noise[384]; /* a 3072-bit block that no key decrypts */
    rand_bytes(noise, sizeof noise);
    char b64[520];
    EVP_EncodeBlock((unsigned char *)b64, noise, (int)sizeof noise);
    char app[40];
    snprintf(app, sizeof app, "X%s", c->run);
    return VERDICT(expect(c, "applicationSync",
                          json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "instanceId", kit_instance(c),
                                    "tenantId", c->tenant, "appId", app, "clientId", app,
                                    "clientSecret", b64, "flag", 1),
                          RC_SECRET_UNREADABLE, NULL, d, n));
}
static verdict_t case_unknown_activity(check_t *c, char *d, size_t n)
{
    return VERDICT(
        expect(c, NULL, json_pack("{s:s}", "activity", "noSuchActivity"), RC_INVALID, NULL, d, n));
}

/* ================================================================ the run */

static const struct {
    const char *name;
    case_fn run;
} cases[] = {
    {"purchase yearly (MOCKPERIODYEARNEW)", case_yearly},
    {"purchase one-time (MOCKONETIMENEW)", case_onetime},
    {"purchase pay-per-use (MOCKONDEMAND)", case_ondemand},
    {"purchase package (MOCKONDEMANDPKG)", case_package},
    {"purchase trial (MOCKPERIODDAYTRIAL)", case_trial},
    {"trial to formal (MOCKMONTYTRIALTOFORMAL)", case_trial_to_formal},
    {"renewal (MOCKMONTYRENEW)", case_renewal},
    {"unsubscribe renewal (MOCKMONTYUNSUBSCRIBE)", case_unsubscribe},
    {"change (MOCKMONTYCHANGE)", case_change},
    {"change check", case_change_check},
    {"freeze", case_freeze},
    {"unfreeze", case_unfreeze},
    {"license, and its repeat", case_license},
    {"kit tenantSync", case_tenant},
    {"kit applicationSync", case_application},
    {"kit authSync", case_auth},
    {"kit singleOrgSync", case_org},
    {"kit allOrgSync", case_allorg},
    {"usage (pay-per-use)", case_usage},
    {"refused: bad signature", case_bad_signature},
    {"refused: bad kit signature", case_bad_kit_signature},
    {"refused: stale timestamp", case_stale},
    {"refused: replay", case_replay},
    {"repeated newInstance", case_repeat_new},
    {"release", case_release},
    {"release twice", case_release_twice},
    {"refused: unfreeze after release", case_after_release},
    {"refused: unknown instance", case_unknown_instance},
    {"refused: undecryptable clientSecret", case_bad_secret},
    {"refused: unknown activity", case_unknown_activity},
};
#define N_CASES (sizeof cases / sizeof *cases)

static const char *const verdict_names[] = {"pass", "FAIL", "skip"};

static void check_help(FILE *f)
{
    fprintf(f,
            "usage: kooisvctl [--env-file PATH] market check [options]\n\n"
            "Runs the seller console's debugging cases against a deployment's production URL:\n"
            "a purchase of each debug order through provisioning to appInfo, trial to formal,\n"
            "renewal, unsubscribe, change, change check, freeze, unfreeze, a license, each kit\n"
            "sync, and the refusals (bad signature, stale timestamp, replay, repeated\n"
            "newInstance, release twice, ...). Prints one line per case; exit 0 when none\n"
            "failed, 1 when one did, 2 usage. Ids are fresh per run: it can run again.\n\n"
            "options:\n"
            "  --url URL                      production URL [KOOISV_URL]\n"
            "  --basic-key-file PATH          basic interfaces key [KOOISV_BASIC_KEY or _FILE]\n"
            "  --kit-key-file PATH            kit sync key [KOOISV_KIT_KEY or _FILE]\n"
            "  --ca-file PATH                 CA bundle verifying the server [KOOISV_CA_FILE; "
            "default: the system store]\n"
            "  --rsa-public-key-file PATH     encrypts clientSecret [KOOISV_RSA_PUBLIC_KEY_FILE]\n"
            "  --timeout-ms MS                per call (default 10000)\n"
            "  --wait-s SECONDS               provisioning of each purchase (default 60)\n"
            "  --order-prefix TEXT            the run's own order id is TEXT + run id "
            "(default CS)\n"
            "  --json                         one JSON document instead of the table\n");
}

int marketcheck_main(int argc, char **argv)
{
    const char *url = NULL, *basic = NULL, *kit = NULL, *ca = NULL, *rsa = NULL, *timeout = NULL,
               *wait = NULL, *prefix = "CS";
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char **slot = strcmp(arg, "--url") == 0                   ? &url
                            : strcmp(arg, "--basic-key-file") == 0      ? &basic
                            : strcmp(arg, "--kit-key-file") == 0        ? &kit
                            : strcmp(arg, "--ca-file") == 0             ? &ca
                            : strcmp(arg, "--rsa-public-key-file") == 0 ? &rsa
                            : strcmp(arg, "--timeout-ms") == 0          ? &timeout
                            : strcmp(arg, "--wait-s") == 0              ? &wait
                            : strcmp(arg, "--order-prefix") == 0        ? &prefix
                                                                        : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            check_help(stdout);
            return 0;
        }
        if (strcmp(arg, "--json") == 0) {
            json = true;
            continue;
        }
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, "kooisvctl: market check: %s %s (kooisvctl market check --help)\n", arg,
                    slot ? "needs a value" : "is not an option");
            return MARKET_EXIT_USAGE;
        }
        *slot = argv[++i];
    }
    check_t c = {.order_prefix = prefix, .wait_s = wait ? atoi(wait) : 60};
    if (c.wait_s <= 0) {
        fprintf(stderr, "kooisvctl: market check: --wait-s must be a positive number\n");
        return MARKET_EXIT_USAGE;
    }
    int rc = market_conf_from_flags(&c.conf, url, basic, kit, ca, rsa, timeout);
    if (rc != 0)
        return rc;
    if (!c.conf.basic_key || !c.conf.kit_key) {
        fprintf(stderr, "kooisvctl: market check: needs both keys: KOOISV_BASIC_KEY and "
                        "KOOISV_KIT_KEY (or their _FILE twins, or --basic-key-file and "
                        "--kit-key-file)\n");
        market_conf_free(&c.conf);
        return MARKET_EXIT_USAGE;
    }
    sortid_make(c.run);
    c.tenant = xasprintf("T%s", c.run);
    c.app = xasprintf("A%s", c.run);
    json_t *results = json_array();
    int counts[3] = {0};
    if (!json) {
        printf("kooisvctl market check: %s, run %s\n\n", c.conf.url, c.run);
        printf("%-3s %-44s %-6s %7s  %s\n", "#", "CASE", "RESULT", "MS", "DETAIL");
        fflush(stdout);
    }
    for (size_t i = 0; i < N_CASES; i++) {
        char detail[512] = "";
        int64_t t0 = time_mono_us();
        verdict_t v = cases[i].run(&c, detail, sizeof detail);
        double ms = (double)(time_mono_us() - t0) / 1000.0;
        counts[v]++;
        json_array_append_new(results,
                              json_pack("{s:s, s:s, s:f, s:s}", "case", cases[i].name, "result",
                                        verdict_names[v], "ms", ms, "detail", detail));
        if (!json) {
            printf("%-3zu %-44s %-6s %7.0f  %s\n", i + 1, cases[i].name, verdict_names[v], ms,
                   detail);
            fflush(stdout);
        }
    }
    if (json) {
        json_t *doc = json_pack("{s:s, s:s, s:o, s:i, s:i, s:i}", "url", c.conf.url, "run", c.run,
                                "cases", results, "passed", counts[CASE_PASS], "failed",
                                counts[CASE_FAIL], "skipped", counts[CASE_SKIP]);
        char *text = json_dumps(doc, JSON_INDENT(2));
        printf("%s\n", text);
        free(text);
        json_decref(doc);
    } else {
        json_decref(results);
        printf("\n%d passed, %d failed, %d skipped\n", counts[CASE_PASS], counts[CASE_FAIL],
               counts[CASE_SKIP]);
    }
    free(c.yearly);
    free(c.ondemand);
    free(c.trial);
    free(c.fresh);
    free(c.tenant);
    free(c.app);
    market_conf_free(&c.conf);
    return counts[CASE_FAIL] ? MARKET_EXIT_FAILED : 0;
}
