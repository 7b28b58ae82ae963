#include "order_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "config.h"
#include "xmalloc.h"

static void vbasic(kresp_t *r, const char *fmt, va_list ap)
{
    json_error_t err;
    json_t *body = json_vpack_ex(&err, 0, fmt, ap);
    if (!body)
        fail_msg("bad test body format: %s", err.text);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    memset(r, 0, sizeof *r);
    if (kc_basic(text, r) != 0)
        fail_msg("no answer to %s: %s", text, r->error);
    if (r->status != 200 || !r->body_sign_ok || !r->code)
        fail_msg("%s -> HTTP %d sign_ok=%d body %s", text, r->status, r->body_sign_ok, r->body);
    free(text);
}

void ot_basic(kresp_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vbasic(r, fmt, ap);
    va_end(ap);
}

void ot_expect(const char *want, kresp_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vbasic(r, fmt, ap);
    va_end(ap);
    if (strcmp(r->code, want) != 0)
        fail_msg("want %s, got %s", want, r->body);
}

char *ot_new_instance(const char *order_id, const char *line_id, const char *business_id,
                      const char *test_flag)
{
    kresp_t r;
    if (test_flag)
        ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s}", "activity", "newInstance", "orderId",
                  order_id, "orderLineId", line_id, "businessId", business_id, "testFlag",
                  test_flag);
    else
        ot_expect("000000", &r, "{s:s, s:s, s:s, s:s}", "activity", "newInstance", "orderId",
                  order_id, "orderLineId", line_id, "businessId", business_id);
    const char *id = json_string_value(json_object_get(r.json, "instanceId"));
    if (!id || !*id)
        fail_msg("newInstance without instanceId: %s", r.body);
    char *copy = xstrdup(id);
    kresp_free(&r);
    return copy;
}

json_t *ot_query(const char *ids)
{
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s}", "activity", "queryInstance", "instanceId", ids);
    json_t *info = json_object_get(r.json, "info");
    if (!json_is_array(info))
        fail_msg("queryInstance without info array: %s", r.body);
    json_incref(info);
    kresp_free(&r);
    return info;
}

json_t *ot_info_of(json_t *info, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(info, i, e)
    {
        const char *got = json_string_value(json_object_get(e, "instanceId"));
        if (got && strcmp(got, id) == 0)
            return e;
    }
    return NULL;
}

typedef struct {
    const char *id;
    const char *test_flag; /* the instance's own: a debug call sees only test instances */
    json_t *app;
} wait_t;

/* queryInstance of ids with testFlag test_flag: the info array, or NULL while the service
 * answers 000005 (the marketplace retries those too). */
static json_t *query_tolerant(const char *ids, const char *test_flag)
{
    kresp_t r;
    ot_basic(&r, "{s:s, s:s, s:s}", "activity", "queryInstance", "instanceId", ids, "testFlag",
             test_flag);
    json_t *info = NULL;
    if (strcmp(r.code, "000000") == 0) {
        info = json_object_get(r.json, "info");
        if (!json_is_array(info))
            fail_msg("queryInstance without info array: %s", r.body);
        json_incref(info);
    } else if (strcmp(r.code, "000005") != 0) {
        fail_msg("queryInstance %s: %s", ids, r.body);
    }
    kresp_free(&r);
    return info;
}

static bool has_app_info(void *arg)
{
    wait_t *w = arg;
    json_t *info = query_tolerant(w->id, w->test_flag);
    json_t *app = info ? json_object_get(ot_info_of(info, w->id), "appInfo") : NULL;
    if (app)
        w->app = json_incref(app);
    json_decref(info);
    return app != NULL;
}

/* Every gateway thread has its own connection to the service, each reconnecting on its own:
 * only a run of answers in a row says that all of them are back. */
static bool service_answers(void *arg)
{
    int *in_a_row = arg;
    json_t *info = query_tolerant("probe-none", "0");
    json_decref(info);
    *in_a_row = info ? *in_a_row + 1 : 0;
    return *in_a_row >= 20;
}

