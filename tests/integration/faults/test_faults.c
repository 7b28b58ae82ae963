/* Faults under load: client threads send a steady mix of signed calls through both gateways
 * (newInstance of fresh orders, queryInstance, updateInstanceStatus, tenantSync, authSync) while
 * the test SIGKILLs, in turn, each service, each gateway and PostgreSQL's postmaster, and starts
 * it again. Each call's request id, answer and latency is recorded; afterwards:
 *   - every answer is 000000 or 000005; no answer at all only from a gateway that was down;
 *   - a call that began while a process it needs was down was answered 000005 within 4 s,
 *     or 000000 once the process was started again (a killed gateway: its calls find no
 *     listener, the other gateway keeps answering);
 *   - a call that needs it was answered 000000 again within 5 s of the restart;
 *   - every call answered 000000 is in the database exactly once (the instance and its
 *     newInstance application, the status change's history row, the tenant, the users);
 *   - no instance was provisioned twice, nothing was stored without its audit intent, every
 *     000000 call has exactly one accepted intent;
 *   - POST /v1/audit/verify finds the chain intact.
 * The figures are printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kclient.h"
#include "synctest.h"
#include "xmalloc.h"

#define THREADS 4
#define CALL_GAP_MS 120     /* each thread's pause between calls */
#define DOWN_MS 2000        /* how long each process stays down */
#define RESUME_MS 3000      /* load after each restart */
#define DOWN_ANSWER_MS 4000 /* a call meeting a dead dependency is answered by then */
#define RESUME_LIMIT_MS 5000
#define CALLS_MAX 20000
#define INST_MAX 512

typedef enum { OP_NEW, OP_QUERY, OP_STATUS, OP_TENANT, OP_AUTH, OP_N } op_t;
static const char *const op_names[OP_N] = {"newInstance", "queryInstance", "updateInstanceStatus",
                                           "tenantSync", "authSync"};

typedef struct {
    op_t op;
    int gw;        /* 1 or 2 */
    char rid[64];  /* X-Request-Id, "" when no answer */
    char code[16]; /* resultCode, "none" (no HTTP answer) or "HTTP <n>" */
    int64_t start_ms, end_ms;
    char key[64];  /* instance (new, status), tenant (tenantSync) */
    char key2[64]; /* order id (new), status (status) */
} call_t;

typedef struct {
    char id[64];
    bool provisioned, frozen, uncertain;
} inst_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static call_t calls[CALLS_MAX];
static int ncalls;
static volatile int stop;
static int64_t t0;
static char prefix[32]; /* order ids of this run: CS<prefix>... */
static char app_inst[64], app_tenant[64];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - t0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Send one call and record it; the answer's JSON is handed back in *out (caller frees). */
static int record(op_t op, int gw, const char *name, const char *body, const char *key,
                  const char *key2, kresp_t *out)
{
    call_t c = {.op = op, .gw = gw};
    snprintf(c.key, sizeof c.key, "%s", key ? key : "");
    snprintf(c.key2, sizeof c.key2, "%s", key2 ? key2 : "");
    kc_use_gateway(gw);
    memset(out, 0, sizeof *out);
    c.start_ms = now_ms();
    int rc = name ? kc_kit(name, body, out) : kc_basic(body, out);
    c.end_ms = now_ms();
    if (rc != 0 || out->status == 0)
        snprintf(c.code, sizeof c.code, "none");
    else if (out->status != 200 || !out->code)
        snprintf(c.code, sizeof c.code, "HTTP %d", out->status);
    else
        snprintf(c.code, sizeof c.code, "%s", out->code);
    if (out->status == 200 && !out->body_sign_ok)
        snprintf(c.code, sizeof c.code, "badsign");
    snprintf(c.rid, sizeof c.rid, "%s", out->request_id ? out->request_id : "");
    pthread_mutex_lock(&mu);
    int slot = -1;
    if (ncalls < CALLS_MAX) {
        calls[ncalls] = c;
        slot = ncalls++;
    }
    pthread_mutex_unlock(&mu);
    return slot;
}

static bool ok(const kresp_t *r)
{
    return r->status == 200 && r->code && strcmp(r->code, "000000") == 0;
}

