/* Usage push through the real processes: billing (one replica, then two) pushes the usage of
 * pay-per-use instances to the emulator's usage-data API. Billing's clock is moved with its
 * test offset file (KOOISV_BILLING_CLOCK_OFFSET_FILE, services/billing/billclock.h), so an hour's
 * window opens when the test says, without waiting for real hours. The test gives billing its
 * settings through <suite>/env/billing.env and restarts it (restored at the end). Usage arrives
 * through the intake (POST /v1/usage, meter token); the instances are written into
 * billing.instances as the ledger would (the ledger's own test drives them from orders).
 *   window: nothing before the hour's end + delay, the hour's records then, daily at 00:05;
 *           an hour without usage sends nothing; test-flag instances never;
 *   batching above 1000 with two replicas at once: every record sent once, <= 1000 a request;
 *   retries (rate limiting, 5xx, dropped connection, timeout) with the same metering_sn;
 *   record refusals (named, and unnamed: split) kept with code and message; dead letter;
 *   kooisvctl usage failed / redrive; billing status;
 *   kill -9 of billing mid-push; late usage and clock steps back and forth;
 *   products billed daily (KOOISV_BILLING_DAILY_PRODUCTS), from their orders to the push, and
 *   billing refusing to start with a malformed list. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "billing_support.h"
#include "config.h"
#include "kclient.h"
#include "kplan.h"
#include "push.h"
#include "timeutil.h"
#include "xmalloc.h"

#define HOUR_MS (3600LL * 1000)
#define DAY_MS (24 * HOUR_MS)
#define DELAY_MS (300LL * 1000) /* KOOISV_USAGE_PUSH_DELAY_S default */
#define WAIT_MS 30000
/* The products the group gives billing as billed daily (KOOISV_BILLING_DAILY_PRODUCTS), and
 * one that is not among them. */
#define DAILY_PRODUCT "OFFIDAILY00000000001"
#define DAILY_PRODUCTS "OFFIDAILY00000000009, " DAILY_PRODUCT "\tOFFI.DAILY_x-1"
#define HOURLY_PRODUCT "OFFIHOURLY0000000001"

static kc_envfile_t saved_env;
static pid_t replica2;

/* ---- suite plumbing ---- */

static char *suite_path(const char *rel)
{
    return xasprintf("%s/%s", suite_get("KOOISV_SUITE_DIR"), rel);
}

static char *clock_path(void)
{
    return suite_path("billing-clock-offset");
}