void ot_wait_service(int timeout_ms)
{
    int in_a_row = 0;
    if (!kc_wait(timeout_ms, 20, service_answers, &in_a_row))
        fail_msg("the order service is not reachable through the gateway after %d ms", timeout_ms);
}

json_t *ot_wait_provisioned(const char *id, int timeout_ms)
{
    char *test = ot_sql("SELECT CASE WHEN test_flag THEN '1' ELSE '0' END FROM orders.instances"
                        " WHERE instance_id = $1",
                        id, NULL);
    wait_t w = {.id = id, .test_flag = test ? test : "0"};
    bool provisioned = kc_wait(timeout_ms, 200, has_app_info, &w);
    free(test);
    if (!provisioned) {
        char *job = ot_sql("SELECT state || ' attempts=' || attempts || ' error=' ||"
                           " coalesce(last_error, '-') FROM orders.jobs WHERE instance_id = $1"
                           " AND kind = 'provision'",
                           id, NULL);
        fail_msg("instance %s not provisioned within %d ms (job: %s)", id, timeout_ms,
                 job ? job : "none");
    }
    return w.app;
}

char *ot_sql(const char *sql, const char *a, const char *b)
{
    const char *p[] = {a, b};
    int n = b ? 2 : a ? 1 : 0;
    return kc_sql_value(sql, n, p);
}

long long ot_sql_num(const char *sql, const char *a, const char *b)
{
    char *v = ot_sql(sql, a, b);
    if (!v)
        fail_msg("no value for %s", sql);
    long long n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

char *ot_provisioned(const char *order_id, const char *test_flag, int timeout_ms)
{
    char *order = order_id ? xstrdup(order_id) : ot_order_id(), *line = ot_line_of(order);
    char *biz = kc_uid("biz");
    char *id = ot_new_instance(order, line, biz, test_flag);
    json_decref(ot_wait_provisioned(id, timeout_ms));
    free(order);
    free(line);
    free(biz);
    return id;
}

void ot_fault(const char *json)
{
    kresp_t r = {0};
    if (kc_emulator("POST", "/_emulator/faults", json, &r) != 0 || r.status != 200)
        fail_msg("emulator refused fault %s: %d %s", json, r.status, r.body ? r.body : r.error);
    kresp_free(&r);
}

void ot_order_register(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *body = NULL;
    if (vasprintf(&body, fmt, ap) < 0)
        fail_msg("out of memory");
    va_end(ap);
    kresp_t r = {0};
    if (kc_emulator("POST", "/_emulator/orders", body, &r) != 0 || r.status != 200)
        fail_msg("emulator refused order %s: %d %s", body, r.status, r.body ? r.body : r.error);
    kresp_free(&r);
    free(body);
}

void ot_clear_faults(void)
{
    ot_fault("{\"path\":\"order/query\",\"mode\":\"error\",\"count\":0}");
}

int ot_clear_faults_teardown(void **state)
{
    (void)state;
    ot_clear_faults();
    return 0;
}

char *ot_order_id(void)
{
    /* "CS..." ids are answered by the emulator as yearly purchases. */
    return kc_uid("CS");
}

char *ot_line_of(const char *order_id)
{
    return xasprintf("%s-000001", order_id);
}

void ot_refresh(const char *id, const char *order, const char *scene, const char *expire)
{
    char *line = ot_line_of(order);
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "refreshInstance",
              "instanceId", id, "orderId", order, "orderLineId", line, "scene", scene, "expireTime",
              expire);
    kresp_free(&r);
    free(line);
}

void ot_upgrade(const char *id, const char *order)
{
    char *line = ot_line_of(order);
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s}", "activity", "upgradeInstance", "instanceId", id,
              "orderId", order, "orderLineId", line);
    kresp_free(&r);
    free(line);
}