static void *worker(void *arg)
{
    int self = (int)(intptr_t)arg;
    inst_t *mine = xcalloc(INST_MAX, sizeof *mine);
    int nmine = 0, qnext = 0;
    for (unsigned long n = self; !stop; n++) {
        int gw = 1 + (int)((n + self) % 2);
        op_t op = (op_t)(n % OP_N);
        kresp_t r;
        char body[768];
        /* a status change needs an instance of ours we know to be provisioned */
        inst_t *target = NULL;
        for (int i = 0; op == OP_STATUS && i < nmine && !target; i++)
            if (mine[i].provisioned && !mine[i].uncertain)
                target = &mine[i];
        if (op == OP_STATUS && !target)
            op = OP_QUERY;
        switch (op) {
        case OP_NEW: {
            char *order = kc_uid(prefix);
            snprintf(body, sizeof body,
                     "{\"activity\":\"newInstance\",\"orderId\":\"%s\",\"orderLineId\":"
                     "\"%s-000001\",\"businessId\":\"B-%s\"}",
                     order, order, order);
            int slot = record(op, gw, NULL, body, NULL, order, &r);
            const char *id = json_string_value(json_object_get(r.json, "instanceId"));
            if (ok(&r) && id && slot >= 0) {
                pthread_mutex_lock(&mu);
                snprintf(calls[slot].key, sizeof calls[slot].key, "%s", id);
                pthread_mutex_unlock(&mu);
            }
            if (ok(&r) && id && nmine < INST_MAX)
                snprintf(mine[nmine++].id, sizeof mine[0].id, "%s", id);
            free(order);
            break;
        }
        case OP_QUERY: {
            inst_t *q = nmine ? &mine[qnext++ % nmine] : NULL;
            snprintf(body, sizeof body, "{\"activity\":\"queryInstance\",\"instanceId\":\"%s\"}",
                     q ? q->id : "probe-none");
            record(op, gw, NULL, body, q ? q->id : NULL, NULL, &r);
            json_t *info = json_array_get(json_object_get(r.json, "info"), 0);
            if (q && ok(&r) && json_object_get(info, "appInfo"))
                q->provisioned = true;
            break;
        }
        case OP_STATUS: {
            const char *st = target->frozen ? "UNFREEZE" : "FREEZE";
            snprintf(body, sizeof body,
                     "{\"activity\":\"updateInstanceStatus\",\"instanceId\":\"%s\",\"status\":"
                     "\"%s\"}",
                     target->id, st);
            record(op, gw, NULL, body, target->id, st, &r);
            if (ok(&r))
                target->frozen = !target->frozen;
            else /* it may or may not have happened: leave this one alone */
                target->uncertain = true;
            break;
        }
        case OP_TENANT: {
            char *tenant = kc_uid("FT");
            const char *inst = app_inst;
            snprintf(body, sizeof body,
                     "{\"instanceId\":\"%s\",\"orderId\":\"\",\"tenantId\":\"%s\","
                     "\"tenantCode\":\"c\",\"name\":\"Faults\",\"domainName\":\"f.example.com\","
                     "\"flag\":1,\"testFlag\":0,\"timeStamp\":\"20261128101500123\"}",
                     inst, tenant);
            record(op, gw, "tenantSync", body, tenant, inst, &r);
            free(tenant);
            break;
        }
        case OP_AUTH: {
            char *user = kc_uid("u");
            snprintf(body, sizeof body,
                     "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"fa1\",\"flag\":1,"
                     "\"currentSyncTime\":\"20261128101500123\",\"testFlag\":0,\"userList\":"
                     "[{\"userName\":\"%s\",\"name\":\"U\",\"orgCode\":\"o\",\"role\":\"user\","
                     "\"enable\":\"true\"}]}",
                     app_inst, app_tenant, user);
            record(op, gw, "authSync", body, user, NULL, &r);
            free(user);
            break;
        }
        default:
            break;
        }
        kresp_free(&r);
        sleep_ms(CALL_GAP_MS);
    }
    free(mine);
    return NULL;
}

/* ---------------------------------------------------------------- the faults */

typedef struct {
    const char *proc; /* suite.sh process, or "pg" */
    int64_t down_ms;  /* killed (the kill verb returned) */
    int64_t up_ms;    /* the start began */
    int64_t ready_ms; /* the start verb returned */
} fault_t;

static fault_t faults[] = {{.proc = "order"}, {.proc = "tenant"},  {.proc = "app"},
                           {.proc = "audit"}, {.proc = "gateway"}, {.proc = "gateway2"},
                           {.proc = "pg"}};
#define NFAULTS (sizeof faults / sizeof *faults)

