/* Billing exports end to end, through the gateway's admin API, kooisvctl and the billing
 * service: the bill and the detail in CSV and JSON with their filters (test-flag instances never
 * on them), formula cells neutralised, the status transitions (queued while no export thread can
 * claim it, running while its query waits, ready), a failed export, a replica that died
 * mid-export taken over, expiry after 3 days with the clock moved (the export's times moved
 * back: every expiry decision uses PostgreSQL's clock) and the download refused after it, the
 * audit entries of request and download, and bad input refused with nothing created.
 * The billing tables are seeded directly: the exports read them, whoever fills them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include "cryptoutil.h"
#include "kclient.h"
#include "kconn.h"
#include "xmalloc.h"

#define CTL(out, ...) kc_ctl(out, NULL, (const char *const[]){__VA_ARGS__, NULL})
#define FROM "2026-10-01T00:00:00Z"
#define TO "2026-11-01T00:00:00Z"

/* ---------------------------------------------------------------- helpers */

static const char *token(void)
{
    return suite_get("KOOISV_OPERATOR_TOKEN");
}

static long sql_long(const char *sql, const char *p1)
{
    const char *p[] = {p1};
    char *v = kc_sql_value(sql, p1 ? 1 : 0, p);
    long n = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return n;
}

static void exec_ok(const char *sql, int n, const char *const *p)
{
    if (kc_sql_exec(sql, n, p) < 0)
        fail_msg("seeding failed: %s", sql);
}

/* An instance the usage push leaves alone (not pay-per-use), so that these tests and the push's
 * never see each other's records; push status of its usage: excluded, or a seeded record's. */
static void seed_instance(const char *id, const char *tenant, const char *product, bool test)
{
    const char *p[] = {id, tenant, product, test ? "true" : "false"};
    exec_ok("INSERT INTO billing.instances (instance_id, tenant_id, customer_id, product_id,"
            " sku_code, charging_mode, period_type, period_number, amount, test_flag, state,"
            " created_at, updated_at) VALUES ($1, $2, 'cust', $3, 'sku-1', 'PERIOD', 'month',"
            " 1, 10, $4::bool, 'active', now(), now())",
            4, p);
}

static void seed_ledger(const char *instance, const char *kind, const char *amount,
                        const char *order, const char *at, bool test)
{
    char *event = kc_uid("EV");
    const char *p[] = {event, instance, kind, order, amount, at, test ? "true" : "false"};
    exec_ok("INSERT INTO billing.ledger (event_id, instance_id, kind, order_id, amount,"
            " period_type, period_number, test_flag, occurred_at) VALUES ($1, $2, $3, $4,"
            " $5::numeric, 'month', 1, $7::bool, $6::timestamptz)",
            7, p);
    free(event);
}

static void seed_usage(const char *instance, const char *record, const char *quantity,
                       const char *begin)
{
    const char *p[] = {instance, record, quantity, begin};
    exec_ok("INSERT INTO billing.usage_records (instance_id, client_record_id, quantity,"
            " used_begin, used_end, bucket_start, request_id) VALUES ($1, $2, $3::numeric,"
            " $4::timestamptz, $4::timestamptz + interval '1 minute',"
            " date_trunc('hour', $4::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', 'seed')",
            4, p);
}

/* POST /v1/billing/exports with query (kind=...&from=...); the answer in *r. */
static void request_export(const char *query, kresp_t *r)
{
    char *path = xasprintf("/v1/billing/exports?%s", query);
    assert_int_equal(kc_admin("POST", path, token(), "{}", r), 0);
    free(path);
}

/* Request an export that must be accepted; its id (caller frees). */
static char *request_ok(const char *query)
{
    kresp_t r = {0};
    request_export(query, &r);
    if (r.status != 200)
        fail_msg("export request %s: HTTP %d %s", query, r.status, r.body);
    const char *id = json_string_value(json_object_get(r.json, "id"));
    assert_non_null(id);
    char *copy = xstrdup(id);
    kresp_free(&r);
    return copy;
}

/* The export's status document (caller decrefs). */
static json_t *export_get(const char *id)
{
    char *path = xasprintf("/v1/billing/exports/%s", id);
    kresp_t r = {0};
    assert_int_equal(kc_admin("GET", path, token(), NULL, &r), 0);
    free(path);
    if (r.status != 200)
        fail_msg("export %s: HTTP %d %s", id, r.status, r.body);
    json_t *doc = json_incref(r.json);
    kresp_free(&r);
    return doc;
}

static const char *status_of(json_t *doc)
{
    const char *s = json_string_value(json_object_get(doc, "status"));
    return s ? s : "";
}

static bool export_done(void *arg)
{
    json_t *doc = export_get(arg);
    bool done = strcmp(status_of(doc), "queued") != 0 && strcmp(status_of(doc), "running") != 0;
    json_decref(doc);
    return done;
}

