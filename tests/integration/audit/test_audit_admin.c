/* The audit trail end to end: marketplace calls through the gateways leave exactly one intent and
 * one outcome each (rejected calls too), a nonce replayed on the other gateway is refused, a
 * stopped audit service stops everything (000005, nothing changes) until it is back, the admin
 * API's access control (401/403) with every admin call audited, queries, follow, export,
 * verify reporting a tampered row, and kooisvctl's verbs. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "cryptoutil.h"
#include "kclient.h"
#include "timeutil.h"
#include "xmalloc.h"

/* ---------------------------------------------------------------- helpers */

static char *value(const char *sql, const char *p1)
{
    const char *p[] = {p1};
    return kc_sql_value(sql, p1 ? 1 : 0, p);
}

static long count(const char *sql, const char *p1)
{
    char *v = value(sql, p1);
    long n = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return n;
}

static bool outcome_stored(void *arg)
{
    return count("SELECT count(*) FROM audit.outcomes WHERE request_id = $1", arg) == 1;
}

/* The outcome is delivered after the answer: wait for it. */
static void wait_outcome(const char *rid)
{
    assert_non_null(rid);
    if (!kc_wait(15000, 50, outcome_stored, (void *)rid))
        fail_msg("no outcome recorded for request %s", rid);
}

/* One intent and one outcome for rid, the fields as given ("" = not checked). */
static void expect_record(const char *rid, const char *caller_kind, const char *event,
                          const char *reject_code, const char *result_code, int http_status)
{
    wait_outcome(rid);
    assert_int_equal(count("SELECT count(*) FROM audit.intents WHERE request_id = $1", rid), 1);
    assert_int_equal(count("SELECT count(*) FROM audit.outcomes WHERE request_id = $1", rid), 1);
    char *got = value("SELECT concat_ws('|', i.caller_kind, i.event_type, i.reject_code,"
                      " o.result_code, o.http_status, i.source_addr <> '', o.seq > i.seq,"
                      " abs(i.received_ms - (extract(epoch from now()) * 1000)::bigint) < 600000)"
                      " FROM audit.intents i JOIN audit.outcomes o USING (request_id)"
                      " WHERE request_id = $1",
                      rid);
    char want[256];
    snprintf(want, sizeof want, "%s|%s|%s|%s|%d|t|t|t", caller_kind, event, reject_code,
             result_code, http_status);
    if (!got || strcmp(got, want) != 0)
        fail_msg("request %s recorded as '%s', expected '%s'", rid, got ? got : "(nothing)", want);
    free(got);
}

static char *new_instance_body(const char *order)
{
    return xasprintf("{\"activity\":\"newInstance\",\"orderId\":\"%s\",\"orderLineId\":\"%s-1\","
                     "\"businessId\":\"%s-b\",\"testFlag\":\"1\"}",
                     order, order, order);
}

static char *now_text(void)
{
    return xasprintf("%lld", (long long)time_now_ms());
}

/* ---------------------------------------------------------------- marketplace calls */