/* Does a call of op through gateway gw need proc? */
static bool needs(op_t op, int gw, const char *proc)
{
    if (!strcmp(proc, "audit") || !strcmp(proc, "pg"))
        return true;
    if (!strcmp(proc, "gateway"))
        return gw == 1;
    if (!strcmp(proc, "gateway2"))
        return gw == 2;
    if (!strcmp(proc, "order"))
        return op == OP_NEW || op == OP_QUERY || op == OP_STATUS;
    if (!strcmp(proc, "tenant"))
        return op == OP_TENANT;
    if (!strcmp(proc, "app"))
        return op == OP_AUTH;
    return false;
}

static void inject(fault_t *f)
{
    bool pg = !strcmp(f->proc, "pg");
    printf("faults: kill -9 %s\n", pg ? "postgres" : f->proc);
    fflush(stdout);
    assert_int_equal(pg ? kc_suite("pg-kill", NULL) : kc_suite("kill", f->proc), 0);
    f->down_ms = now_ms();
    sleep_ms(DOWN_MS);
    f->up_ms = now_ms();
    assert_int_equal(pg ? kc_suite("pg-start", NULL) : kc_suite("start-svc", f->proc), 0);
    f->ready_ms = now_ms();
    sleep_ms(RESUME_MS);
}

/* ---------------------------------------------------------------- checks */

static long sql_num(const char *sql, const char *a, const char *b)
{
    const char *p[] = {a, b};
    char *v = kc_sql_value(sql, b ? 2 : a ? 1 : 0, p);
    long n = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return n;
}

/* Windows and resumption of each fault; prints the figures. */
static int check_faults(void)
{
    int bad = 0;
    for (size_t i = 0; i < NFAULTS; i++) {
        fault_t *f = &faults[i];
        bool gwfault = !strncmp(f->proc, "gateway", 7);
        int during = 0, answered5 = 0, other_ok = 0;
        int64_t max_lat = 0, resumed = -1;
        for (int k = 0; k < ncalls; k++) {
            const call_t *c = &calls[k];
            bool need = needs(c->op, c->gw, f->proc);
            if (c->start_ms >= f->down_ms && c->start_ms < f->up_ms) {
                if (!need) {
                    other_ok += !strcmp(c->code, "000000");
                    continue;
                }
                during++;
                int64_t lat = c->end_ms - c->start_ms;
                max_lat = lat > max_lat ? lat : max_lat;
                /* a dead gateway: nothing listens, the client gets no answer at all. A call
                 * answered after the restart began may have found the process back: 000000 is
                 * right then (check_stored and check_effects hold it to its audit intent). */
                bool back = c->end_ms >= f->up_ms && !strcmp(c->code, "000000");
                bool want = gwfault ? !strcmp(c->code, "none")
                                    : !strcmp(c->code, "000005") || back;
                answered5 += want;
                if (!want || lat > DOWN_ANSWER_MS) {
                    printf("faults: FAIL %s down: %s via gateway %d answered %s in %lld ms (%s)\n",
                           f->proc, op_names[c->op], c->gw, c->code, (long long)lat, c->rid);
                    bad++;
                }
            } else if (need && c->start_ms >= f->up_ms && !strcmp(c->code, "000000") &&
                       (resumed < 0 || c->end_ms - f->up_ms < resumed)) {
                resumed = c->end_ms - f->up_ms;
            }
        }
        printf("faults: %-8s down %lld ms: %d calls needing it (%d as expected), max latency "
               "%lld ms, %d other calls 000000; start took %lld ms; first 000000 %lld ms after "
               "the restart began\n",
               f->proc, (long long)(f->up_ms - f->down_ms), during, answered5, (long long)max_lat,
               other_ok, (long long)(f->ready_ms - f->up_ms), (long long)resumed);
        if (during == 0 || resumed < 0 || resumed > RESUME_LIMIT_MS) {
            printf("faults: FAIL %s: %s\n", f->proc,
                   during == 0 ? "no call met the fault" : "service did not resume in time");
            bad++;
        }
        if (gwfault && other_ok == 0) {
            printf("faults: FAIL %s down: the other gateway answered nothing\n", f->proc);
            bad++;
        }
    }
    return bad;
}

/* Every answer is 000000 or 000005; no answer at all only from a gateway that was down (or
 * being killed, or starting again). */