/* Wait until the export is ready or failed; its document (caller decrefs). */
static json_t *wait_done(const char *id)
{
    if (!kc_wait(60000, 100, export_done, (void *)id))
        fail_msg("export %s still not done after 60 s", id);
    return export_get(id);
}

static void download(const char *id, kresp_t *r)
{
    char *path = xasprintf("/v1/billing/exports/%s/download", id);
    assert_int_equal(kc_admin("GET", path, token(), NULL, r), 0);
    free(path);
}

/* Request, wait for ready, download: the file (caller frees). */
static char *export_file(const char *query)
{
    char *id = request_ok(query);
    json_t *doc = wait_done(id);
    if (strcmp(status_of(doc), "ready") != 0)
        fail_msg("export %s: %s (%s)", id, status_of(doc),
                 json_string_value(json_object_get(doc, "error")));
    kresp_t r = {0};
    download(id, &r);
    assert_int_equal(r.status, 200);
    /* The file is what the service made: its length and SHA-256. */
    assert_int_equal((long)r.len, (long)json_integer_value(json_object_get(doc, "bytes")));
    uint8_t h[32];
    char hex[65];
    sha256(r.body, r.len, h);
    hex_encode(h, 32, hex);
    assert_string_equal(hex, json_string_value(json_object_get(doc, "sha256")));
    const char *sha = kresp_header(&r, "X-Content-SHA256");
    assert_non_null(sha);
    assert_string_equal(sha, hex);
    char *file = xstrdup(r.body);
    kresp_free(&r);
    json_decref(doc);
    free(id);
    return file;
}

/* A tenant with two products, three instances and a test-flag one, lines and usage inside the
 * range and on both of its edges. Ids in *ids: tenant, PA, PB, I1, I2, I3, I4 (caller frees). */
static void seed_tenant(char *ids[7])
{
    ids[0] = kc_uid("T");
    ids[1] = kc_uid("PA");
    ids[2] = kc_uid("PB");
    for (int i = 3; i < 7; i++)
        ids[i] = kc_uid("I");
    seed_instance(ids[3], ids[0], ids[1], false);
    seed_instance(ids[4], ids[0], ids[1], false);
    seed_instance(ids[5], ids[0], ids[2], false);
    seed_instance(ids[6], ids[0], ids[1], true);
    seed_ledger(ids[3], "new", "100", "O-1", "2026-10-02T08:00:00Z", false);
    seed_ledger(ids[3], "renewal", "50", "O-2", "2026-10-15T08:00:00Z", false);
    seed_ledger(ids[3], "renewal", "70", "O-3", TO, false);                     /* after */
    seed_ledger(ids[3], "renewal", "80", "O-4", "2026-09-30T23:59:59Z", false); /* before */
    seed_ledger(ids[4], "new", "20", "O-5", "2026-10-03T00:00:00Z", false);
    seed_ledger(ids[4], "refund", "20", "O-5", "2026-10-04T00:00:00Z", false);
    seed_ledger(ids[5], "freeze", NULL, "O-6", "2026-10-05T00:00:00Z", false);
    seed_ledger(ids[6], "new", "999", "O-7", "2026-10-06T00:00:00Z", true);
    seed_usage(ids[5], "r1", "1.5", "2026-10-10T10:05:00Z");
    seed_usage(ids[5], "r2", "2.25", "2026-10-10T11:00:00Z");
    seed_usage(ids[5], "r3", "9", TO); /* after */
    seed_usage(ids[6], "r4", "5", "2026-10-10T10:00:00Z");
}

static void free_ids(char *ids[], int n)
{
    for (int i = 0; i < n; i++)
        free(ids[i]);
}

/* ---------------------------------------------------------------- formats and filters */

static void test_bill_csv(void **state)
{
    char *ids[7];
    seed_tenant(ids);
    char *q = xasprintf("kind=bill&from=%s&to=%s&tenant=%s&format=csv", FROM, TO, ids[0]);
    char *file = export_file(q);
    const char *T = ids[0], *PA = ids[1], *PB = ids[2];
    const char *range = "2026-10-01T00:00:00Z,2026-11-01T00:00:00Z";
    /* Lines of one product in instance id order. */
    char *i1 = xasprintf("instance,%s,%s,%s,sku-1,PERIOD,%s,2,150.0000,0,150.0000,0,0\r\n", T, PA,
                         ids[3], range);
    char *i2 = xasprintf("instance,%s,%s,%s,sku-1,PERIOD,%s,2,20.0000,20.0000,0.0000,0,0\r\n", T,
                         PA, ids[4], range);
    bool in_order = strcmp(ids[3], ids[4]) < 0;
    char *want = xasprintf(
        "line,tenant_id,product_id,instance_id,sku_code,charging_mode,period_from,period_to,"
        "ledger_lines,charged_amount,refunded_amount,net_amount,usage_records,usage_quantity\r\n"
        "%s%s"
        "product,%s,%s,,,,%s,4,170.0000,20.0000,150.0000,0,0\r\n"
        "instance,%s,%s,%s,sku-1,PERIOD,%s,1,0,0,0,2,3.7500\r\n"
        "product,%s,%s,,,,%s,1,0,0,0,2,3.7500\r\n"
        "tenant,%s,,,,,%s,5,170.0000,20.0000,150.0000,2,3.7500\r\n"
        "all,,,,,,%s,5,170.0000,20.0000,150.0000,2,3.7500\r\n",
        in_order ? i1 : i2, in_order ? i2 : i1, T, PA, range, T, PB, ids[5], range, T, PB, range, T,
        range, range);
    assert_string_equal(file, want);
    /* The test-flag instance is on no line. */
    assert_null(strstr(file, ids[6]));
    free(i1);
    free(i2);
    free(want);
    free(file);
    free(q);
    free_ids(ids, 7);
}

