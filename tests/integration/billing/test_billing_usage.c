/* Usage intake through the gateway's admin API (POST /v1/usage) into billing.usage_records:
 * role meter (and admin) only, and a meter token nothing else; up to 1000 records a call; each
 * bad record (unknown, released or non-pay-per-use instance, one whose charging mode is not known
 * yet, bad quantity, future or old time,
 * interval across its hour, missing ids) refuses the whole call naming the record, and nothing
 * of it is stored; a repeated recordId is counted once, also under 20 concurrent identical
 * calls; one audit entry per call with the record count; kooisvctl usage add. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "billing_support.h"
#include "timeutil.h"
#include "xmalloc.h"

static char *ondemand, *period, *released, *testinst;

static int group_setup(void **state)
{
    (void)state;
    ondemand = bt_instance("ON_DEMAND", NULL, NULL, NULL);
    period = bt_instance("PERIOD", "10", NULL, NULL);
    released = bt_instance("ON_DEMAND", NULL, NULL, NULL);
    testinst = bt_instance("ON_DEMAND", NULL, "1", NULL);
    bt_release(released, NULL, NULL);
    bt_wait_consumed(ondemand);
    bt_wait_consumed(period);
    bt_wait_consumed(released);
    bt_wait_consumed(testinst);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(ondemand);
    free(period);
    free(released);
    free(testinst);
    return 0;
}

/* An ISO-8601 UTC time offset_s from now. */
static char *iso_at(long offset_s)
{
    char *buf = xmalloc(32);
    time_format_iso(time_now_ms() + offset_s * 1000LL, buf, 32);
    return buf;
}

/* POST /v1/usage with token; r holds the answer. */
static void post(const char *token, const char *body, kresp_t *r)
{
    assert_int_equal(kc_admin("POST", "/v1/usage", token, body, r), 0);
}

static const char *meter(void)
{
    return suite_get("KOOISV_METER_TOKEN");
}

/* One record's JSON: instance, recordId, quantity (raw JSON), usedAt offset. */
static char *rec(const char *inst, const char *id, const char *quantity, long at_s)
{
    char *at = iso_at(at_s);
    char *s = xasprintf("{\"instanceId\":\"%s\",\"recordId\":\"%s\",\"quantity\":%s,"
                        "\"usedAt\":\"%s\"}",
                        inst, id, quantity, at);
    free(at);
    return s;
}

/* A call's body of n records of the pay-per-use instance, recordIds prefix-0 .. prefix-(n-1),
 * each of quantity used at at (caller frees). */
static char *records_body(const char *prefix, int n, const char *quantity, const char *at)
{
    size_t cap = 32 + (size_t)n *
                          (96 + strlen(ondemand) + strlen(prefix) + strlen(quantity) + strlen(at)),
           len = 0;
    char *body = xmalloc(cap);
    len += (size_t)snprintf(body, cap, "{\"records\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"instanceId\":\"%s\",\"recordId\":\"%s-%d\","
                                "\"quantity\":\"%s\",\"usedAt\":\"%s\"}",
                                i ? "," : "", ondemand, prefix, i, quantity, at);
    snprintf(body + len, cap - len, "]}");
    return body;
}

static long stored_with_prefix(const char *prefix)
{
    char *like = xasprintf("%s%%", prefix);
    const char *p[] = {like};
    long n =
        kc_sql_count("SELECT 1 FROM billing.usage_records WHERE client_record_id LIKE $1", 1, p);
    free(like);
    return n;
}

/* Accepted, stored once, in the hour it was used; a retry stores nothing more; the call is one
 * audit entry with its record count. */