/* Billing's clock reads target_ms now (whole seconds). */
static void set_clock(int64_t target_ms)
{
    long long offset = (long long)((target_ms - time_now_ms()) / 1000);
    char *path = clock_path(), *tmp = xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        fail_msg("cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "%lld\n", offset);
    fclose(f);
    chmod(tmp, 0644);
    if (rename(tmp, path) != 0)
        fail_msg("rename %s: %s", tmp, strerror(errno));
    free(tmp);
    free(path);
}

/* The group's settings of billing (group_setup), for write_billing_env. */
static char *group_env;

/* Billing's env file: what the suite wrote, then extra (readable by the suite's processes). */
static void write_billing_env(const char *extra)
{
    kc_envfile_write(&saved_env, extra);
    chmod(saved_env.path, 0644);
}

static int group_setup(void **state)
{
    (void)state;
    if (suite_env_load() != 0)
        return -1;
    kc_envfile_save(&saved_env, "billing");
    set_clock(time_now_ms());
    char *clock = clock_path();
    group_env = xasprintf("KOOISV_BILLING_CLOCK_OFFSET_FILE=%s\n"
                          "KOOISV_USAGE_POLL_MS=200\nKOOISV_USAGE_BACKOFF_MS=300\n"
                          "KOOISV_USAGE_BACKOFF_MAX_MS=1000\nKOOISV_USAGE_MAX_ATTEMPTS=12\n"
                          "KOOISV_MARKETPLACE_TIMEOUT_MS=2000\n"
                          "KOOISV_BILLING_DAILY_PRODUCTS=" DAILY_PRODUCTS "\n",
                          clock);
    write_billing_env(group_env);
    free(clock);
    return kc_suite("restart", "billing") == 0 ? 0 : -1;
}

static void stop_replica2(void)
{
    if (replica2 > 0) {
        kill(replica2, SIGTERM);
        waitpid(replica2, NULL, 0);
        replica2 = 0;
    }
}

static int group_teardown(void **state)
{
    (void)state;
    stop_replica2();
    kresp_t r = {0};
    kc_emulator("POST", "/_emulator/faults",
                "{\"path\":\"usage-data\",\"mode\":\"error\",\"count\":0}", &r);
    kresp_free(&r);
    kc_emulator("POST", "/_emulator/usage/instances", "{\"instances\":null}", &r);
    kresp_free(&r);
    kc_envfile_restore(&saved_env);
    char *clock = clock_path();
    unlink(clock);
    free(clock);
    free(group_env);
    return kc_suite("restart", "billing") == 0 ? 0 : -1;
}

/* ---- data ---- */

static int64_t hour_of(int64_t ms)
{
    return ms / HOUR_MS * HOUR_MS;
}

static void iso(int64_t ms, char out[32])
{
    time_format_iso(ms, out, 32);
}

/* A billing instance as the ledger keeps it (pay-per-use unless mode says otherwise). */
static char *make_instance(const char *mode, bool test_flag, const char *granularity)
{
    char *id = kc_uid("PUSH");
    const char *p[] = {id, mode, test_flag ? "true" : "false", granularity};
    long n = kc_sql_exec("INSERT INTO billing.instances (instance_id, tenant_id, customer_id,"
                         " product_id, sku_code, charging_mode, test_flag, usage_granularity,"
                         " state, created_at, updated_at) VALUES ($1, 'T-' || $1, 'C-' || $1,"
                         " 'OFFI000000000000000003', 'SKU-OD', $2, $3::bool, $4, 'active', now(),"
                         " now())",
                         4, p);
    assert_int_equal(n, 1);
    return id;
}

/* One usage record of instance at used_ms, as the application reports it: POST /v1/usage on
 * the admin API with the meter token (billing's intake). */
static void add_usage(const char *instance, const char *quantity, int64_t used_ms)
{
    char used[32];
    iso(used_ms, used);
    char *crid = kc_uid("R");
    char *body = xasprintf("{\"records\":[{\"instanceId\":\"%s\",\"recordId\":\"%s\","
                           "\"quantity\":\"%s\",\"usedAt\":\"%s\"}]}",
                           instance, crid, quantity, used);
    kresp_t r = {0};
    assert_int_equal(kc_admin("POST", "/v1/usage", suite_get("KOOISV_METER_TOKEN"), body, &r), 0);
    if (r.status != 200)
        fail_msg("usage intake answered %d: %s", r.status, r.body);
    kresp_free(&r);
    free(body);
    free(crid);
}

/* A usage row the intake would refuse (a period instance's, or older than 21 days), written
 * directly: the push must leave the one alone and give the other up in time. */
static void add_usage_row(const char *instance, const char *quantity, int64_t used_ms)
{
    char used[32];
    iso(used_ms, used);
    char *crid = kc_uid("R");
    const char *p[] = {instance, crid, quantity, used};
    long n = kc_sql_exec(
        "INSERT INTO billing.usage_records (instance_id, client_record_id, quantity, used_begin,"
        " used_end, bucket_start, request_id, test_flag)"
        " SELECT $1, $2, $3::numeric, $4::timestamptz, $4::timestamptz,"
        "  date_trunc(i.usage_granularity, $4::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
        "  'test-push', i.test_flag FROM billing.instances i WHERE i.instance_id = $1",
        4, p);
    assert_int_equal(n, 1);
    free(crid);
}

/* An hourly pay-per-use instance with usage of quantity a minute into hour h, reported while
 * billing's clock stands inside that hour (caller frees). */
static char *hour_usage_instance(int64_t h, const char *quantity)
{
    set_clock(h + 30 * 60 * 1000);
    char *id = make_instance("ON_DEMAND", false, "hour");
    add_usage(id, quantity, h + 60 * 1000);
    return id;
}

/* Billing's clock 20 s after the push window of the period ending at end_ms opens. */
static void past_window(int64_t end_ms)
{
    set_clock(end_ms + DELAY_MS + 20000);
}

static long long sql_num(const char *sql, const char *a)
{
    const char *p[] = {a};
    char *v = kc_sql_value(sql, a ? 1 : 0, p);
    long long n = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

/* The records the emulator accepted for instance (caller decrefs). */
static json_t *market_records(const char *instance)
{
    char *path = xasprintf("/_emulator/usage?instance_id=%s", instance);
    kresp_t r = {0};
    assert_int_equal(kc_emulator("GET", path, NULL, &r), 0);
    free(path);
    assert_non_null(r.json);
    json_t *recs = json_incref(json_object_get(r.json, "records"));
    kresp_free(&r);
    return recs;
}

static long long market_count(const void *instance)
{
    json_t *recs = market_records(instance);
    size_t n = json_array_size(recs);
    json_decref(recs);
    return (long long)n;
}

static void wait_market(const char *instance, size_t n)
{
    if (!kc_wait_count(WAIT_MS, market_count, instance, (long long)n))
        fail_msg("the marketplace holds %lld records of %s, want %zu", market_count(instance),
                 instance, n);
}

/* Nothing more reaches the marketplace for instance over a few push cycles. */
static void assert_market_stays(const char *instance, size_t n)
{
    for (int i = 0; i < 10; i++) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        assert_int_equal(market_count(instance), n);
    }
}

static const char *rec_str(json_t *recs, size_t i, const char *name)
{
    return json_string_value(json_object_get(json_array_get(recs, i), name));
}

/* The UTC time of ms as the usage-data API writes it. */
static void compact_utc(int64_t ms, char out[17])
{
    time_t t = (time_t)(ms / 1000);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", gmtime(&t));
}

/* The marketplace's first record of instance covers [begin_ms, end_ms) with value; its
 * metering_sn is the one billing stored for the accepted push that matches where_extra (SQL,
 * "" for none), and that push was first sent inside its window (0-15 minutes after its end, by
 * billing's clock). */
static void assert_pushed_record(const char *instance, int64_t begin_ms, int64_t end_ms,
                                 const char *value, const char *where_extra)
{
    json_t *recs = market_records(instance);
    char want_begin[17], want_end[17];
    compact_utc(begin_ms, want_begin);
    compact_utc(end_ms, want_end);
    assert_string_equal(rec_str(recs, 0, "begin_time"), want_begin);
    assert_string_equal(rec_str(recs, 0, "end_time"), want_end);
    assert_string_equal(rec_str(recs, 0, "usage_value"), value);
    char *sql = xasprintf("SELECT metering_sn FROM billing.usage_pushes WHERE instance_id = $1"
                          " AND state = 'accepted'%s",
                          where_extra);
    char *sn = kc_sql_value(sql, 1, (const char *const[]){instance});
    free(sql);
    assert_non_null(sn);
    assert_string_equal(rec_str(recs, 0, "metering_sn"), sn);
    free(sn);
    json_decref(recs);
    assert_int_equal(sql_num("SELECT count(*) FROM billing.usage_pushes WHERE instance_id = $1"
                             " AND first_attempt_at >= end_time"
                             " AND first_attempt_at < end_time + interval '15 minutes'",
                             instance),
                     1);
}

static void fault(const char *json)
{
    kresp_t r = {0};
    assert_int_equal(kc_emulator("POST", "/_emulator/faults", json, &r), 0);
    assert_int_equal(r.status, 200);
    kresp_free(&r);
}

/* Meet the next count pushes of instance (-1: every push, until replaced) with the emulator's
 * fault mode; extra ("" for none) adds fields to the fault (",\"code\":...,"). */
static void fault_pushes(const char *instance, const char *mode, int count, const char *extra)
{
    char *f = xasprintf("{\"path\":\"usage-data\",\"mode\":\"%s\",\"count\":%d,"
                        "\"match\":\"%s\"%s}",
                        mode, count, instance, extra);
    fault(f);
    free(f);
}

static void clear_fault(void)
{
    fault("{\"path\":\"usage-data\",\"mode\":\"error\",\"count\":0}");
}

typedef struct {
    const char *sql;
    const char *arg;
    long long want;
    bool at_least;
} sql_wait_t;

static bool sql_is(void *arg)
{
    sql_wait_t *w = arg;
    long long v = sql_num(w->sql, w->arg);
    return w->at_least ? v >= w->want : v == w->want;
}

static void wait_sql_for(const char *sql, const char *arg, long long want, bool at_least)
{
    sql_wait_t w = {sql, arg, want, at_least};
    if (!kc_wait(WAIT_MS, 100, sql_is, &w))
        fail_msg("%s [%s] = %lld, want %s%lld", sql, arg ? arg : "", sql_num(sql, arg),
                 at_least ? ">= " : "", want);
}

static void wait_sql(const char *sql, const char *arg, long long want)
{
    wait_sql_for(sql, arg, want, false);
}

#define PUSH_STATE_COUNT(state)                                                                    \
    "SELECT count(*) FROM billing.usage_pushes WHERE instance_id = $1 AND state = '" state "'"

#define CTL(out, ...) kc_ctl(out, NULL, (const char *const[]){__VA_ARGS__, NULL})

/* ---- tests ---- */

/* An hour is pushed once its window opens (its end + 5 min), as one record with the hour's sum;
 * nothing before, nothing for an hour without usage, never a test-flag instance's. */
static void test_window(void **state)
{
    (void)state;
    int64_t h = hour_of(time_now_ms()) - 3 * HOUR_MS;
    set_clock(h + 30 * 60 * 1000);
    char *a = make_instance("ON_DEMAND", false, "hour");
    char *t = make_instance("ON_DEMAND", true, "hour");
    char *yearly = make_instance("PERIOD", false, "hour");
    add_usage_row(yearly, "1", h + 10 * 60 * 1000); /* not pay-per-use: never pushed */
    add_usage(a, "1.5", h + 10 * 60 * 1000);
    add_usage(a, "2.25", h + 20 * 60 * 1000);
    add_usage(a, "1", h + HOUR_MS + 2 * 60 * 1000); /* the next hour */
    add_usage(t, "7", h + 10 * 60 * 1000);

    set_clock(h + HOUR_MS + DELAY_MS - 20000); /* the hour has ended, the delay not */
    assert_market_stays(a, 0);
    assert_int_equal(sql_num("SELECT count(*) FROM billing.usage_pushes WHERE instance_id = $1", a),
                     0);

    past_window(h + HOUR_MS);
    wait_market(a, 1);
    /* pushed inside the window: 0-15 minutes after the hour */
    assert_pushed_record(a, h, h + HOUR_MS, "3.75", "");
    assert_market_stays(a, 1); /* the running hour waits */

    past_window(h + 3 * HOUR_MS); /* two more hours: one with usage */
    wait_market(a, 2);
    assert_market_stays(a, 2); /* the hour without usage sent nothing */
    json_t *recs = market_records(a);
    assert_string_equal(rec_str(recs, 1, "usage_value"), "1");
    json_decref(recs);
    const char *excluded = "SELECT count(*) FROM billing.usage_push_state WHERE instance_id = $1"
                           " AND state = 'excluded'";
    assert_int_equal(market_count(t), 0);
    assert_int_equal(sql_num(excluded, t), 1);
    assert_int_equal(market_count(yearly), 0);
    assert_int_equal(sql_num(excluded, yearly), 1);
    free(a);
    free(t);
    free(yearly);
}

/* Daily products: the UTC day is pushed at 00:05 the next day as one record. */
static void test_daily_window(void **state)
{
    (void)state;
    int64_t d = time_now_ms() / DAY_MS * DAY_MS - 2 * DAY_MS;
    /* inside the day while its usage arrives: the clock the test before left (its hours' window)
     * is days after this day's window, and the day would be pushed before its second record */
    set_clock(d + 30 * 60 * 1000);
    char *a = make_instance("ON_DEMAND", false, "day");
    add_usage(a, "10", d + HOUR_MS);
    add_usage(a, "0.0001", d + 20 * HOUR_MS);
    set_clock(d + DAY_MS + DELAY_MS - 20000);
    assert_market_stays(a, 0);
    past_window(d + DAY_MS);
    wait_market(a, 1);
    json_t *recs = market_records(a);
    assert_string_equal(rec_str(recs, 0, "usage_value"), "10.0001");
    char want_end[17];
    time_t e = (time_t)((d + DAY_MS) / 1000);
    strftime(want_end, sizeof want_end, "%Y%m%dT%H%M%SZ", gmtime(&e));
    assert_string_equal(rec_str(recs, 0, "end_time"), want_end);
    json_decref(recs);
    free(a);
}

/* One usage record of instance over [begin_ms, end_ms): the intake's HTTP status, its answer
 * in *body (caller frees) when body is not NULL. */
static int add_usage_interval(const char *instance, const char *quantity, int64_t begin_ms,
                              int64_t end_ms, char **body)
{
    char b[32], e[32];
    iso(begin_ms, b);
    iso(end_ms, e);
    char *crid = kc_uid("R");
    char *req = xasprintf("{\"records\":[{\"instanceId\":\"%s\",\"recordId\":\"%s\","
                          "\"quantity\":\"%s\",\"begin\":\"%s\",\"end\":\"%s\"}]}",
                          instance, crid, quantity, b, e);
    kresp_t r = {0};
    assert_int_equal(kc_admin("POST", "/v1/usage", suite_get("KOOISV_METER_TOKEN"), req, &r), 0);
    int status = r.status;
    if (body)
        *body = xstrdup(r.body ? r.body : "");
    kresp_free(&r);
    free(req);
    free(crid);
    return status;
}

static char *granularity_of(const char *instance)
{
    return kc_sql_value("SELECT usage_granularity FROM billing.instances WHERE instance_id = $1", 1,
                        (const char *const[]){instance});
}

static void assert_granularity(const char *instance, const char *want)
{
    char *g = granularity_of(instance);
    assert_non_null(g);
    assert_string_equal(g, want);
    free(g);
}

/* A product of KOOISV_BILLING_DAILY_PRODUCTS, from its order to the marketplace: the ledger
 * records its instance as billed daily; the day's usage, reported over several hours (an
 * interval of four hours among them), is pushed as exactly one record for the UTC day in the
 * 00:00-00:15 window of the next day, nothing before (not at 23:50, not at 00:04); an interval
 * crossing midnight is refused. An hourly product's instance in the same run is pushed per hour
 * as before, and refuses an interval that a daily one takes. */
static void test_daily_product_from_orders(void **state)
{
    (void)state;
    int64_t d = time_now_ms() / DAY_MS * DAY_MS - 2 * DAY_MS;
    set_clock(d + 30 * 60 * 1000);
    char *daily = bt_ondemand_instance(DAILY_PRODUCT);
    char *hourly = bt_ondemand_instance(HOURLY_PRODUCT);
    bt_wait_consumed(daily);
    bt_wait_consumed(hourly);
    assert_granularity(daily, "day");
    assert_granularity(hourly, "hour");

    add_usage(daily, "1.5", d + HOUR_MS + 10 * 60 * 1000);
    assert_int_equal(add_usage_interval(daily, "1", d + 2 * HOUR_MS, d + 6 * HOUR_MS, NULL), 200);
    add_usage(daily, "0.25", d + 22 * HOUR_MS + 59 * 60 * 1000);
    add_usage(hourly, "3", d + HOUR_MS + 10 * 60 * 1000);
    add_usage(hourly, "4", d + 5 * HOUR_MS + 10 * 60 * 1000);
    /* bad input: a daily interval crossing midnight, an hourly one crossing the hour */
    char *body = NULL;
    assert_int_equal(add_usage_interval(daily, "1", d + 23 * HOUR_MS, d + DAY_MS + HOUR_MS, &body),
                     400);
    assert_non_null(strstr(body, "interval crosses the day it begins in"));
    assert_non_null(strstr(body, "nothing stored"));
    free(body);
    assert_int_equal(add_usage_interval(hourly, "1", d + 2 * HOUR_MS, d + 6 * HOUR_MS, &body), 400);
    assert_non_null(strstr(body, "interval crosses the hour it begins in"));
    free(body);

    /* 23:50: the hourly instance's hours are pushed, the day is still running */
    set_clock(d + 23 * HOUR_MS + 50 * 60 * 1000);
    wait_market(hourly, 2);
    assert_market_stays(daily, 0);
    assert_market_stays(hourly, 2);
    /* 00:04:40 the next day: the day has ended, its delay not */
    set_clock(d + DAY_MS + DELAY_MS - 20000);
    assert_market_stays(daily, 0);
    assert_int_equal(
        sql_num("SELECT count(*) FROM billing.usage_pushes WHERE instance_id = $1", daily), 0);
    /* 00:05:20: the day, as one record */
    past_window(d + DAY_MS);
    wait_market(daily, 1);
    assert_market_stays(daily, 1);
    /* first sent inside the day's window: 00:00-00:15 UTC the next day */
    assert_pushed_record(daily, d, d + DAY_MS, "2.75",
                         " AND granularity = 'day' AND record_count = 3");
    /* the hourly instance: one record per hour, unchanged */
    json_t *recs = market_records(hourly);
    char want_begin[17], want_end[17];
    assert_int_equal(json_array_size(recs), 2);
    compact_utc(d + HOUR_MS, want_begin);
    compact_utc(d + 2 * HOUR_MS, want_end);
    assert_string_equal(rec_str(recs, 0, "begin_time"), want_begin);
    assert_string_equal(rec_str(recs, 0, "end_time"), want_end);
    assert_string_equal(rec_str(recs, 0, "usage_value"), "3");
    assert_string_equal(rec_str(recs, 1, "usage_value"), "4");
    json_decref(recs);
    free(daily);
    free(hourly);
}

/* Restart billing with the group's settings plus extra (NULL: the group's alone). */
static int restart_billing_with(const char *extra)
{
    char *env = xasprintf("%s%s", group_env, extra ? extra : "");
    write_billing_env(env);
    free(env);
    return kc_suite("restart", "billing");
}

/* billing's log from offset on (caller frees). */
static char *billing_log_from(size_t offset)
{
    char *path = suite_path("logs/billing.log");
    size_t len = 0;
    char *log = config_read_file(path, &len);
    free(path);
    char *out = xstrdup(log && len > offset ? log + offset : "");
    free(log);
    return out;
}

static size_t billing_log_size(void)
{
    char *path = suite_path("logs/billing.log");
    struct stat st;
    size_t n = stat(path, &st) == 0 ? (size_t)st.st_size : 0;
    free(path);
    return n;
}

/* A malformed KOOISV_BILLING_DAILY_PRODUCTS: billing refuses to start, saying which entry. A
 * change of the setting applies to instances billing learns of afterwards; one it knew keeps
 * its granularity (its usage is never re-bucketed). */
static void test_daily_setting(void **state)
{
    (void)state;
    char *known = bt_ondemand_instance(DAILY_PRODUCT);
    bt_wait_consumed(known);
    assert_granularity(known, "day");

    static const struct {
        const char *value, *says;
    } bad[] = {
        {"OFFI0001,OFFI;0002", "entry 2 (\"OFFI;0002\") is not a product id"},
        {"OFFI0001,,OFFI0002", "entry 2 is empty"},
        {"OFFI0001,", "entry 2 is empty"},
        {"OFFI/\xc3\xa9", "entry 1 (\"OFFI/"},
        {"OFFI00000000000000000000000000000000000000000000000000000000000001",
         "is not a product id"}, /* 65 characters */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t from = billing_log_size();
        char *extra = xasprintf("KOOISV_BILLING_DAILY_PRODUCTS=%s\n", bad[i].value);
        assert_int_not_equal(restart_billing_with(extra), 0);
        free(extra);
        char *log = billing_log_from(from);
        if (!strstr(log, "kooisv-billing: KOOISV_BILLING_DAILY_PRODUCTS: ") ||
            !strstr(log, bad[i].says))
            fail_msg("%s: billing's log does not say \"%s\":\n%s", bad[i].value, bad[i].says, log);
        free(log);
    }

    /* the product is no longer billed daily: the instance billing knew stays daily, even after
     * an event that names the product again; a new instance of it is hourly */
    assert_int_equal(restart_billing_with("KOOISV_BILLING_DAILY_PRODUCTS=\n"), 0);
    bt_status(known, "FREEZE", NULL);
    bt_wait_consumed(known);
    assert_int_equal(bt_lines(known, "freeze"), 1);
    assert_granularity(known, "day");
    char *fresh = bt_ondemand_instance(DAILY_PRODUCT);
    bt_wait_consumed(fresh);
    assert_granularity(fresh, "hour");
    assert_int_equal(restart_billing_with(NULL), 0);
    free(known);
    free(fresh);
}

/* The calls of the marketplace's log (the last 100) that carry instance; caller decrefs. */
static json_t *calls_of(const char *instance)
{
    kresp_t r = {0};
    assert_int_equal(kc_emulator("GET", "/_emulator/calls?path=usage-data&limit=100", NULL, &r), 0);
    json_t *out = json_array();
    size_t i;
    json_t *call;
    json_array_foreach(json_object_get(r.json, "calls"), i, call)
    {
        const char *body = json_string_value(json_object_get(call, "body"));
        if (body && strstr(body, instance))
            json_array_append(out, call);
    }
    kresp_free(&r);
    return out;
}

typedef struct {
    const char *instance;
    const char *mode;
} fault_wait_t;

static bool fault_seen(void *arg)
{
    fault_wait_t *w = arg;
    json_t *calls = calls_of(w->instance);
    size_t i;
    json_t *call;
    bool seen = false;
    json_array_foreach(calls, i, call)
    {
        const char *m = json_string_value(json_object_get(call, "fault"));
        seen |= m && strcmp(m, w->mode) == 0;
    }
    json_decref(calls);
    return seen;
}

static void wait_fault_seen(const char *instance, const char *mode)
{
    fault_wait_t w = {instance, mode};
    if (!kc_wait(WAIT_MS, 100, fault_seen, &w))
        fail_msg("no push of %s met the fault %s", instance, mode);
}

/* Rate limiting, a 5xx, a dropped connection, a timeout: retried with backoff, the same
 * metering_sn each time, until accepted; a restart of billing meanwhile changes nothing. Each
 * fault holds until the next replaces it, so no attempt slips through between them. */
static void test_retries(void **state)
{
    (void)state;
    int64_t h = hour_of(time_now_ms()) - 5 * HOUR_MS;
    char *a = hour_usage_instance(h, "4");
    fault_pushes(a, "error", -1,
                 ",\"code\":\"MKT.0250\",\"http_status\":429,\"message\":\"rate limited\"");
    past_window(h + HOUR_MS);
    wait_fault_seen(a, "error");
    /* billing records the refusal after the marketplace has seen the call: wait for it */
    wait_sql("SELECT count(*) FROM billing.usage_pushes WHERE instance_id = $1"
             " AND state = 'pending' AND attempts >= 1 AND last_code = 'MKT.0250'",
             a, 1);
    char *code;
    fault_pushes(a, "http500", -1, "");
    wait_fault_seen(a, "http500");
    fault_pushes(a, "drop", -1, "");
    assert_int_equal(kc_suite("restart", "billing"), 0);
    wait_fault_seen(a, "drop");
    /* an answer later than KOOISV_MARKETPLACE_TIMEOUT_MS (2 s here) is a timeout */
    fault_pushes(a, "slow", -1, ",\"delay_ms\":3000");
    wait_fault_seen(a, "slow");
    code = kc_sql_value("SELECT last_code FROM billing.usage_pushes WHERE instance_id = $1"
                        " AND state = 'pending'",
                        1, (const char *const[]){a});
    assert_non_null(code);
    assert_string_equal(code, "NETWORK");
    free(code);
    clear_fault();
    wait_sql(PUSH_STATE_COUNT("accepted"), a, 1);
    assert_int_equal(market_count(a), 1);
    /* every attempt is in the marketplace's log, in the faults' order, all with the one
     * metering_sn fixed before the first */
    char *sn = kc_sql_value("SELECT metering_sn FROM billing.usage_pushes WHERE instance_id = $1",
                            1, (const char *const[]){a});
    static const char *const order[] = {"error", "http500", "drop", "slow", "-"};
    json_t *calls = calls_of(a);
    size_t i, phase = 0;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        assert_non_null(strstr(json_string_value(json_object_get(call, "body")), sn));
        const char *m = json_string_value(json_object_get(call, "fault"));
        while (phase < 5 && strcmp(order[phase], m ? m : "-") != 0)
            phase++;
        assert_true(phase < 5); /* no mode out of order */
    }
    assert_int_equal(phase, 4); /* ends with the success */
    assert_true(json_array_size(calls) >= 5);
    assert_int_equal(sql_num("SELECT attempts FROM billing.usage_pushes WHERE instance_id = $1", a),
                     (long long)json_array_size(calls));
    json_decref(calls);
    free(sn);
    free(a);
}