static void test_bill_json_product_filter(void **state)
{
    char *ids[7];
    seed_tenant(ids);
    char *q = xasprintf("kind=bill&from=%s&to=%s&product=%s&format=json", FROM, TO, ids[2]);
    char *file = export_file(q);
    json_error_t err;
    json_t *rows = json_loads(file, 0, &err);
    if (!json_is_array(rows))
        fail_msg("not a JSON array: %s", err.text);
    /* PB's one instance, its product total, its tenant total, all. */
    assert_int_equal(json_array_size(rows), 4);
    json_t *first = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(first, "instance_id")), ids[5]);
    assert_true(json_is_number(json_object_get(first, "usage_quantity")));
    assert_true(json_number_value(json_object_get(first, "usage_quantity")) == 3.75);
    assert_int_equal(json_integer_value(json_object_get(first, "usage_records")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 3), "line")), "all");
    assert_true(json_is_null(json_object_get(json_array_get(rows, 3), "tenant_id")));
    json_decref(rows);
    free(file);
    free(q);
    free_ids(ids, 7);
}

static void test_detail_csv_and_json_instance_filter(void **state)
{
    char *ids[7];
    seed_tenant(ids);
    /* r2 was pushed and accepted: its push record's state and metering_sn. */
    char *sn = kc_uid("SN");
    const char *pp[] = {sn, ids[5]};
    exec_ok("WITH p AS (INSERT INTO billing.usage_pushes (metering_sn, instance_id, bucket_start,"
            " granularity, late_seq, begin_time, end_time, record_time, usage_value, record_count,"
            " state, next_attempt_at, accepted_at) VALUES ($1, $2, '2026-10-10T11:00:00Z', 'hour',"
            " 0, '2026-10-10T11:00:00Z', '2026-10-10T12:00:00Z', now(), 2.25, 1, 'accepted',"
            " now(), now()) RETURNING id) UPDATE billing.usage_records u SET push_id = p.id"
            " FROM p WHERE u.instance_id = $2 AND u.client_record_id = 'r2'",
            2, pp);
    char *q = xasprintf("kind=detail&from=%s&to=%s&instance=%s&format=csv", FROM, TO, ids[5]);
    char *file = export_file(q);
    char *want = xasprintf(
        "record_type,record_id,occurred_at,tenant_id,product_id,instance_id,kind,order_id,amount,"
        "period_type,period_number,quantity,used_begin,used_end,bucket_start,client_record_id,"
        "push_status,metering_sn\r\n");
    assert_memory_equal(file, want, strlen(want));
    /* One ledger line (the freeze), then two usage records in time order; nothing outside. */
    const char *line = file + strlen(want);
    assert_int_equal(strncmp(line, "ledger,", 7), 0);
    char *tail = xasprintf(",2026-10-05T00:00:00Z,%s,%s,%s,freeze,O-6,,month,1,,,,,,,\r\n", ids[0],
                           ids[2], ids[5]);
    assert_non_null(strstr(line, tail));
    char *u1 = xasprintf(",2026-10-10T10:05:00Z,%s,%s,%s,,,,,,1.5000,2026-10-10T10:05:00Z,"
                         "2026-10-10T10:06:00Z,2026-10-10T10:00:00Z,r1,excluded,\r\n",
                         ids[0], ids[2], ids[5]);
    char *u2 = xasprintf(",2026-10-10T11:00:00Z,%s,%s,%s,,,,,,2.2500,2026-10-10T11:00:00Z,"
                         "2026-10-10T11:01:00Z,2026-10-10T11:00:00Z,r2,accepted,%s\r\n",
                         ids[0], ids[2], ids[5], sn);
    char *p1 = strstr(line, u1), *p2 = strstr(line, u2);
    if (!p1 || !p2)
        fail_msg("usage lines not found in:\n%s", file);
    assert_true(p1 < p2);
    assert_null(strstr(file, ",r3,"));
    int lines = 0;
    for (const char *p = file; (p = strstr(p, "\r\n")); p += 2)
        lines++;
    assert_int_equal(lines, 4);
    free(q);
    free(file);

    /* The same as JSON: every usage record with its push status and metering_sn keys. */
    q = xasprintf("kind=detail&from=%s&to=%s&instance=%s&format=json", FROM, TO, ids[5]);
    file = export_file(q);
    json_error_t err;
    json_t *rows = json_loads(file, 0, &err);
    assert_true(json_is_array(rows));
    assert_int_equal(json_array_size(rows), 3);
    json_t *u = json_array_get(rows, 2);
    assert_string_equal(json_string_value(json_object_get(u, "record_type")), "usage");
    assert_string_equal(json_string_value(json_object_get(u, "client_record_id")), "r2");
    assert_true(json_number_value(json_object_get(u, "quantity")) == 2.25);
    assert_string_equal(json_string_value(json_object_get(u, "push_status")), "accepted");
    assert_string_equal(json_string_value(json_object_get(u, "metering_sn")), sn);
    u = json_array_get(rows, 1);
    assert_string_equal(json_string_value(json_object_get(u, "push_status")), "excluded");
    assert_true(json_is_null(json_object_get(u, "metering_sn")));
    free(sn);
    json_decref(rows);
    free(file);
    free(q);
    free(want);
    free(tail);
    free(u1);
    free(u2);
    free_ids(ids, 7);
}