static int check_answers(void)
{
    int bad = 0;
    for (int k = 0; k < ncalls; k++) {
        const call_t *c = &calls[k];
        bool gw_down = false;
        for (size_t i = 0; i < NFAULTS; i++)
            gw_down |= needs(c->op, c->gw, faults[i].proc) &&
                       !strncmp(faults[i].proc, "gateway", 7) &&
                       c->end_ms >= faults[i].down_ms - DOWN_ANSWER_MS &&
                       c->start_ms <= faults[i].ready_ms;
        if (!strcmp(c->code, "000000") || !strcmp(c->code, "000005") ||
            (!strcmp(c->code, "none") && gw_down))
            continue;
        printf("faults: FAIL %s via gateway %d at %lld ms answered %s (%s)\n", op_names[c->op],
               c->gw, (long long)c->start_ms, c->code, c->rid);
        bad++;
    }
    return bad;
}

/* Every 000000 call is stored exactly once, with exactly one accepted intent. */
static int check_stored(void)
{
    int bad = 0;
    for (int k = 0; k < ncalls; k++) {
        const call_t *c = &calls[k];
        if (strcmp(c->code, "000000") != 0)
            continue;
        long n = 1;
        const char *what = "";
        switch (c->op) {
        case OP_NEW:
            what = "instance with its newInstance application";
            n = sql_num("SELECT count(*) FROM orders.instances i JOIN orders.order_applications a"
                        " USING (instance_id) WHERE i.instance_id = $1 AND i.order_id = $2"
                        " AND a.activity = 'newInstance'",
                        c->key, c->key2);
            break;
        case OP_STATUS:
            what = "status history row";
            n = sql_num("SELECT count(*) FROM orders.instance_history WHERE request_id = $1"
                        " AND instance_id = $2",
                        c->rid, c->key);
            break;
        case OP_TENANT:
            what = "tenant";
            n = sql_num("SELECT count(*) FROM tenants.tenants WHERE tenant_id = $1", c->key, NULL);
            break;
        case OP_AUTH:
            what = "user";
            n = sql_num("SELECT count(*) FROM apps.app_users WHERE user_name = $1", c->key, NULL);
            break;
        default:
            break;
        }
        long intents = sql_num("SELECT count(*) FROM audit.intents WHERE request_id = $1"
                               " AND reject_reason = ''",
                               c->rid, NULL);
        if (n != 1 || intents != 1) {
            printf("faults: FAIL %s %s answered 000000: %ld %s rows, %ld intents\n",
                   op_names[c->op], c->rid, n, what, intents);
            bad++;
        }
    }
    return bad;
}

static bool provisioning_settled(void *arg)
{
    const char *like = arg;
    const char *p[] = {like};
    return kc_sql_count("SELECT 1 FROM orders.jobs WHERE order_id LIKE $1 AND kind = 'provision'"
                        " AND state IN ('pending', 'running')",
                        1, p) == 0;
}

/* Nothing provisioned twice, nothing stored without its intent. */
static int check_effects(void)
{
    int bad = 0;
    char *like = xasprintf("%s%%", prefix);
    bool settled = kc_wait(30000, 500, provisioning_settled, like);
    long twice = sql_num("SELECT count(*) FROM (SELECT h.instance_id FROM orders.instance_history h"
                         " JOIN orders.instances i USING (instance_id) WHERE i.order_id LIKE $1"
                         " AND h.event = 'provisioned' GROUP BY 1 HAVING count(*) > 1) t",
                         like, NULL);
    long created =
        sql_num("SELECT count(*) FROM orders.instances WHERE order_id LIKE $1", like, NULL);
    long provisioned = sql_num("SELECT count(*) FROM orders.instances WHERE order_id LIKE $1"
                               " AND provisioned_at IS NOT NULL",
                               like, NULL);
    long jobs_twice = sql_num("SELECT count(*) FROM (SELECT instance_id FROM orders.jobs WHERE"
                              " order_id LIKE $1 AND kind = 'provision' GROUP BY 1"
                              " HAVING count(*) > 1) t",
                              like, NULL);
    long orphans = sql_num(
        "SELECT (SELECT count(*) FROM orders.instances i WHERE i.order_id LIKE $1 AND NOT EXISTS"
        "  (SELECT 1 FROM audit.intents a WHERE a.request_id = i.created_request_id"
        "   AND a.reject_reason = ''))"
        " + (SELECT count(*) FROM orders.instance_history h JOIN orders.instances i"
        "  USING (instance_id) WHERE i.order_id LIKE $1 AND h.request_id IS NOT NULL"
        "  AND h.event IN ('freeze', 'unfreeze') AND NOT EXISTS"
        "  (SELECT 1 FROM audit.intents a WHERE a.request_id = h.request_id"
        "   AND a.reject_reason = ''))",
        like, NULL);
    /* A tenant stored by a call that was not answered 000000 still needs its accepted intent:
     * found by the answer's request id, or, when no answer came (the gateway was killed after
     * the service committed), by the tenant it names (every call's tenant id is fresh). */
    long tenant_orphans = 0;
    for (int k = 0; k < ncalls; k++) {
        if (calls[k].op != OP_TENANT || strcmp(calls[k].code, "000000") == 0 ||
            sql_num("SELECT count(*) FROM tenants.tenants WHERE tenant_id = $1", calls[k].key,
                    NULL) == 0)
            continue;
        long intents =
            calls[k].rid[0]
                ? sql_num("SELECT count(*) FROM audit.intents WHERE request_id = $1 AND"
                          " reject_reason = ''",
                          calls[k].rid, NULL)
                : sql_num("SELECT count(*) FROM audit.intents WHERE event_type = 'tenantSync'"
                          " AND reject_reason = '' AND resources @> jsonb_build_array("
                          "jsonb_build_object('kind', 'tenant', 'id', $1::text))",
                          calls[k].key, NULL);
        if (intents != 1)
            tenant_orphans++;
    }
    printf("faults: %ld instances created, %ld provisioned (jobs settled: %s), provisioned twice:"
           " %ld, duplicate jobs: %ld, changes without an intent: %ld + %ld\n",
           created, provisioned, settled ? "yes" : "no", twice, jobs_twice, orphans,
           tenant_orphans);
    if (!settled || twice != 0 || jobs_twice != 0 || orphans != 0 || tenant_orphans != 0 ||
        provisioned != created) {
        printf("faults: FAIL effects\n");
        bad++;
    }
    free(like);
    return bad;
}