/* A refusal naming its record refuses that record only; one naming none is narrowed down by
 * halving the batch. Both are kept with the marketplace's code and message, listed by
 * kooisvctl usage failed, and re-driven with their metering_sn unchanged. */
static void test_refusals_and_redrive(void **state)
{
    (void)state;
    int64_t h = hour_of(time_now_ms()) - 7 * HOUR_MS;
    char *ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = hour_usage_instance(h, "2");
    char *ok1 = ids[0], *unknown = ids[1], *bad = ids[2], *ok2 = ids[3];
    /* the marketplace knows every instance but `unknown` (MKT.9001 names it) */
    char *known = xasprintf("{\"instances\":[\"%s\",\"%s\",\"%s\"]}", ok1, bad, ok2);
    kresp_t r = {0};
    assert_int_equal(kc_emulator("POST", "/_emulator/usage/instances", known, &r), 0);
    kresp_free(&r);
    free(known);
    /* and refuses `bad` without saying which record */
    fault_pushes(bad, "error", -1,
                 ",\"code\":\"MKT.9002\",\"http_status\":400,\"message\":\"invalid usage\"");
    past_window(h + HOUR_MS);
    wait_market(ok1, 1);
    wait_market(ok2, 1);
    wait_sql(PUSH_STATE_COUNT("refused"), unknown, 1);
    wait_sql(PUSH_STATE_COUNT("refused"), bad, 1);
    char *msg = kc_sql_value("SELECT last_code || ' ' || last_message FROM billing.usage_pushes"
                             " WHERE instance_id = $1",
                             1, (const char *const[]){unknown});
    assert_non_null(strstr(msg, "MKT.9001 usage_records["));
    free(msg);
    msg = kc_sql_value("SELECT last_code || ' ' || last_message FROM billing.usage_pushes"
                       " WHERE instance_id = $1",
                       1, (const char *const[]){bad});
    assert_string_equal(msg, "MKT.9002 invalid usage");
    free(msg);

    char *out = NULL;
    assert_int_equal(CTL(&out, "usage", "failed", "--state", "refused"), 0);
    assert_non_null(strstr(out, unknown));
    assert_non_null(strstr(out, bad));
    assert_non_null(strstr(out, "MKT.9001"));
    free(out);
    assert_int_equal(CTL(&out, "usage", "failed", "--state", "nonsense"), 1);
    free(out);

    /* the marketplace learns the instance; the operator re-drives the one record */
    kc_emulator("POST", "/_emulator/usage/instances", "{\"instances\":null}", &r);
    kresp_free(&r);
    char *sn = kc_sql_value("SELECT metering_sn FROM billing.usage_pushes WHERE instance_id = $1",
                            1, (const char *const[]){unknown});
    char *id = kc_sql_value("SELECT id FROM billing.usage_pushes WHERE instance_id = $1", 1,
                            (const char *const[]){unknown});
    assert_int_equal(CTL(&out, "usage", "redrive", id), 0);
    free(out);
    wait_market(unknown, 1);
    json_t *recs = market_records(unknown);
    assert_string_equal(rec_str(recs, 0, "metering_sn"), sn);
    json_decref(recs);
    /* an accepted record is not re-driven; a bad id is refused */
    assert_int_equal(CTL(&out, "usage", "redrive", id), 1);
    free(out);
    assert_int_equal(CTL(&out, "usage", "redrive", "12x"), 1);
    free(out);
    free(id);
    free(sn);
    assert_int_equal(market_count(bad), 0);
    clear_fault();
    assert_int_equal(CTL(&out, "usage", "redrive", "all"), 0);
    free(out);
    wait_market(bad, 1);
    wait_sql(PUSH_STATE_COUNT("accepted"), bad, 1);
    for (int i = 0; i < 4; i++)
        free(ids[i]);
}