static void test_test_flag_never_exported(void **state)
{
    char *ids[7];
    seed_tenant(ids);
    char *q = xasprintf("kind=detail&from=%s&to=%s&instance=%s", FROM, TO, ids[6]);
    char *file = export_file(q);
    /* The header only. */
    assert_string_equal(strchr(file, '\n') + 1, "");
    free(file);
    free(q);
    q = xasprintf("kind=bill&from=%s&to=%s&instance=%s", FROM, TO, ids[6]);
    file = export_file(q);
    /* Only the empty grand total. */
    assert_non_null(
        strstr(file, "\r\nall,,,,,,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,0,0,0,0,0,0\r\n"));
    assert_null(strstr(file, "\r\ninstance,"));
    free(file);
    free(q);
    free_ids(ids, 7);
}

/* ---------------------------------------------------------------- neutralisation */

static void test_formula_cells_neutralised(void **state)
{
    char *tenant = kc_uid("@T"), *product = kc_uid("+P"), *inst = kc_uid("I");
    seed_instance(inst, tenant, product, false);
    seed_ledger(inst, "new", "-5", "=HYPERLINK(\"http://evil\",\"x\")", "2026-10-07T00:00:00Z",
                false);
    seed_usage(inst, "-2+3", "1", "2026-10-08T00:00:00Z");
    char *q = xasprintf("kind=detail&from=%s&to=%s&instance=%s&format=csv", FROM, TO, inst);
    char *file = export_file(q);
    char *cell = xasprintf(",\"'%s\",\"'%s\",%s,new,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\","
                           "-5.0000,",
                           tenant, product, inst);
    if (!strstr(file, cell))
        fail_msg("neutralised cells not found in:\n%s", file);
    assert_non_null(strstr(file, ",\"'-2+3\","));
    /* No cell of the file begins with a formula character unquoted. */
    for (const char *p = file; *p; p++)
        if ((p[0] == ',' || p[0] == '\n') && p[1] && strchr("=+@", p[1]))
            fail_msg("unneutralised cell at: %.40s", p);
    free(file);
    free(q);
    /* JSON is no spreadsheet: the values as they are. */
    q = xasprintf("kind=detail&from=%s&to=%s&instance=%s&format=json", FROM, TO, inst);
    file = export_file(q);
    json_t *rows = json_loads(file, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "order_id")),
                        "=HYPERLINK(\"http://evil\",\"x\")");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "tenant_id")),
                        tenant);
    json_decref(rows);
    free(file);
    free(q);
    free(cell);
    free(tenant);
    free(product);
    free(inst);
}

/* ---------------------------------------------------------------- status, failure, takeover */

/* A connection of the test's own, to hold locks while the services work. The test that opened
 * it closes it with own_close; a failed test leaves it to release_own (its teardown), so that
 * the locks it holds never outlive the test and stall the next ones. */
static PGconn *held[2];
static pid_t replica2 = -1; /* test_two_replicas' second billing process, while it runs */

static PGconn *own_conn(void)
{
    PGconn *c = PQconnectdb(suite_get("KOOISV_PG_SUPER_DSN"));
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect: %s", PQerrorMessage(c));
    for (size_t i = 0; i < sizeof held / sizeof held[0]; i++)
        if (!held[i]) {
            held[i] = c;
            return c;
        }
    fail_msg("a test holds more than %zu connections of its own", sizeof held / sizeof held[0]);
    return NULL;
}

static void own_close(PGconn *c)
{
    PQfinish(c);
    for (size_t i = 0; i < sizeof held / sizeof held[0]; i++)
        if (held[i] == c)
            held[i] = NULL;
}