static void test_call_recorded(void **state)
{
    (void)state;
    char *order = kc_uid("AUD");
    char *body = new_instance_body(order);
    kresp_t r = {0};
    assert_int_equal(kc_basic(body, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.code, "000000");
    expect_record(r.request_id, "basic", "newInstance", "", "000000", 200);
    /* The caller is the key id, the order is a resource, the nonce is kept; no key. */
    char key_id[65];
    uint8_t h[32];
    const char *key = suite_get("KOOISV_BASIC_KEY");
    sha256(key, strlen(key), h);
    hex_encode(h, 4, key_id);
    char *caller = value("SELECT caller_id FROM audit.intents WHERE request_id = $1", r.request_id);
    assert_string_equal(caller, key_id);
    free(caller);
    const char *p2[] = {r.request_id, order};
    char *hit = kc_sql_value("SELECT 1 FROM audit.intents WHERE request_id = $1"
                             " AND resources @> jsonb_build_array(jsonb_build_object('id', $2::text))"
                             " AND nonce <> '' AND test_flag",
                             2, p2);
    assert_non_null(hit);
    free(hit);
    const char *pk[] = {key};
    assert_int_equal(kc_sql_count("SELECT 1 FROM audit.intents i WHERE strpos(i::text, $1) > 0",
                                  1, pk),
                     0);
    kresp_free(&r);

    /* A kit call: caller kind kit, event named after the sync interface. */
    char *tenant = kc_uid("T");
    char *kit = xasprintf("{\"instanceId\":\"\",\"orderId\":\"\",\"tenantId\":\"%s\","
                          "\"tenantCode\":\"c\",\"name\":\"n\",\"domainName\":\"d.example\","
                          "\"flag\":1,\"testFlag\":1,\"timeStamp\":\"20261128100000000\"}",
                          tenant);
    assert_int_equal(kc_kit("tenantSync", kit, &r), 0);
    assert_int_equal(r.status, 200);
    expect_record(r.request_id, "kit", "tenantSync", "", r.code, 200);
    kresp_free(&r);
    free(kit);
    free(tenant);
    free(body);
    free(order);
}

static void test_rejected_recorded(void **state)
{
    (void)state;
    char *order = kc_uid("REJ");
    char *body = new_instance_body(order);
    char *ts = now_text();
    char *nonce = kc_uid("n");
    kresp_t r = {0};
    /* Wrong signature. */
    assert_int_equal(kc_basic_ex(body, ts, nonce, "00ff", &r), 0);
    assert_string_equal(r.code, "000001");
    expect_record(r.request_id, "basic", "newInstance", "000001", "000001", 200);
    char *reason = value("SELECT reject_reason FROM audit.intents WHERE request_id = $1",
                         r.request_id);
    assert_true(reason && *reason);
    free(reason);
    kresp_free(&r);
    /* ...and it did not burn the nonce: the genuine request with it goes through. */
    assert_int_equal(kc_basic_ex(body, ts, nonce, NULL, &r), 0);
    assert_string_equal(r.code, "000000");
    kresp_free(&r);
    /* Stale timestamp. */
    char *old = xasprintf("%lld", (long long)(time_now_ms() - 10 * 60 * 1000));
    char *nonce2 = kc_uid("n");
    assert_int_equal(kc_basic_ex(body, old, nonce2, NULL, &r), 0);
    assert_string_equal(r.code, "000002");
    expect_record(r.request_id, "basic", "newInstance", "000002", "000002", 200);
    kresp_free(&r);
    /* Invalid body (mandatory field missing). */
    assert_int_equal(kc_basic("{\"activity\":\"newInstance\",\"orderId\":\"x\"}", &r), 0);
    assert_string_equal(r.code, "000002");
    expect_record(r.request_id, "basic", "newInstance", "000002", "000002", 200);
    kresp_free(&r);
    free(old);
    free(nonce2);
    free(ts);
    free(nonce);
    free(body);
    free(order);
}

static void test_replay_across_gateways(void **state)
{
    (void)state;
    if (!suite_get("KOOISV_GATEWAY2_URL"))
        skip();
    char *order = kc_uid("RPL");
    char *body = new_instance_body(order);
    char *ts = now_text();
    char *nonce = kc_uid("n");
    kresp_t r1 = {0}, r2 = {0};
    kc_use_gateway(1);
    assert_int_equal(kc_basic_ex(body, ts, nonce, NULL, &r1), 0);
    assert_string_equal(r1.code, "000000");
    kc_use_gateway(2);
    assert_int_equal(kc_basic_ex(body, ts, nonce, NULL, &r2), 0);
    kc_use_gateway(1);
    assert_string_equal(r2.code, "000001");
    assert_true(r2.body_sign_ok);
    /* The refused replay is itself on the record. */
    wait_outcome(r2.request_id);
    char *reason = value("SELECT reject_reason || '/' || reject_code FROM audit.intents"
                         " WHERE request_id = $1",
                         r2.request_id);
    assert_string_equal(reason, "replayed nonce/000001");
    free(reason);
    kresp_free(&r1);
    kresp_free(&r2);
    free(ts);
    free(nonce);
    free(body);
    free(order);
}

static bool audit_stopped; /* by test_audit_down, until it starts it again */

static bool intent_stored(void *arg)
{
    return count("SELECT count(*) FROM audit.intents WHERE request_id = $1", arg) == 1;
}

static void test_audit_down(void **state)
{
    (void)state;
    audit_stopped = true;
    assert_int_equal(kc_suite("stop-svc", "audit"), 0);
    char *order = kc_uid("DOWN");
    char *body = new_instance_body(order);
    kresp_t r = {0};
    int64_t t0 = time_mono_us();
    assert_int_equal(kc_basic(body, &r), 0);
    int64_t took_ms = (time_mono_us() - t0) / 1000;
    assert_string_equal(r.code, "000005");
    assert_true(took_ms < 4000);
    char *rid = xstrdup(r.request_id ? r.request_id : "");
    kresp_free(&r);
    assert_int_equal(count("SELECT count(*) FROM orders.instances WHERE order_id = $1", order), 0);
    /* Admin calls fail closed too. */
    assert_int_equal(kc_admin("GET", "/v1/instances", suite_get("KOOISV_OPERATOR_TOKEN"), NULL,
                              &r),
                     0);
    assert_int_equal(r.status, 503);
    kresp_free(&r);

    assert_int_equal(kc_suite("start-svc", "audit"), 0);
    audit_stopped = false;
    /* The gateways reconnect within a second (ZeroMQ reconnect interval): retry as the
     * marketplace would. */
    bool done = false;
    for (int i = 0; i < 40 && !done; i++) {
        assert_int_equal(kc_basic(body, &r), 0);
        done = strcmp(r.code, "000000") == 0;
        if (!done)
            assert_string_equal(r.code, "000005");
        kresp_free(&r);
        if (!done)
            usleep(250 * 1000);
    }
    assert_true(done);
    assert_int_equal(count("SELECT count(*) FROM orders.instances WHERE order_id = $1", order), 1);
    /* The refused attempt reaches the trail once audit is back, as a rejection. */
    if (!kc_wait(30000, 200, intent_stored, rid))
        fail_msg("the attempt made while audit was down never reached the trail");
    char *code = value("SELECT reject_code FROM audit.intents WHERE request_id = $1", rid);
    assert_string_equal(code, "000005");
    free(code);
    free(rid);
    free(body);
    free(order);
}

/* ---------------------------------------------------------------- admin API */

static int admin_status(const char *method, const char *path, const char *token, char **rid)
{
    kresp_t r = {0};
    assert_int_equal(kc_admin(method, path, token, NULL, &r), 0);
    int status = r.status;
    if (status >= 400) {
        assert_non_null(r.json);
        assert_non_null(json_object_get(r.json, "error"));
    }
    if (rid)
        *rid = xstrdup(r.request_id ? r.request_id : "");
    kresp_free(&r);
    return status;
}

static void test_access_control(void **state)
{
    (void)state;
    const char *admin = suite_get("KOOISV_OPERATOR_TOKEN");
    const char *operator= suite_get("KOOISV_OPERATOR_ROLE_TOKEN");
    const char *auditor = suite_get("KOOISV_AUDITOR_TOKEN");
    char *rid = NULL;
    /* No token, a wrong token, a malformed header: 401, recorded. */
    assert_int_equal(admin_status("GET", "/v1/audit", NULL, &rid), 401);
    expect_record(rid, "operator", "admin.audit.query", "000001", "000001", 401);
    free(rid);
    assert_int_equal(admin_status("GET", "/v1/audit", "not-a-token", &rid), 401);
    expect_record(rid, "operator", "admin.audit.query", "000001", "000001", 401);
    free(rid);
    kresp_t r = {0};
    const char *basic_auth[] = {"Authorization: Basic YWRtaW46YWRtaW4=", NULL};
    char *url = xasprintf("%s/v1/audit", suite_get("KOOISV_ADMIN_URL"));
    assert_int_equal(kc_raw("GET", url, basic_auth, NULL, 0, &r), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(kresp_header(&r, "WWW-Authenticate"));
    kresp_free(&r);
    free(url);
    /* Roles: auditor < operator < admin. */
    assert_int_equal(admin_status("GET", "/v1/instances", auditor, &rid), 403);
    expect_record(rid, "operator", "admin.instance.list", "000001", "000001", 403);
    char *who = value("SELECT caller_id FROM audit.intents WHERE request_id = $1", rid);
    assert_string_equal(who, "auditor");
    free(who);
    free(rid);
    assert_int_equal(admin_status("GET", "/v1/apps/a1/secret?instance=i&tenant=t", operator,
                                  NULL),
                     403);
    assert_int_equal(admin_status("GET", "/v1/audit?limit=1", auditor, &rid), 200);
    expect_record(rid, "operator", "admin.audit.query", "", "000000", 200);
    free(rid);
    assert_int_equal(admin_status("GET", "/v1/instances?limit=1", operator, &rid), 200);
    expect_record(rid, "operator", "admin.instance.list", "", "000000", 200);
    free(rid);
    assert_int_equal(admin_status("GET", "/v1/jobs/failed", admin, NULL), 200);
    /* Routes, methods and parameters. */
    assert_int_equal(admin_status("GET", "/v1/nothing", admin, &rid), 404);
    expect_record(rid, "operator", "admin.unknown", "000002", "000002", 404);
    free(rid);
    assert_int_equal(admin_status("DELETE", "/v1/audit", admin, NULL), 405);
    assert_int_equal(admin_status("GET", "/v1/audit?limit=5000", admin, NULL), 400);
    assert_int_equal(admin_status("GET", "/v1/audit?from=yesterday", admin, NULL), 400);
    assert_int_equal(admin_status("GET", "/v1/audit?bogus=1", admin, NULL), 400);
    assert_int_equal(admin_status("GET", "/v1/instances/nope-404", admin, NULL), 404);
}

static void test_admin_queries(void **state)
{
    (void)state;
    const char *tok = suite_get("KOOISV_AUDITOR_TOKEN");
    char *order = kc_uid("QRY");
    char *body = new_instance_body(order);
    kresp_t call = {0}, r = {0};
    assert_int_equal(kc_basic(body, &call), 0);
    wait_outcome(call.request_id);

    char *path = xasprintf("/v1/audit?request_id=%s", call.request_id);
    assert_int_equal(kc_admin("GET", path, tok, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *entries = json_object_get(r.json, "entries");
    assert_int_equal(json_array_size(entries), 1);
    json_t *e = json_array_get(entries, 0);
    assert_string_equal(json_string_value(json_object_get(e, "event")), "newInstance");
    assert_true(json_is_true(json_object_get(e, "has_outcome")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(e, "outcome"), "result_code")),
        call.code);
    json_int_t seq = json_integer_value(json_object_get(e, "seq"));
    kresp_free(&r);
    free(path);

    /* By resource, time range (ISO and epoch ms), CSV. */
    char *from = xasprintf("%lld", (long long)(time_now_ms() - 60000));
    path = xasprintf("/v1/audit?resource=%s&from=%s&to=2100-01-01T00:00:00Z&format=csv", order,
                     from);
    assert_int_equal(kc_admin("GET", path, tok, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "seq,time,request_id"));
    assert_non_null(strstr(r.body, call.request_id));
    kresp_free(&r);
    free(path);

    /* Follow from before the call: it comes back, the follower's own polls do not. */
    path = xasprintf("/v1/audit/follow?after=%lld&wait=0&limit=1000", (long long)(seq - 1));
    assert_int_equal(kc_admin("GET", path, tok, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    /* Entries come in the order they last changed, so another request's outcome appended
     * between the call's intent and its outcome comes first: look for the call among them. */
    json_t *followed = json_object_get(r.json, "entries");
    int found = 0;
    json_int_t prev_last = 0;
    for (size_t k = 0; k < json_array_size(followed); k++) {
        json_t *f = json_array_get(followed, k);
        json_int_t last = json_integer_value(json_object_get(f, "last_seq"));
        assert_true(last >= seq);
        assert_true(last > prev_last);
        prev_last = last;
        if (strcmp(json_string_value(json_object_get(f, "request_id")), call.request_id) == 0) {
            found = 1;
        }
    }
    assert_true(found);
    json_int_t next = json_integer_value(json_object_get(r.json, "next_after"));
    kresp_free(&r);
    free(path);
    path = xasprintf("/v1/audit/follow?after=%lld&wait=1&event=admin.audit.follow",
                     (long long)next);
    assert_int_equal(kc_admin("GET", path, tok, NULL, &r), 0);
    assert_int_equal(json_array_size(json_object_get(r.json, "entries")), 0);
    kresp_free(&r);
    free(path);

    /* Export: an attachment, streamed in chunks (never rendered whole in memory). */
    path = xasprintf("/v1/audit/export?from=%s&to=2100-01-01", from);
    assert_int_equal(kc_admin("GET", path, tok, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    const char *disp = kresp_header(&r, "Content-Disposition");
    assert_non_null(disp);
    assert_non_null(strstr(disp, "attachment"));
    const char *te = kresp_header(&r, "Transfer-Encoding");
    assert_non_null(te);
    assert_string_equal(te, "chunked");
    assert_null(kresp_header(&r, "Content-Length"));
    assert_non_null(strstr(r.body, call.request_id));
    kresp_free(&r);
    free(path);
    path = xasprintf("/v1/audit/export?from=%s&to=2100-01-01&format=json", from);
    assert_int_equal(kc_admin("GET", path, tok, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_array(r.json)); /* the pages make one whole document */
    kresp_free(&r);
    free(path);
    free(from);
    kresp_free(&call);
    free(body);
    free(order);
}

typedef struct {
    const char *token;
    int status;
} follow_t;

static void *follow_thread(void *arg)
{
    follow_t *f = arg;
    kresp_t r;
    kc_admin("GET", "/v1/audit/follow?wait=4&event=no.such.event", f->token, NULL, &r);
    f->status = r.status;
    kresp_free(&r);
    return NULL;
}

/* The lowest role cannot tie up the admin API: a token runs at most 4 calls at once (a follow
 * holds one while it waits), and the fifth is refused at once with 429. */
static void test_admin_call_caps(void **state)
{
    const char *tok = suite_get("KOOISV_AUDITOR_TOKEN");
    follow_t f[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        f[i] = (follow_t){tok, 0};
        pthread_create(&t[i], NULL, follow_thread, &f[i]);
    }
    /* Once the four are waiting, the fifth is refused. They are admitted within a moment (a
     * TLS handshake each); until then a fifth call may still be let in, so it is asked again,
     * for at most 3 s of the follows' 4. */
    usleep(300 * 1000);
    kresp_t r = {0};
    int64_t ms = 0;
    for (int tries = 0; tries < 27; tries++) {
        if (tries) {
            kresp_free(&r);
            usleep(100 * 1000);
        }
        int64_t t0 = time_mono_us();
        assert_int_equal(kc_admin("GET", "/v1/audit?limit=1", tok, NULL, &r), 0);
        ms = (time_mono_us() - t0) / 1000;
        if (r.status != 200)
            break;
    }
    assert_int_equal(r.status, 429);
    assert_non_null(kresp_header(&r, "Retry-After"));
    assert_true(ms < 1000);
    kresp_free(&r);
    /* Another token is not held up by this one. */
    assert_int_equal(kc_admin("GET", "/v1/audit?limit=1", suite_get("KOOISV_OPERATOR_TOKEN"),
                              NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    kresp_free(&r);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(f[i].status, 200);
    }
    /* Once they ended, the token may call again. */
    assert_int_equal(kc_admin("GET", "/v1/audit?limit=1", tok, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    kresp_free(&r);
}

/* ---------------------------------------------------------------- kooisvctl */

#define CTL(out, ...) kc_ctl(out, NULL, (const char *const[]){__VA_ARGS__, NULL})

static void test_kooisvctl(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(CTL(&out, "--help"), 0);
    assert_non_null(strstr(out, "audit query"));
    free(out);
    const char *helps[][2] = {{"audit", "query"},   {"audit", "tail"},     {"audit", "verify"},
                              {"audit", "export"},  {"instance", "get"},   {"instance", "list"},
                              {"jobs", "failed"},   {"jobs", "redrive"},   {"tenant", "orgs"},
                              {"tenant", "users"}};
    for (size_t i = 0; i < sizeof helps / sizeof *helps; i++) {
        assert_int_equal(CTL(&out, helps[i][0], helps[i][1], "--help"), 0);
        assert_non_null(strstr(out, "usage: kooisvctl"));
        free(out);
    }
    assert_int_equal(CTL(NULL, "audit", "nonsense"), 2);
    assert_int_equal(CTL(NULL, "instance", "get"), 2);

    assert_int_equal(CTL(&out, "audit", "query", "--limit", "5", "--event", "admin.*"), 0);
    assert_non_null(strstr(out, "admin."));
    free(out);
    assert_int_equal(CTL(&out, "audit", "query", "--limit", "2", "--csv"), 0);
    assert_non_null(strstr(out, "seq,time,request_id"));
    free(out);
    assert_int_equal(CTL(&out, "audit", "query", "--from", "2000-01-01T00:00:00+08:00", "--to",
                         "4102444800000", "--limit", "1"),
                     0);
    free(out);
    assert_int_equal(CTL(NULL, "audit", "query", "--from", "not-a-time"), 1);
    assert_int_equal(CTL(&out, "audit", "tail"), 0);
    assert_non_null(strstr(out, "SEQ"));
    free(out);
    assert_int_equal(CTL(&out, "audit", "verify"), 0);
    assert_non_null(strstr(out, "OK:"));
    free(out);
    char *file = xasprintf("/tmp/kooisvctl-export-%d.csv", (int)getpid());
    assert_int_equal(CTL(NULL, "audit", "export", "--from", "2000-01-01", "--to", "2100-01-01",
                         "-o", file),
                     0);
    char *text = config_read_file(file, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "seq,time,request_id"));
    free(text);
    unlink(file);
    free(file);
    assert_int_equal(CTL(NULL, "audit", "export", "--from", "2000-01-01"), 2);
    assert_int_equal(CTL(&out, "instance", "list"), 0);
    assert_non_null(strstr(out, "instances"));
    free(out);
    assert_int_equal(CTL(NULL, "instance", "get", "no-such-instance"), 1);
    assert_int_equal(CTL(&out, "jobs", "failed"), 0);
    free(out);
    int rc = CTL(&out, "tenant", "orgs", "no-such-tenant", "--instance", "");
    assert_true(rc == 0 || rc == 1);
    free(out);
    rc = CTL(&out, "tenant", "users", "no-such-tenant");
    assert_true(rc == 0 || rc == 1);
    free(out);
}

/* ---------------------------------------------------------------- tampering seen by operators */

/* The entry test_verify_reports_tampering forged (seq, as text) and its true source address, until
 * it put the address back; empty when nothing is forged. */
static char forged_seq[24], forged_orig[128];

static void test_verify_reports_tampering(void **state)
{
    (void)state;
    const char *tok = suite_get("KOOISV_AUDITOR_TOKEN");
    kresp_t r = {0};
    assert_int_equal(kc_admin("POST", "/v1/audit/verify", tok, "{}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "ok")));
    assert_true(json_is_true(json_object_get(r.json, "complete")));
    kresp_free(&r);

    char *seq = value("SELECT max(seq)::text FROM audit.intents WHERE caller_kind = 'basic'", NULL);
    assert_non_null(seq);
    const char *p[] = {seq};
    assert_true(kc_sql_exec("ALTER TABLE audit.intents DISABLE TRIGGER intents_append_only", 0,
                            NULL) >= 0);
    char *orig = value("SELECT source_addr FROM audit.intents WHERE seq = $1::bigint", seq);
    assert_non_null(orig);
    snprintf(forged_seq, sizeof forged_seq, "%s", seq);
    snprintf(forged_orig, sizeof forged_orig, "%s", orig);
    assert_int_equal(kc_sql_exec("UPDATE audit.intents SET source_addr = '203.0.113.66'"
                                 " WHERE seq = $1::bigint",
                                 1, p),
                     1);
    assert_int_equal(kc_admin("POST", "/v1/audit/verify", tok, "{}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_false(json_is_true(json_object_get(r.json, "ok")));
    assert_string_equal(json_string_value(json_object_get(r.json, "problem")), "modified");
    assert_int_equal(json_integer_value(json_object_get(r.json, "first_bad_seq")),
                     strtoll(seq, NULL, 10));
    kresp_free(&r);
    char *out = NULL;
    assert_int_equal(CTL(&out, "audit", "verify"), 1);
    assert_non_null(strstr(out, "BROKEN at seq"));
    free(out);

    const char *pr[] = {orig, seq};
    assert_int_equal(kc_sql_exec("UPDATE audit.intents SET source_addr = $1 WHERE seq = $2::bigint",
                                 2, pr),
                     1);
    forged_seq[0] = '\0';
    assert_true(kc_sql_exec("ALTER TABLE audit.intents ENABLE TRIGGER intents_append_only", 0,
                            NULL) >= 0);
    assert_int_equal(CTL(NULL, "audit", "verify"), 0);
    free(orig);
    free(seq);
}

/* kooisvctl audit verify --head/--head-file: the audit service's head file verifies; a kept
 * head the trail no longer has (truncated) or no longer matches (rewritten) is reported. */
static void test_verify_kept_head(void **state)
{
    (void)state;
    const char *head_file = suite_get("KOOISV_AUDIT_HEAD_PATH");
    assert_non_null(head_file);
    char *out = NULL;
    assert_int_equal(CTL(&out, "audit", "verify", "--head-file", head_file), 0);
    assert_non_null(strstr(out, "OK:"));
    free(out);
    char *text = config_read_file(head_file, NULL);
    assert_non_null(text);
    text[strcspn(text, "\n")] = '\0';
    char *colon = strchr(text, ':');
    assert_non_null(colon);
    char *beyond = xasprintf("%lld%s", strtoll(text, NULL, 10) + 1000000, colon);
    assert_int_equal(CTL(&out, "audit", "verify", "--head", beyond), 1);
    assert_non_null(strstr(out, "removed"));
    free(out);
    char *other = xstrdup(text);
    char *h = strchr(other, ':') + 1;
    h[0] = h[0] == 'a' ? 'b' : 'a';
    assert_int_equal(CTL(&out, "audit", "verify", "--head", other), 1);
    assert_non_null(strstr(out, "modified"));
    free(out);
    assert_int_equal(CTL(NULL, "audit", "verify", "--head", "12:nothex"), 1);
    assert_int_equal(CTL(NULL, "audit", "verify", "--head", text, "--head-file", head_file), 2);
    assert_int_equal(CTL(NULL, "audit", "verify", "--head-file", "/nonexistent/head"), 2);
    free(other);
    free(beyond);
    free(text);
}

/* Teardown of test_verify_reports_tampering: when it failed halfway, the forged address goes
 * back so that no later test or program meets a broken chain; the trigger on again. */
static int untamper(void **state)
{
    (void)state;
    if (forged_seq[0]) {
        const char *pr[] = {forged_orig, forged_seq};
        kc_sql_exec("ALTER TABLE audit.intents DISABLE TRIGGER intents_append_only", 0, NULL);
        kc_sql_exec("UPDATE audit.intents SET source_addr = $1 WHERE seq = $2::bigint", 2, pr);
        forged_seq[0] = '\0';
    }
    kc_sql_exec("ALTER TABLE audit.intents ENABLE TRIGGER intents_append_only", 0, NULL);
    return 0;
}

static int teardown(void **state)
{
    untamper(state);
    /* A failed test must not leave the audit service down for the tests after it. */
    if (audit_stopped)
        kc_suite("start-svc", "audit");
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_recorded),
        cmocka_unit_test(test_rejected_recorded),
        cmocka_unit_test(test_replay_across_gateways),
        cmocka_unit_test(test_access_control),
        cmocka_unit_test(test_admin_queries),
        cmocka_unit_test(test_admin_call_caps),
        cmocka_unit_test(test_kooisvctl),
        cmocka_unit_test_teardown(test_verify_reports_tampering, untamper),
        cmocka_unit_test(test_verify_kept_head),
        cmocka_unit_test(test_audit_down),
    };
    return KC_SUITE_MAIN(tests, NULL, teardown);
}