static void test_intake(void **state)
{
    (void)state;
    char *p = kc_uid("ok"), *id1 = xasprintf("%s-1", p), *id2 = xasprintf("%s-2", p),
         *id3 = xasprintf("%s-3", p);
    char *r1 = rec(ondemand, id1, "\"1.5\"", -10);
    char *b = iso_at(-7200), *e = iso_at(-7200);
    char *r2 = xasprintf("{\"instanceId\":\"%s\",\"recordId\":\"%s\",\"quantity\":\"0.0001\","
                         "\"begin\":\"%s\",\"end\":\"%s\"}",
                         ondemand, id2, b, e);
    char *r3 = rec(ondemand, id3, "\"1234567890123456.1234\"", -60);
    char *body = xasprintf("{\"records\":[%s,%s,%s]}", r1, r2, r3);
    kresp_t r;
    post(meter(), body, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "stored")), 3);
    assert_int_equal(json_integer_value(json_object_get(r.json, "repeated")), 0);
    char *rid = xstrdup(kresp_header(&r, "X-Request-Id"));
    kresp_free(&r);
    assert_int_equal(stored_with_prefix(p), 3);
    char *q =
        ot_sql("SELECT quantity::text || ' ' || (bucket_start = date_trunc('hour', used_begin))"
               "::text || ' ' || request_id FROM billing.usage_records"
               " WHERE client_record_id = $1",
               id1, NULL);
    char *want = xasprintf("1.5000 true %s", rid);
    assert_string_equal(q, want);
    free(q);
    free(want);

    /* The same call again (a retry): nothing more. */
    post(meter(), body, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "stored")), 0);
    assert_int_equal(json_integer_value(json_object_get(r.json, "repeated")), 3);
    kresp_free(&r);
    assert_int_equal(stored_with_prefix(p), 3);

    /* One audit entry for the call, naming the record count. */
    char *path = xasprintf("/v1/audit?request_id=%s", rid);
    assert_int_equal(kc_admin("GET", path, suite_get("KOOISV_AUDITOR_TOKEN"), NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *entries = json_object_get(r.json, "entries");
    assert_int_equal(json_array_size(entries), 1);
    json_t *ent = json_array_get(entries, 0);
    assert_string_equal(json_string_value(json_object_get(ent, "event")), "admin.usage.add");
    json_t *res = json_array_get(json_object_get(ent, "resources"), 0);
    assert_string_equal(json_string_value(json_object_get(res, "kind")), "records");
    assert_string_equal(json_string_value(json_object_get(res, "id")), "3");
    kresp_free(&r);
    free(path);
    free(rid);
    free(p);
    free(id1);
    free(id2);
    free(id3);
    free(r1);
    free(r2);
    free(r3);
    free(b);
    free(e);
    free(body);
}

/* Each bad record refuses the call: HTTP 400 naming record 2 and its recordId; the good first
 * record is not stored either. */
static void test_bad_records(void **state)
{
    (void)state;
    char *future = iso_at(3600), *old = iso_at(-22 * 86400);
    /* an interval from 10 minutes before an hour to 10 minutes after it */
    int64_t hour = (time_now_ms() / 3600000 - 2) * 3600000;
    char cb[32], ce[32];
    time_format_iso(hour - 600000, cb, sizeof cb);
    time_format_iso(hour + 600000, ce, sizeof ce);
    const char *fields[][2] = {
        {"unknown instance", "\"instanceId\":\"no-such-instance\",\"quantity\":\"1\""},
        {"instance released", "\"instanceId\":\"@released\",\"quantity\":\"1\""},
        {"not pay-per-use", "\"instanceId\":\"@period\",\"quantity\":\"1\""},
        {"quantity", "\"instanceId\":\"@ok\",\"quantity\":\"-1\""},
        {"quantity", "\"instanceId\":\"@ok\",\"quantity\":\"0\""},
        {"quantity", "\"instanceId\":\"@ok\",\"quantity\":\"0.0000\""},
        {"quantity", "\"instanceId\":\"@ok\",\"quantity\":\"1.23456\""},
        {"quantity", "\"instanceId\":\"@ok\",\"quantity\":\"1e3\""},
        {"quantity", "\"instanceId\":\"@ok\",\"quantity\":\"abc\""},
        {"quantity", "\"instanceId\":\"@ok\",\"quantity\":1.5"},
        {"quantity", "\"instanceId\":\"@ok\""},
        {"instanceId", "\"quantity\":\"1\""},
    };
    size_t n = sizeof fields / sizeof fields[0];
    for (size_t i = 0; i < n + 5; i++) {
        char *p = kc_uid("bad"), *id1 = xasprintf("%s-1", p), *id2 = xasprintf("%s-2", p);
        char *good = rec(ondemand, id1, "\"2\"", -5);
        char *bad, *now = iso_at(-5);
        const char *want;
        if (i < n) {
            char *f = xstrdup(fields[i][1]);
            const char *repl = strstr(f, "@released") ? released
                               : strstr(f, "@period") ? period
                                                      : ondemand;
            char *at = strchr(f, '@');
            if (at) {
                char *end = strchr(at, '"');
                *at = '\0';
                char *nf = xasprintf("%s%s%s", f, repl, end);
                free(f);
                f = nf;
            }
            bad = xasprintf("{%s,\"recordId\":\"%s\",\"usedAt\":\"%s\"}", f, id2, now);
            want = fields[i][0];
            free(f);
        } else if (i == n) {
            bad = xasprintf("{\"instanceId\":\"%s\",\"recordId\":\"%s\",\"quantity\":\"1\","
                            "\"usedAt\":\"%s\"}",
                            ondemand, id2, future);
            want = "future";
        } else if (i == n + 1) {
            bad = xasprintf("{\"instanceId\":\"%s\",\"recordId\":\"%s\",\"quantity\":\"1\","
                            "\"usedAt\":\"%s\"}",
                            ondemand, id2, old);
            want = "older than 21 days";
        } else if (i == n + 2) {
            bad = xasprintf("{\"instanceId\":\"%s\",\"recordId\":\"%s\",\"quantity\":\"1\","
                            "\"begin\":\"%s\",\"end\":\"%s\"}",
                            ondemand, id2, cb, ce);
            want = "crosses the hour";
        } else if (i == n + 3) {
            bad = xasprintf("{\"instanceId\":\"%s\",\"recordId\":\"%s\",\"quantity\":\"1\","
                            "\"begin\":\"%s\",\"end\":\"%s\"}",
                            ondemand, id2, ce, cb);
            want = "end is before begin";
        } else {
            bad = xasprintf("{\"instanceId\":\"%s\",\"recordId\":\"%s\",\"quantity\":\"1\","
                            "\"usedAt\":\"yesterday\"}",
                            ondemand, id2);
            want = "usedAt";
        }
        char *body = xasprintf("{\"records\":[%s,%s]}", good, bad);
        kresp_t r;
        post(meter(), body, &r);
        assert_int_equal(r.status, 400);
        const char *msg = json_string_value(json_object_get(r.json, "error"));
        assert_non_null(msg);
        if (!strstr(msg, "record 2") || !strstr(msg, want))
            fail_msg("case %zu: %s", i, msg);
        if (i + 1 != n) /* the last fields case has no instanceId, its recordId is named */
            assert_non_null(strstr(msg, id2));
        kresp_free(&r);
        assert_int_equal(stored_with_prefix(p), 0);
        free(p);
        free(id1);
        free(id2);
        free(good);
        free(bad);
        free(now);
        free(body);
    }
    free(future);
    free(old);
}

/* An instance billing knows from its purchase but whose provisioning has not come (Query Order
 * keeps failing) has no charging mode yet: its record is refused as "not known yet", a refusal
 * to retry, never as "not pay-per-use", and nothing is stored. */
static void test_mode_not_known_yet(void **state)
{
    (void)state;
    char *inst = ot_new_with_fault("\"mode\":\"error\",\"count\":-1,\"code\":\"MKT.0999\"");
    bt_wait_consumed(inst);
    const char *p[] = {inst};
    assert_int_equal(kc_sql_count("SELECT 1 FROM billing.instances WHERE instance_id = $1"
                                  " AND charging_mode IS NULL",
                                  1, p),
                     1);
    char *id = kc_uid("early");
    char *one = rec(inst, id, "\"1\"", -5);
    char *body = xasprintf("{\"records\":[%s]}", one);
    free(one);
    kresp_t r;
    post(meter(), body, &r);
    assert_int_equal(r.status, 400);
    const char *msg = json_string_value(json_object_get(r.json, "error"));
    if (!msg || !strstr(msg, "charging mode not known yet") || strstr(msg, "not pay-per-use"))
        fail_msg("an instance still provisioning: %s", msg ? msg : r.body);
    kresp_free(&r);
    assert_int_equal(stored_with_prefix(id), 0);
    ot_clear_faults();
    free(body);
    free(id);
    free(inst);
}

/* Limits of one call: 1000 records pass, 1001 and 0 and a body that is no records list do not. */
static void test_limits(void **state)
{
    (void)state;
    char *p = kc_uid("lim");
    char *at = iso_at(-30);
    char *body = records_body(p, 1001, "0.5", at);
    kresp_t r;
    post(meter(), body, &r);
    assert_int_equal(r.status, 400);
    kresp_free(&r);
    assert_int_equal(stored_with_prefix(p), 0);
    /* cut to 1000: the last record's separator becomes the end of the list */
    char *last = NULL;
    for (char *s = strstr(body, ",{"); s; s = strstr(s + 1, ",{"))
        last = s;
    strcpy(last, "]}");
    post(meter(), body, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "stored")), 1000);
    kresp_free(&r);
    assert_int_equal(stored_with_prefix(p), 1000);
    const char *bad[] = {"{\"records\":[]}", "{}", "[1]", "not json", "{\"records\":{}}", NULL};
    for (int i = 0; bad[i]; i++) {
        post(meter(), bad[i], &r);
        assert_int_equal(r.status, 400);
        kresp_free(&r);
    }
    post(meter(), "{\"records\":[1]}", &r); /* shape checked by billing */
    assert_int_equal(r.status, 400);
    kresp_free(&r);
    free(at);
    free(body);
    free(p);
}