/* A record that keeps failing goes to the dead letter at KOOISV_USAGE_MAX_ATTEMPTS (12 here),
 * one whose next attempt would come too close to the 21-day limit at once. */
static void test_dead_letter(void **state)
{
    (void)state;
    int64_t h = hour_of(time_now_ms()) - 9 * HOUR_MS;
    char *a = hour_usage_instance(h, "3");
    fault_pushes(a, "http500", -1, "");
    past_window(h + HOUR_MS);
    wait_sql(PUSH_STATE_COUNT("dead"), a, 1);
    assert_int_equal(sql_num("SELECT attempts FROM billing.usage_pushes WHERE instance_id = $1", a),
                     12);
    /* usage begun almost 21 days ago: one failure and it is dead */
    int64_t now = time_now_ms();
    char *old = make_instance("ON_DEMAND", false, "hour");
    add_usage_row(old, "1", now - 21 * DAY_MS + 5 * 60 * 1000);
    fault_pushes(old, "http500", -1, "");
    set_clock(now);
    wait_sql(PUSH_STATE_COUNT("dead"), old, 1);
    assert_int_equal(
        sql_num("SELECT attempts FROM billing.usage_pushes WHERE instance_id = $1", old), 1);
    free(old);
    char *out = NULL;
    assert_int_equal(CTL(&out, "usage", "failed", "--state", "dead"), 0);
    assert_non_null(strstr(out, a));
    assert_non_null(strstr(out, "HTTP_500"));
    free(out);
    assert_int_equal(CTL(&out, "billing", "status", "--json"), 0);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    assert_true(json_integer_value(json_object_get(json_object_get(doc, "overall"), "dead")) >= 1);
    json_decref(doc);
    free(out);
    clear_fault();
    char *id = kc_sql_value("SELECT id FROM billing.usage_pushes WHERE instance_id = $1", 1,
                            (const char *const[]){a});
    assert_int_equal(CTL(&out, "usage", "redrive", id), 0);
    free(out);
    free(id);
    wait_market(a, 1);
    wait_sql(PUSH_STATE_COUNT("accepted"), a, 1);
    free(a);
}