typedef struct {
    const char *sql, *a, *b, *want;
} value_wait_t;

static bool value_is(void *arg)
{
    value_wait_t *w = arg;
    char *v = ot_sql(w->sql, w->a, w->b);
    bool ok = v && strcmp(v, w->want) == 0;
    free(v);
    return ok;
}

bool ot_wait_value(int timeout_ms, const char *sql, const char *a, const char *b, const char *want)
{
    value_wait_t w = {sql, a, b, want};
    return kc_wait(timeout_ms, 100, value_is, &w);
}

char *ot_state_of(const char *id)
{
    return ot_sql("SELECT state FROM orders.instances WHERE instance_id = $1", id, NULL);
}

void ot_assert_state(const char *id, const char *want)
{
    char *got = ot_state_of(id);
    if (!got || strcmp(got, want) != 0)
        fail_msg("instance %s is %s, want %s", id, got ? got : "(none)", want);
    free(got);
}

long long ot_expire_ms_of(const char *id)
{
    return ot_sql_num("SELECT coalesce((extract(epoch FROM expire_time) * 1000)::bigint, -1)"
                      " FROM orders.instances WHERE instance_id = $1",
                      id, NULL);
}

void ot_wait_job(const char *id, long min_attempts, const char *st, int timeout_ms)
{
    char *sql = xasprintf("SELECT attempts >= %ld AND state = $2 FROM orders.jobs"
                          " WHERE instance_id = $1 AND kind = 'provision'",
                          min_attempts);
    if (!ot_wait_value(timeout_ms, sql, id, st, "t"))
        fail_msg("job of %s did not reach %ld attempts in %s", id, min_attempts, st);
    free(sql);
}

char *ot_new_with_fault(const char *fields)
{
    char *order = ot_order_id(), *line = ot_line_of(order), *biz = kc_uid("biz");
    if (fields) {
        char *fault = xasprintf("{\"path\":\"order/query\",\"match\":\"%s\",%s}", order, fields);
        ot_fault(fault);
        free(fault);
    }
    char *id = ot_new_instance(order, line, biz, NULL);
    free(order);
    free(line);
    free(biz);
    return id;
}

long long ot_job_attempts(const char *id)
{
    return ot_sql_num("SELECT attempts FROM orders.jobs WHERE instance_id = $1", id, NULL);
}

void ot_assert_provisioned_once(const char *id, int timeout_ms, long long min_attempts)
{
    json_decref(ot_wait_provisioned(id, timeout_ms));
    assert_true(ot_job_attempts(id) >= min_attempts);
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.instance_history"
                                " WHERE instance_id = $1 AND event = 'provisioned'",
                                id, NULL),
                     1);
    assert_int_equal(ot_sql_num("SELECT count(*) FROM orders.outbox WHERE instance_id = $1"
                                " AND event_type = 'instance.activated'",
                                id, NULL),
                     1);
    char *st = ot_sql("SELECT state FROM orders.jobs WHERE instance_id = $1 AND kind = 'provision'",
                      id, NULL);
    assert_string_equal(st, "done");
    free(st);
}

bool ot_order_logged(void *needle)
{
    char *path = xasprintf("%s/logs/order.log", suite_get("KOOISV_SUITE_DIR"));
    char *text = config_read_file(path, NULL);
    bool found = text && strstr(text, needle);
    free(text);
    free(path);
    return found;
}

char *ot_take_over_job(const char *id)
{
    char *job = ot_sql("UPDATE orders.jobs SET lease_owner = 'elsewhere:1',"
                       " lease_until = now() + interval '1 hour'"
                       " WHERE instance_id = $1 AND state = 'running' RETURNING id",
                       id, NULL);
    if (!job)
        fail_msg("job of %s was not running when taken over", id);
    char *line = xasprintf("job %s: lease lost", job);
    if (!kc_wait(10000, 100, ot_order_logged, line))
        fail_msg("the runner did not notice it lost the lease of job %s", job);
    free(line);
    char *owner = ot_sql("SELECT state || ' ' || lease_owner FROM orders.jobs WHERE id = $1::bigint",
                         job, NULL);
    assert_string_equal(owner, "running elsewhere:1");
    free(owner);
    return job;
}