typedef struct {
    const char *body;
    int status;
    long stored;
} conc_t;

static void *conc_main(void *arg)
{
    conc_t *c = arg;
    for (int attempt = 0; attempt < 200; attempt++) {
        kresp_t r;
        if (kc_admin("POST", "/v1/usage", meter(), c->body, &r) != 0) {
            c->status = -1;
            return NULL;
        }
        c->status = r.status;
        if (r.status == 200)
            c->stored = (long)json_integer_value(json_object_get(r.json, "stored"));
        kresp_free(&r);
        if (c->status != 429) /* the per-token limit of calls at once: retry as a client would */
            break;
        usleep(50000);
    }
    return NULL;
}

/* 20 identical calls at once: every one succeeds, every record is stored once. */
static void test_concurrent(void **state)
{
    (void)state;
    char *p = kc_uid("conc"), *at = iso_at(-20);
    char *body = records_body(p, 50, "3", at);
    pthread_t th[20];
    conc_t c[20];
    for (int i = 0; i < 20; i++) {
        c[i] = (conc_t){.body = body};
        assert_int_equal(pthread_create(&th[i], NULL, conc_main, &c[i]), 0);
    }
    long stored = 0;
    for (int i = 0; i < 20; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(c[i].status, 200);
        stored += c[i].stored;
    }
    assert_int_equal(stored, 50);
    assert_int_equal(stored_with_prefix(p), 50);
    char *like = xasprintf("%s%%", p);
    char *sum = ot_sql("SELECT sum(quantity)::text FROM billing.usage_records"
                       " WHERE client_record_id LIKE $1",
                       like, NULL);
    assert_string_equal(sum, "150.0000");
    free(sum);
    free(like);
    free(body);
    free(at);
    free(p);
}