/* Teardown: the test's own connections closed (their transactions and locks with them), a
 * second billing replica stopped and the service's right to read the ledger back, whatever the
 * test did before it failed. */
static int release_own(void **state)
{
    (void)state;
    if (replica2 > 0) {
        kill(replica2, SIGTERM);
        waitpid(replica2, NULL, 0);
        replica2 = -1;
    }
    for (size_t i = 0; i < sizeof held / sizeof held[0]; i++)
        if (held[i]) {
            PQfinish(held[i]);
            held[i] = NULL;
        }
    return kc_sql_exec("GRANT SELECT ON billing.ledger TO kooisv_billing", 0, NULL) >= 0 ? 0 : -1;
}

static void own_exec(PGconn *c, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

static void test_status_transitions(void **state)
{
    char *inst = kc_uid("I");
    PGconn *c = own_conn();
    /* While the export's query must wait for the usage table, the export is running. The lock
     * is taken before the request so that the export cannot finish first. */
    own_exec(c, "BEGIN", 0, NULL);
    own_exec(c, "LOCK TABLE billing.usage_records IN ACCESS EXCLUSIVE MODE", 0, NULL);
    char *q = xasprintf("kind=detail&from=%s&to=%s&instance=%s", FROM, TO, inst);
    kresp_t r = {0};
    request_export(q, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(status_of(r.json), "queued");
    char *id = xstrdup(json_string_value(json_object_get(r.json, "id")));
    kresp_free(&r);
    bool running = false;
    for (int i = 0; i < 40 && !running; i++) {
        json_t *doc = export_get(id);
        running = strcmp(status_of(doc), "running") == 0;
        if (running)
            assert_non_null(json_object_get(doc, "started_at"));
        json_decref(doc);
        if (!running) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(running);
    /* Not ready yet: no download. */
    download(id, &r);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(r.body, "not ready"));
    kresp_free(&r);

    /* Queued while no export thread can claim it. The replica's one export thread is stuck in
     * the first export; a second is queued and its row locked (d), a third queued after it.
     * Released, the thread finishes the first, passes the locked second (SKIP LOCKED: a claim
     * that waited for it would leave the third queued too) and makes the third; the second
     * stays queued until d lets it go. */
    char *second = request_ok(q);
    PGconn *d = own_conn();
    const char *p[] = {second};
    own_exec(d, "BEGIN", 0, NULL);
    own_exec(d, "SELECT 1 FROM billing.exports WHERE id = $1::uuid FOR UPDATE", 1, p);
    json_t *doc = export_get(second);
    assert_string_equal(status_of(doc), "queued");
    json_decref(doc);
    char *third = request_ok(q);
    own_exec(c, "COMMIT", 0, NULL);
    doc = wait_done(third);
    assert_string_equal(status_of(doc), "ready");
    json_decref(doc);
    doc = wait_done(id);
    assert_string_equal(status_of(doc), "ready");
    assert_int_equal(json_integer_value(json_object_get(doc, "attempts")), 1);
    assert_non_null(json_object_get(doc, "expires_at"));
    json_decref(doc);
    doc = export_get(second);
    assert_string_equal(status_of(doc), "queued");
    assert_null(json_object_get(doc, "started_at"));
    json_decref(doc);
    own_exec(d, "COMMIT", 0, NULL);
    own_close(d);
    doc = wait_done(second);
    assert_string_equal(status_of(doc), "ready");
    assert_int_equal(json_integer_value(json_object_get(doc, "attempts")), 1);
    json_decref(doc);
    free(second);
    free(third);
    own_close(c);
    free(id);
    free(q);
    free(inst);
}

static void test_failed_export(void **state)
{
    /* The service loses its right to read the ledger: the export fails with the reason, and
     * the download says so. */
    assert_true(kc_sql_exec("REVOKE SELECT ON billing.ledger FROM kooisv_billing", 0, NULL) >= 0);
    char *q = xasprintf("kind=bill&from=%s&to=%s", FROM, TO);
    char *id = request_ok(q);
    json_t *doc = wait_done(id);
    kc_sql_exec("GRANT SELECT ON billing.ledger TO kooisv_billing", 0, NULL);
    assert_string_equal(status_of(doc), "failed");
    const char *error = json_string_value(json_object_get(doc, "error"));
    assert_non_null(error);
    assert_non_null(strstr(error, "42501"));
    assert_non_null(json_object_get(doc, "finished_at"));
    assert_int_equal(
        sql_long("SELECT count(*) FROM billing.export_chunks WHERE export_id = $1::uuid", id), 0);
    kresp_t r = {0};
    download(id, &r);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(r.body, "failed"));
    kresp_free(&r);
    json_decref(doc);
    free(id);
    free(q);
}

static void test_dead_replica_taken_over(void **state)
{
    /* What a replica killed mid-export leaves: running, claimed long ago, no lock held. */
    char *rid = kc_uid("RID");
    const char *p[] = {rid};
    char *id = kc_sql_value("INSERT INTO billing.exports (kind, format, range_from, range_to,"
                            " status, requested_by, request_id, attempts, claim_token, claimed_at)"
                            " VALUES ('bill', 'csv', '" FROM "', '" TO "', 'running', 'op', $1, 1,"
                            " 'deadhost:1:0:x', now() - interval '5 minutes') RETURNING id",
                            1, p);
    assert_non_null(id);
    json_t *doc = wait_done(id);
    assert_string_equal(status_of(doc), "ready");
    assert_int_equal(json_integer_value(json_object_get(doc, "attempts")), 2);
    json_decref(doc);
    free(id);
    free(rid);
}

static bool both_running(void *arg)
{
    char **ids = arg;
    json_t *a = export_get(ids[0]), *b = export_get(ids[1]);
    bool yes = strcmp(status_of(a), "running") == 0 && strcmp(status_of(b), "running") == 0;
    json_decref(a);
    json_decref(b);
    return yes;
}

static void test_two_replicas(void **state)
{
    /* A second billing replica with its own export thread. While the usage table is locked,
     * each replica's one thread is stuck in its own export: both run at once, each claimed by
     * a different replica, neither twice; released, both finish. */
    replica2 = kc_spawn_replica("billing");
    assert_true(replica2 > 0);
    struct timespec settle = {3, 0};
    nanosleep(&settle, NULL);
    PGconn *c = own_conn();
    own_exec(c, "BEGIN", 0, NULL);
    own_exec(c, "LOCK TABLE billing.usage_records IN ACCESS EXCLUSIVE MODE", 0, NULL);
    char *q = xasprintf("kind=bill&from=%s&to=%s&tenant=nobody", FROM, TO);
    char *ids[2] = {request_ok(q), request_ok(q)};
    bool running = kc_wait(30000, 100, both_running, ids);
    json_t *a = export_get(ids[0]), *b = export_get(ids[1]);
    own_exec(c, "COMMIT", 0, NULL);
    own_close(c);
    assert_true(running);
    const char *made_a = json_string_value(json_object_get(a, "made_by"));
    const char *made_b = json_string_value(json_object_get(b, "made_by"));
    assert_non_null(made_a);
    assert_non_null(made_b);
    assert_string_not_equal(made_a, made_b);
    json_decref(a);
    json_decref(b);
    for (int i = 0; i < 2; i++) {
        json_t *doc = wait_done(ids[i]);
        assert_string_equal(status_of(doc), "ready");
        assert_int_equal(json_integer_value(json_object_get(doc, "attempts")), 1);
        kresp_t r = {0};
        download(ids[i], &r);
        assert_int_equal(r.status, 200);
        kresp_free(&r);
        json_decref(doc);
        free(ids[i]);
    }
    kill(replica2, SIGTERM);
    waitpid(replica2, NULL, 0);
    replica2 = -1;
    free(q);
}

/* The downloads of export id in the audit trail whose outcome was http_status (-1: error). */
static long downloads_audited(const char *id, const char *http_status)
{
    const char *p[] = {id, http_status};
    return kc_sql_count("SELECT 1 FROM audit.intents i JOIN audit.outcomes o"
                        " USING (request_id) WHERE i.event_type = 'admin.export.download'"
                        " AND i.resources @> jsonb_build_array(jsonb_build_object('kind',"
                        " 'export', 'id', $1::text)) AND o.http_status = $2::bigint",
                        2, p);
}

static bool download_gone_audited(void *arg)
{
    return downloads_audited(arg, "499") == 1;
}

static void test_download_client_gone(void **state)
{
    /* A file of several chunks; the client reads the head of the answer and hangs up while
     * the gateway is still asking billing for chunks. The gateway lives on and records 499. */
    char *inst = kc_uid("I");
    seed_instance(inst, "T-big", "P-big", false);
    const char *p[] = {inst};
    exec_ok("INSERT INTO billing.usage_records (instance_id, client_record_id, quantity,"
            " used_begin, used_end, bucket_start, request_id) SELECT $1, 'rec-' || g, 1,"
            " timestamptz '2026-10-02 00:00:00+00' + g * interval '1 second',"
            " timestamptz '2026-10-02 00:00:01+00' + g * interval '1 second',"
            " date_trunc('hour', timestamptz '2026-10-02 00:00:00+00' + g * interval '1 second'),"
            " 'seed' FROM generate_series(1, 40000) g",
            1, p);
    char *q = xasprintf("kind=detail&from=%s&to=%s&instance=%s", FROM, TO, inst);
    char *id = request_ok(q);
    json_t *doc = wait_done(id);
    assert_string_equal(status_of(doc), "ready");
    assert_true(json_integer_value(json_object_get(doc, "chunks")) >= 4);
    json_decref(doc);
    char err[256];
    kconn_t *conn = kconn_open(suite_get("KOOISV_ADMIN_URL"), NULL, err, sizeof err);
    if (!conn)
        fail_msg("cannot connect: %s", err);
    char *auth = xasprintf("Authorization: Bearer %s", token());
    const char *headers[] = {auth, NULL};
    char *path = xasprintf("/v1/billing/exports/%s/download", id);
    kresp_t r = {0};
    kconn_request(conn, "GET", path, headers, NULL, 0, &r); /* reads the head, not the stream */
    kresp_free(&r);
    kconn_destroy(&conn);
    if (!kc_wait(15000, 100, download_gone_audited, id))
        fail_msg("no download of %s recorded as 499", id);
    /* The gateway is alive and serves the whole file to the next client. */
    download(id, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.len > 3 * 1024 * 1024);
    kresp_free(&r);
    free(path);
    free(auth);
    free(id);
    free(q);
    free(inst);
}

/* ---------------------------------------------------------------- expiry */

static void test_expiry_after_three_days(void **state)
{
    char *q = xasprintf("kind=bill&from=%s&to=%s&tenant=nobody", FROM, TO);
    char *file = export_file(q);
    free(file);
    char *id = request_ok(q);
    json_t *doc = wait_done(id);
    json_decref(doc);
    const char *p[] = {id};
    /* The clock moved 3 days less a minute: still downloadable. */
    exec_ok("UPDATE billing.exports SET finished_at = finished_at - interval '3 days'"
            " + interval '1 minute', expires_at = expires_at - interval '3 days'"
            " + interval '1 minute', requested_at = requested_at - interval '3 days' WHERE id = "
            "$1::uuid",
            1, p);
    kresp_t r = {0};
    download(id, &r);
    assert_int_equal(r.status, 200);
    kresp_free(&r);
    /* A minute and a second more: expired at once, before the janitor has run. */
    exec_ok("UPDATE billing.exports SET finished_at = finished_at - interval '61 seconds',"
            " expires_at = expires_at - interval '61 seconds' WHERE id = $1::uuid",
            1, p);
    download(id, &r);
    assert_int_equal(r.status, 410);
    assert_non_null(strstr(r.body, "expired"));
    assert_non_null(strstr(r.body, "kept 3 days"));
    kresp_free(&r);
    /* The janitor deletes the file and marks the export. */
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) {
        gone = sql_long("SELECT count(*) FROM billing.exports WHERE id = $1::uuid AND status ="
                        " 'expired'",
                        id) == 1 &&
               sql_long("SELECT count(*) FROM billing.export_chunks WHERE export_id = $1::uuid",
                        id) == 0;
        if (!gone) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(gone);
    doc = export_get(id);
    assert_string_equal(status_of(doc), "expired");
    json_decref(doc);
    download(id, &r);
    assert_int_equal(r.status, 410);
    kresp_free(&r);
    /* kooisvctl says no, too. */
    char *out = NULL;
    assert_int_equal(CTL(&out, "billing", "download", id), 1);
    free(out);
    free(id);
    free(q);
}

/* ---------------------------------------------------------------- kooisvctl and audit */

/* The calls of request rid recorded in the audit trail as event, with their outcome. */
static long audit_count(const char *event, const char *rid)
{
    const char *p[] = {event, rid};
    return kc_sql_count("SELECT 1 FROM audit.intents i JOIN audit.outcomes o"
                        " USING (request_id) WHERE i.event_type = $1 AND i.request_id = $2",
                        2, p);
}

static bool download_audited(void *arg)
{
    return downloads_audited(arg, "200") == 1;
}

static void test_kooisvctl_and_audit(void **state)
{
    char *ids[7];
    seed_tenant(ids);
    char *out = NULL;
    assert_int_equal(CTL(&out, "billing", "export", "bill", "--from", FROM, "--to", TO, "--tenant",
                         ids[0], "--json", "--wait"),
                     0);
    json_t *doc = json_loads(out, 0, NULL);
    free(out);
    assert_string_equal(status_of(doc), "ready");
    assert_string_equal(json_string_value(json_object_get(doc, "format")), "json");
    char *id = xstrdup(json_string_value(json_object_get(doc, "id")));
    char *rid = xstrdup(json_string_value(json_object_get(doc, "request_id")));
    json_decref(doc);
    assert_int_equal(CTL(&out, "billing", "export", "status", id), 0);
    doc = json_loads(out, 0, NULL);
    assert_string_equal(status_of(doc), "ready");
    json_decref(doc);
    free(out);
    assert_int_equal(CTL(&out, "billing", "exports", "--limit", "5"), 0);
    assert_non_null(strstr(out, id));
    free(out);
    assert_int_equal(CTL(&out, "billing", "download", id), 0);
    json_t *rows = json_loads(out, 0, NULL);
    assert_true(json_is_array(rows));
    assert_int_equal(json_array_size(rows), 7);
    json_decref(rows);
    free(out);

    /* The request is audited under the request id the export keeps, the download with the
     * export as its resource. */
    if (!kc_wait(15000, 100, download_audited, id))
        fail_msg("no audited download of %s", id);
    assert_int_equal(audit_count("admin.export.request", rid), 1);
    const char *p[] = {id, rid};
    assert_int_equal(kc_sql_count("SELECT 1 FROM billing.exports WHERE id = $1::uuid AND"
                                  " request_id = $2 AND requested_by <> ''",
                                  2, p),
                     1);
    free(id);
    free(rid);
    free_ids(ids, 7);
}

/* ---------------------------------------------------------------- bad input */

static void expect_refused(const char *query, int status, const char *message)
{
    kresp_t r = {0};
    request_export(query, &r);
    if (r.status != status || !strstr(r.body, message))
        fail_msg("%s: HTTP %d %s (expected %d with '%s')", query, r.status, r.body, status,
                 message);
    kresp_free(&r);
}

static void test_bad_input_creates_nothing(void **state)
{
    long before = sql_long("SELECT count(*) FROM billing.exports", NULL);
    expect_refused("kind=invoice&from=" FROM "&to=" TO, 400, "kind: bill or detail");
    expect_refused("from=" FROM "&to=" TO, 400, "kind: bill or detail");
    expect_refused("kind=bill&from=" TO "&to=" FROM, 400, "to must be after from");
    expect_refused("kind=bill&from=" FROM "&to=" FROM, 400, "to must be after from");
    expect_refused("kind=bill&to=" TO, 400, "from: required");
    expect_refused("kind=bill&from=yesterday&to=" TO, 400, "from: required");
    expect_refused("kind=bill&from=" FROM "&to=2026-13-01", 400, "to: required");
    expect_refused("kind=bill&from=2020-01-01&to=" TO, 400, "at most 366 days");
    expect_refused("kind=bill&from=" FROM "&to=" TO "&format=xlsx", 400, "format: csv or json");
    expect_refused("kind=bill&from=" FROM "&to=" TO "&customer=C1", 400, "customer");
    assert_int_equal(sql_long("SELECT count(*) FROM billing.exports", NULL), before);

    char *out = NULL;
    assert_int_equal(
        CTL(&out, "billing", "export", "bill", "--from", FROM, "--to", TO, "--customer", "C1"), 2);
    free(out);
    assert_int_equal(CTL(&out, "billing", "export", "invoice", "--from", FROM, "--to", TO), 1);
    free(out);
    assert_int_equal(CTL(&out, "billing", "export", "bill", "--from", TO, "--to", FROM), 1);
    free(out);
    assert_int_equal(sql_long("SELECT count(*) FROM billing.exports", NULL), before);

    /* Ids: malformed 400, unknown 404, for status and download alike. */
    kresp_t r = {0};
    assert_int_equal(kc_admin("GET", "/v1/billing/exports/nope", token(), NULL, &r), 0);
    assert_int_equal(r.status, 400);
    kresp_free(&r);
    const char *unknown = "00000000-0000-4000-8000-000000000000";
    char *path = xasprintf("/v1/billing/exports/%s", unknown);
    assert_int_equal(kc_admin("GET", path, token(), NULL, &r), 0);
    assert_int_equal(r.status, 404);
    kresp_free(&r);
    download(unknown, &r);
    assert_int_equal(r.status, 404);
    kresp_free(&r);
    download("nope", &r);
    assert_int_equal(r.status, 400);
    kresp_free(&r);
    /* An auditor may not ask for exports. */
    assert_int_equal(kc_admin("POST", "/v1/billing/exports?kind=bill&from=" FROM "&to=" TO,
                              suite_get("KOOISV_AUDITOR_TOKEN"), "{}", &r),
                     0);
    assert_int_equal(r.status, 403);
    kresp_free(&r);
    free(path);
    assert_int_equal(sql_long("SELECT count(*) FROM billing.exports", NULL), before);
}

int main(void)
{
    if (suite_env_load() != 0) {
        fprintf(stderr, "no suite env (run through ctest: the suite fixture starts it)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bill_csv),
        cmocka_unit_test(test_bill_json_product_filter),
        cmocka_unit_test(test_detail_csv_and_json_instance_filter),
        cmocka_unit_test(test_test_flag_never_exported),
        cmocka_unit_test(test_formula_cells_neutralised),
        cmocka_unit_test_teardown(test_status_transitions, release_own),
        cmocka_unit_test_teardown(test_failed_export, release_own),
        cmocka_unit_test(test_dead_replica_taken_over),
        cmocka_unit_test_teardown(test_two_replicas, release_own),
        cmocka_unit_test(test_download_client_gone),
        cmocka_unit_test(test_expiry_after_three_days),
        cmocka_unit_test(test_kooisvctl_and_audit),
        cmocka_unit_test(test_bad_input_creates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