/* kill -9 of billing while its request is out: nothing was decided, the restarted billing sends
 * the same record again (same metering_sn and interval) and the hour is counted once. */
static void test_kill_mid_push(void **state)
{
    (void)state;
    int64_t h = hour_of(time_now_ms()) - 11 * HOUR_MS;
    char *a = hour_usage_instance(h, "5");
    fault_pushes(a, "slow", 1, ",\"delay_ms\":1500");
    past_window(h + HOUR_MS);
    /* the record is sealed and its request out (the row lock held): the emulator has it and
     * holds its answer for 1.5 s; billing is killed at once */
    wait_sql("SELECT count(*) FROM billing.usage_pushes WHERE instance_id = $1", a, 1);
    wait_fault_seen(a, "slow");
    int killed = kc_suite("kill", "billing");
    long long pending = sql_num(PUSH_STATE_COUNT("pending"), a);
    long long attempts =
        sql_num("SELECT attempts FROM billing.usage_pushes WHERE instance_id = $1", a);
    /* billing back before any check, so that a failed one leaves no later test without it */
    assert_int_equal(kc_suite("start-svc", "billing"), 0);
    assert_int_equal(killed, 0);
    assert_int_equal(pending, 1);
    assert_int_equal(attempts, 0);
    wait_sql(PUSH_STATE_COUNT("accepted"), a, 1);
    assert_int_equal(market_count(a), 1);
    json_t *recs = market_records(a);
    assert_string_equal(rec_str(recs, 0, "usage_value"), "5");
    json_decref(recs);
    free(a);
}