static int check_chain(void)
{
    kresp_t r = {0};
    int rc = kc_admin("POST", "/v1/audit/verify", suite_get("KOOISV_AUDITOR_TOKEN"), "{}", &r);
    bool good = rc == 0 && r.status == 200 && json_is_true(json_object_get(r.json, "ok")) &&
                json_is_true(json_object_get(r.json, "complete"));
    printf("faults: audit verify: HTTP %d %s\n", r.status, r.body ? r.body : r.error);
    kresp_free(&r);
    return good ? 0 : 1;
}

static void test_faults_under_load(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char *run = kc_uid("");
    snprintf(prefix, sizeof prefix, "CSF%.8s", run + strlen(run) - 8);
    free(run);

    /* the app that authSync adds users to */
    char *inst = kc_uid("FI"), *tenant = kc_uid("FT"), *secret = kit_encrypt_secret(0, "s3cret");
    snprintf(app_inst, sizeof app_inst, "%s", inst);
    snprintf(app_tenant, sizeof app_tenant, "%s", tenant);
    kit_answer_t a = kit_call("applicationSync",
                              "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"fa1\","
                              "\"clientId\":\"c1\",\"clientSecret\":\"%s\",\"flag\":1,"
                              "\"testFlag\":0,\"timeStamp\":\"20261128101500123\"}",
                              inst, tenant, secret);
    assert_kit(a, "000000", NULL);
    free(inst);
    free(tenant);
    free(secret);

    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i), 0);
    sleep_ms(3000);
    for (size_t i = 0; i < NFAULTS; i++)
        inject(&faults[i]);
    stop = 1;
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    int per_code[8] = {0};
    const char *codes[] = {"000000", "000005", "none", "other"};
    int per_op[OP_N] = {0};
    for (int k = 0; k < ncalls; k++) {
        int j = 3;
        for (int m = 0; m < 3; m++)
            if (!strcmp(calls[k].code, codes[m]))
                j = m;
        per_code[j]++;
        per_op[calls[k].op]++;
    }
    printf("faults: %d calls in %lld s (", ncalls, (long long)(now_ms() / 1000));
    for (int o = 0; o < OP_N; o++)
        printf("%s%s %d", o ? ", " : "", op_names[o], per_op[o]);
    printf("); 000000 %d, 000005 %d, no answer %d, other %d\n", per_code[0], per_code[1],
           per_code[2], per_code[3]);
    int bad = check_answers();
    bad += check_faults();
    bad += check_stored();
    bad += check_effects();
    bad += check_chain();
    fflush(stdout);
    assert_int_equal(ncalls < CALLS_MAX, 1);
    assert_int_equal(bad, 0);
}

int main(void)
{
    synctest_require_suite();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_faults_under_load)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