void ot_give_back_job(const char *job)
{
    free(ot_sql("UPDATE orders.jobs SET state = 'pending', lease_owner = NULL, lease_until = NULL,"
                " next_attempt_at = now() WHERE id = $1::bigint RETURNING id",
                job, NULL));
}

int ot_order_env_apply(kc_envfile_t *saved, const char *extra)
{
    kc_envfile_save(saved, "order");
    kc_envfile_write(saved, extra);
    if (kc_suite("restart", "order") != 0)
        return -1;
    ot_wait_service(15000);
    return 0;
}

void ot_order_env_restore(kc_envfile_t *saved)
{
    kc_envfile_restore(saved);
    kc_suite("restart", "order");
    ot_wait_service(15000);
}

json_t *ot_emulator_calls(const char *path, const char *text)
{
    kresp_t r;
    char *url = xasprintf("/_emulator/calls?path=%s&limit=100", path);
    assert_int_equal(kc_emulator("GET", url, NULL, &r), 0);
    free(url);
    json_t *out = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r.json, "calls"), i, c)
    {
        const char *body = json_string_value(json_object_get(c, "body"));
        const char *query = json_string_value(json_object_get(c, "query"));
        if ((body && strstr(body, text)) || (query && strstr(query, text)))
            json_array_append(out, c);
    }
    kresp_free(&r);
    return out;
}

int ot_run(const char *bin, char *const envp[], char *err, size_t errlen)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        close(p[0]);
        execve(bin, (char *const[]){(char *)bin, NULL}, envp);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < errlen && (got = read(p[0], err + n, errlen - 1 - n)) > 0)
        n += (size_t)got;
    err[n] = '\0';
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void ot_assert_refused(const char *bin, const char *prog, const char *var, char *const envp[])
{
    char err[1024];
    int rc = ot_run(bin, envp, err, sizeof err);
    char *want = xasprintf("%s: %s: ", prog, var);
    if (rc != 2 || strncmp(err, want, strlen(want)) != 0 || !strchr(err, '\n') ||
        strchr(err, '\n')[1] != '\0')
        fail_msg("%s: want exit 2 and one line starting '%s', got %d and '%s'", prog, want, rc,
                 err);
    free(want);
}

char **ot_order_start_env(const char *extra)
{
    /* CURVE keys are read first: valid ones, so that the setting under test stops it. */
    char pub[41], sec[41];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    char **env = xcalloc(12, sizeof *env);
    size_t n = 0;
    env[n++] = xstrdup("KOOISV_PG_DSN=host=/nonexistent dbname=x");
    env[n++] = xasprintf("KOOISV_CURVE_SECRET_KEY=%s", sec);
    env[n++] = xasprintf("KOOISV_CURVE_CLIENTS=%s", pub);
    env[n++] = xstrdup("KOOISV_BASIC_KEY=Kq7-vX2mLp9Rt4Wz8Yb3");
    env[n++] = xstrdup("KOOISV_DATA_KEY="
                       "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    env[n++] = xstrdup("KOOISV_MARKETPLACE_URL=https://127.0.0.1:9");
    env[n++] = xstrdup("KOOISV_MARKETPLACE_AK=AKTEST0123456789");
    env[n++] = xstrdup("KOOISV_MARKETPLACE_SK=Sk7-vX2mLp9Rt4Wz8Yb3");
    env[n++] = xasprintf("KOOISV_LICENSE_KEY_FILE=%s/secrets/license-private.pem",
                         suite_get("KOOISV_SUITE_DIR"));
    env[n++] = xstrdup(extra);
    return env;
}

void ot_env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}