/* Late usage (its hour was pushed) waits for the next window and goes as a record of its own
 * (interval begins a second later); clock steps back and forth neither repeat nor lose it. */
static void test_late_usage_and_clock_steps(void **state)
{
    (void)state;
    int64_t h = hour_of(time_now_ms()) - 13 * HOUR_MS;
    char *a = hour_usage_instance(h, "1");
    past_window(h + HOUR_MS);
    wait_market(a, 1);
    set_clock(h + 40 * 60 * 1000);           /* a step back into the pushed hour */
    add_usage(a, "2.5", h + 50 * 60 * 1000); /* late: arrives after the push */
    assert_market_stays(a, 1);
    assert_int_equal(sql_num("SELECT count(*) FROM billing.usage_pushes WHERE instance_id = $1", a),
                     1);
    /* the next window after its arrival (real time, as stored: an hour may have begun since) */
    char *arrived = kc_sql_value("SELECT (extract(epoch FROM max(received_at)) * 1000)::bigint"
                                 " FROM billing.usage_records WHERE instance_id = $1",
                                 1, (const char *const[]){a});
    assert_non_null(arrived);
    int64_t next = hour_of(strtoll(arrived, NULL, 10)) + HOUR_MS + DELAY_MS;
    free(arrived);
    set_clock(next - 20000);
    assert_market_stays(a, 1);
    set_clock(next + 20000);
    wait_market(a, 2);
    json_t *recs = market_records(a);
    assert_string_equal(rec_str(recs, 1, "usage_value"), "2.5");
    char want_begin[17];
    time_t b = (time_t)(h / 1000 + 1);
    strftime(want_begin, sizeof want_begin, "%Y%m%dT%H%M%SZ", gmtime(&b));
    assert_string_equal(rec_str(recs, 1, "begin_time"), want_begin);
    assert_string_not_equal(rec_str(recs, 1, "metering_sn"), rec_str(recs, 0, "metering_sn"));
    json_decref(recs);
    assert_int_equal(sql_num("SELECT count(*) FROM billing.usage_pushes WHERE instance_id = $1"
                             " AND late_seq = 1 AND state = 'accepted'",
                             a),
                     1);
    set_clock(h); /* far back: nothing moves */
    assert_market_stays(a, 2);
    assert_int_equal(sql_num("SELECT count(*) FROM billing.usage_push_state WHERE instance_id = $1"
                             " AND state = 'accepted'",
                             a),
                     2);
    free(a);
}