/* The meter token reaches the intake and nothing else; operators and auditors do not reach the
 * intake; admins do (kooisvctl usage add with the admin token). */
static void test_roles(void **state)
{
    (void)state;
    const char *paths[][2] = {{"GET", "/v1/audit?limit=1"},
                              {"GET", "/v1/billing/ping"},
                              {"GET", "/v1/instances"},
                              {"GET", "/v1/outbox/failed"},
                              {"POST", "/v1/audit/verify"}};
    kresp_t r;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_int_equal(kc_admin(paths[i][0], paths[i][1], meter(), NULL, &r), 0);
        if (r.status != 403)
            fail_msg("meter on %s %s: %d", paths[i][0], paths[i][1], r.status);
        kresp_free(&r);
    }
    char *p = kc_uid("role"), *id = xasprintf("%s-1", p);
    char *one = rec(ondemand, id, "\"1\"", -5);
    char *body = xasprintf("{\"records\":[%s]}", one);
    const char *refused[] = {"KOOISV_OPERATOR_ROLE_TOKEN", "KOOISV_AUDITOR_TOKEN"};
    for (int i = 0; i < 2; i++) {
        post(suite_get(refused[i]), body, &r);
        assert_int_equal(r.status, 403);
        kresp_free(&r);
    }
    post(NULL, body, &r);
    assert_int_equal(r.status, 401);
    kresp_free(&r);
    assert_int_equal(stored_with_prefix(p), 0);

    /* kooisvctl usage add (admin token, the env file's) from standard input. */
    char *out = NULL;
    const char *args[] = {"usage", "add", "-", NULL};
    assert_int_equal(kc_ctl(&out, body, args), 0);
    assert_non_null(strstr(out, "\"stored\": 1"));
    free(out);
    assert_int_equal(stored_with_prefix(p), 1);
    free(p);
    free(id);
    free(one);
    free(body);
}

/* A seller-console test instance's usage is kept, flagged: never pushed, never billed. */
static void test_test_flag(void **state)
{
    (void)state;
    char *p = kc_uid("tf"), *id = xasprintf("%s-1", p);
    char *one = rec(testinst, id, "\"4\"", -5);
    char *body = xasprintf("{\"records\":[%s]}", one);
    kresp_t r;
    post(meter(), body, &r);
    assert_int_equal(r.status, 200);
    kresp_free(&r);
    char *flag = ot_sql("SELECT test_flag::text FROM billing.usage_records"
                        " WHERE client_record_id = $1",
                        id, NULL);
    assert_string_equal(flag, "true");
    free(flag);
    free(p);
    free(id);
    free(one);
    free(body);
}

int main(void)
{
    if (suite_env_load() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intake), cmocka_unit_test(test_bad_records),
        cmocka_unit_test_teardown(test_mode_not_known_yet, ot_clear_faults_teardown),
        cmocka_unit_test(test_limits), cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_roles),  cmocka_unit_test(test_test_flag),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