/* A clock stepped back while a record waits for its retry: the retry time it was given is
 * further ahead than any backoff, so the record is sent at once, not hours later. */
static void test_clock_back_while_retrying(void **state)
{
    (void)state;
    int64_t h = hour_of(time_now_ms()) - 19 * HOUR_MS;
    char *a = hour_usage_instance(h, "6");
    fault_pushes(a, "error", -1, ",\"code\":\"MKT.0250\",\"http_status\":429");
    past_window(h + HOUR_MS);
    const char *attempts = "SELECT attempts FROM billing.usage_pushes WHERE instance_id = $1";
    wait_sql_for(attempts, a, 1, true);
    set_clock(h - 2 * HOUR_MS); /* two hours back */
    clear_fault();
    wait_sql(PUSH_STATE_COUNT("accepted"), a, 1);
    assert_int_equal(market_count(a), 1);
    free(a);
}

/* The second replica: billing's own environment, another bind port. */
static void start_replica2(void)
{
    replica2 = kc_spawn_replica("billing");
    assert_true(replica2 > 0);
}

typedef struct {
    const char *prefix;
    long long want;
} prefix_wait_t;

/* Two replicas at once, 2,400 records due together: every record sent exactly once, in
 * requests of at most 1000, each (instance, hour) sealed once. */
static void test_two_replicas_batching(void **state)
{
    (void)state;
    int64_t h = hour_of(time_now_ms()) - 15 * HOUR_MS;
    set_clock(h + 30 * 60 * 1000);
    char *prefix = kc_uid("BULK");
    const char *p[] = {prefix};
    assert_int_equal(
        kc_sql_exec("INSERT INTO billing.instances (instance_id, charging_mode, test_flag, state,"
                    " created_at, updated_at) SELECT $1 || '-' || g, 'ON_DEMAND', false, 'active',"
                    " now(), now() FROM generate_series(1, 1200) g",
                    1, p),
        1200);
    char used[32];
    iso(h + 60 * 1000, used);
    const char *q[] = {prefix, used};
    assert_int_equal(
        kc_sql_exec(
            "INSERT INTO billing.usage_records (instance_id, client_record_id, quantity,"
            " used_begin, used_end, bucket_start, request_id)"
            " SELECT $1 || '-' || g, 'r' || k, 1.5, $2::timestamptz + k * interval '1 hour',"
            "  $2::timestamptz + k * interval '1 hour',"
            "  date_trunc('hour', $2::timestamptz + k * interval '1 hour'), 'test-push'"
            " FROM generate_series(1, 1200) g, generate_series(0, 1) k",
            2, q),
        2400);
    start_replica2();
    past_window(h + 2 * HOUR_MS);
    char *like = xasprintf("%s-%%", prefix);
    wait_sql("SELECT count(*) FROM billing.usage_pushes WHERE instance_id LIKE $1"
             " AND state = 'accepted'",
             like, 2400);
    assert_int_equal(sql_num("SELECT count(*) FROM billing.usage_pushes WHERE instance_id LIKE $1"
                             " AND late_seq > 0",
                             like),
                     0);
    /* the marketplace's view: each record once, no request above 1000 */
    kresp_t r = {0};
    assert_int_equal(kc_emulator("GET", "/_emulator/calls?path=usage-data&limit=100", NULL, &r), 0);
    size_t i, total = 0, requests = 0;
    json_t *call;
    json_t *sns = json_object();
    json_array_foreach(json_object_get(r.json, "calls"), i, call)
    {
        const char *body = json_string_value(json_object_get(call, "body"));
        if (!body || !strstr(body, prefix))
            continue;
        json_t *doc = json_loads(body, 0, NULL);
        json_t *recs = json_object_get(doc, "usage_records");
        assert_true(json_array_size(recs) <= 1000);
        requests++;
        size_t j;
        json_t *rec;
        json_array_foreach(recs, j, rec)
        {
            const char *sn = json_string_value(json_object_get(rec, "metering_sn"));
            assert_null(json_object_get(sns, sn)); /* never sent twice */
            json_object_set_new(sns, sn, json_true());
            total++;
        }
        json_decref(doc);
        assert_int_equal(json_integer_value(json_object_get(call, "duplicates")), 0);
    }
    assert_int_equal(total, 2400);
    assert_true(requests >= 3);
    json_decref(sns);
    kresp_free(&r);
    stop_replica2();
    free(like);
    free(prefix);
}

static long long overall_received(void)
{
    char *out = NULL;
    assert_int_equal(CTL(&out, "billing", "status", "--json"), 0);
    json_t *doc = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(doc);
    long long n = json_integer_value(json_object_get(json_object_get(doc, "overall"), "received"));
    json_decref(doc);
    return n;
}

/* billing status through kooisvctl: one hour's counts and the overall series (the usage of the
 * last 22 days). */
static void test_status(void **state)
{
    (void)state;
    int64_t h = hour_of(time_now_ms()) - 17 * HOUR_MS;
    char *a = hour_usage_instance(h, "1");
    add_usage(a, "2", h + 120 * 1000);
    char from[32], to[32];
    iso(h, from);
    iso(h + HOUR_MS, to);
    char *out = NULL;
    assert_int_equal(CTL(&out, "billing", "status", "--json", "--from", from, "--to", to), 0);
    json_t *doc = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(doc);
    json_t *hour = json_array_get(json_object_get(doc, "hours"), 0);
    assert_non_null(hour);
    assert_true(json_integer_value(json_object_get(hour, "received")) >= 2);
    assert_true(json_integer_value(json_object_get(hour, "unsealed")) >= 2);
    assert_true(json_integer_value(json_object_get(hour, "waiting")) >= 2);
    json_t *overall = json_object_get(doc, "overall");
    assert_true(json_integer_value(json_object_get(overall, "oldestUnacceptedAgeSeconds")) >= 0);
    assert_true(json_array_size(json_object_get(doc, "series")) >= 10);
    json_decref(doc);
    past_window(h + HOUR_MS);
    wait_sql(PUSH_STATE_COUNT("accepted"), a, 1);
    assert_int_equal(CTL(&out, "billing", "status", "--json", "--from", from, "--to", to), 0);
    doc = json_loads(out, 0, NULL);
    free(out);
    hour = json_array_get(json_object_get(doc, "hours"), 0);
    assert_int_equal(json_integer_value(json_object_get(hour, "unsealed")), 0);
    assert_true(json_integer_value(json_object_get(hour, "accepted")) >= 2);
    assert_true(json_integer_value(json_object_get(hour, "pushed")) >= 2);
    json_decref(doc);
    /* the table: a header, the bucket, the overall line */
    assert_int_equal(CTL(&out, "billing", "status", "--from", from, "--to", to), 0);
    assert_non_null(strstr(out, "BUCKET (UTC)"));
    char bucket[24];
    snprintf(bucket, sizeof bucket, "%.19sZ", from); /* the hour, without milliseconds */
    assert_non_null(strstr(out, bucket));
    assert_non_null(strstr(out, "push records: "));
    free(out);
    assert_int_equal(CTL(&out, "billing", "status", "--from", "yesterday"), 1);
    free(out);
    /* overall counts the usage of the last 22 days only: an older row is not in it, a new one is */
    set_clock(time_now_ms());
    long long before = overall_received();
    char *old = make_instance("PERIOD", false, "hour"); /* excluded: never pushed */
    add_usage_row(old, "1", time_now_ms() - 23 * DAY_MS);
    assert_int_equal(overall_received(), before);
    add_usage_row(old, "1", time_now_ms() - 21 * DAY_MS);
    assert_int_equal(overall_received(), before + 1);
    free(old);
    free(a);
}

/* The statements that mark pushes by their ids (accepted, refused, retried) find them by the
 * primary key, whatever the statistics say. "state = 'pending'" fits the due index
 * (usage_pushes_due, of the pending pushes): while the statistics said that index was nearly
 * empty, their generic plans walked all of it for each id, and a backlog of pending pushes is
 * all in it. A copy of the table with 20,000 accepted pushes, analysed, gives those
 * statistics. */
static void test_push_by_id_plans(void **state)
{
    (void)state;
    PGconn *c = PQconnectdb(suite_get("KOOISV_PG_SUPER_DSN"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char *schema = xasprintf("push_plan_%ld", (long)getpid());
    char *sql = xasprintf(
        "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s;"
        " CREATE TABLE %s.usage_pushes (LIKE billing.usage_pushes INCLUDING ALL);"
        " INSERT INTO %s.usage_pushes (metering_sn, instance_id, bucket_start, granularity,"
        "  late_seq, begin_time, end_time, record_time, usage_value, record_count, state,"
        "  next_attempt_at)"
        "  SELECT 'sn' || g, 'i' || g, now(), 'hour', 0, now(), now() + interval '1 hour', now(),"
        "  1, 1, 'accepted', now() FROM generate_series(1, 20000) g;"
        " ANALYZE %s.usage_pushes",
        schema, schema, schema, schema, schema);
    kplan_exec(c, sql);
    free(sql);
    size_t n = 0;
    const pg_stmt_t *stmts = push_statements(&n);
    char *wrong = xstrdup("");
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(stmts[i].name, "push_accepted") != 0 &&
            strcmp(stmts[i].name, "push_refused") != 0 && strcmp(stmts[i].name, "push_retry") != 0)
            continue;
        checked++;
        kplan_expect(c, &stmts[i], "billing", schema, "usage_pushes", "usage_pushes_pkey", &wrong);
    }
    kplan_done(c, schema);
    assert_int_equal(checked, 3);
    if (*wrong)
        fail_msg("statements that read a push by its id through another index:%s", wrong);
    free(wrong);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_by_id_plans),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_daily_window),
        cmocka_unit_test(test_daily_product_from_orders),
        cmocka_unit_test(test_daily_setting),
        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_refusals_and_redrive),
        cmocka_unit_test(test_dead_letter),
        cmocka_unit_test(test_kill_mid_push),
        cmocka_unit_test(test_late_usage_and_clock_steps),
        cmocka_unit_test(test_clock_back_while_retrying),
        cmocka_unit_test(test_two_replicas_batching),
        cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
