#include "synctest.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/pem.h>

#include "kclient.h"
#include "randutil.h"
#include "rsaoaep.h"
#include "timeutil.h"
#include "rpc.h"
#include "xmalloc.h"

static kit_answer_t answer_of(kresp_t *r, const char *name)
{
    kit_answer_t a = {{0}, {0}, r->status};
    if (r->status == 0)
        fail_msg("%s: no answer: %s", name, r->error);
    if (!r->body_sign_ok)
        fail_msg("%s: Body-Sign missing or wrong (HTTP %d, body %s)", name, r->status, r->body);
    const char *msg = r->json ? json_string_value(json_object_get(r->json, "resultMsg")) : NULL;
    snprintf(a.code, sizeof a.code, "%s", r->code ? r->code : "");
    snprintf(a.msg, sizeof a.msg, "%s", msg ? msg : (r->body ? r->body : ""));
    kresp_free(r);
    return a;
}

/* The kit call name with body printf(fmt, ap); when want is not NULL, fail unless it answered
 * the code want (the body and the answer in the message). */
static kit_answer_t kit_vcall(const char *name, const char *want, const char *fmt, va_list ap)
{
    char *body = NULL;
    if (vasprintf(&body, fmt, ap) < 0)
        fail_msg("vasprintf");
    kresp_t r;
    kc_kit(name, body, &r);
    kit_answer_t a = answer_of(&r, name);
    if (want && strcmp(a.code, want) != 0)
        fail_msg("%s %s: answered %s \"%s\" (HTTP %d), expected %s", name, body, a.code, a.msg,
                 a.status, want);
    free(body);
    return a;
}

kit_answer_t kit_call(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kit_answer_t a = kit_vcall(name, NULL, fmt, ap);
    va_end(ap);
    return a;
}

void kit_ok(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kit_vcall(name, "000000", fmt, ap);
    va_end(ap);
}

kit_answer_t kit_call_ex(const char *name, const char *body, const char *ts, const char *nonce,
                         const char *sign)
{
    kresp_t r;
    kc_kit_ex(name, body, ts, nonce, sign, &r);
    return answer_of(&r, name);
}

void synctest_assert_kit(const kit_answer_t *a, const char *code, const char *msg_part,
                         const char *file, int line)
{
    if (strcmp(a->code, code) != 0 || (msg_part && !strstr(a->msg, msg_part)))
        fail_msg("%s:%d: answer %s \"%s\" (HTTP %d), expected %s%s%s", file, line, a->code, a->msg,
                 a->status, code, msg_part ? " containing " : "", msg_part ? msg_part : "");
}

void synctest_require_suite(void)
{
    if (suite_env_load() != 0) {
        fprintf(stderr, "no suite env: run through ctest (fixture suite)\n");
        exit(1);
    }
}

void kit_refusals_check(const kit_refusal_t *list, size_t n, const char *inst, const char *tenant)
{
    char *before = tenant_digest(tenant);
    for (size_t i = 0; i < n; i++) {
        const kit_refusal_t *b = &list[i];
        char *body = NULL;
        if (asprintf(&body, b->body, inst, tenant) < 0)
            fail_msg("asprintf");
        kresp_t r;
        kc_kit(b->name, body, &r);
        kit_answer_t ans = {{0}, {0}, r.status};
        snprintf(ans.code, sizeof ans.code, "%s", r.code ? r.code : "");
        const char *m = r.json ? json_string_value(json_object_get(r.json, "resultMsg")) : "";
        snprintf(ans.msg, sizeof ans.msg, "%s", m ? m : "");
        if (strcmp(ans.code, b->code) != 0 || (b->msg && !strstr(ans.msg, b->msg)) || !*ans.msg)
            fail_msg("bad input %zu (%s %s): answered %s \"%s\" HTTP %d", i, b->name, body,
                     ans.code, ans.msg, r.status);
        assert_int_equal(r.status, 200);
        kresp_free(&r);
        free(body);
    }
    assert_tenant_unchanged(tenant, before);
}

enum { DUPLICATES = 8 };

typedef struct {
    const char *name;
    const char *body;
    char codes[DUPLICATES][8];
} dup_t;

static void send_dup(void *arg, int i)
{
    dup_t *d = arg;
    kresp_t r;
    kc_use_gateway(1 + i % 2);
    kc_kit(d->name, d->body, &r);
    snprintf(d->codes[i], sizeof d->codes[i], "%s", r.code ? r.code : "none");
    kresp_free(&r);
}

void kit_concurrent_duplicates(const char *name, const char *body)
{
    dup_t d = {.name = name, .body = body};
    run_concurrently(DUPLICATES, send_dup, &d);
    for (int i = 0; i < DUPLICATES; i++)
        if (strcmp(d.codes[i], "000000") != 0)
            fail_msg("%s duplicate %d answered %s", name, i, d.codes[i]);
}

char *kit_encrypt_secret(int variant, const char *secret)
{
    const char *path = suite_get("KOOISV_RSA_PUBLIC_KEY_FILE");
    if (!path)
        fail_msg("suite env has no KOOISV_RSA_PUBLIC_KEY_FILE");
    const char *why;
    EVP_PKEY *k = rsaoaep_load_public(path, &why);
    if (!k)
        fail_msg("%s: %s", path, why);
    char *c = rsaoaep_encrypt(k, variant, secret, strlen(secret));
    EVP_PKEY_free(k);
    assert_non_null(c);
    return c;
}

char *uid(const char *prefix)
{
    return kc_uid(prefix);
}

char *sql_text(const char *sql, int n, const char *const *params)
{
    return kc_sql_value(sql, n, params);
}

long sql_long(const char *sql, int n, const char *const *params)
{
    char *v = kc_sql_value(sql, n, params);
    long out = v ? atol(v) : -1;
    free(v);
    return out;
}

char *tenant_digest(const char *tenant_id)
{
    const char *p[] = {tenant_id};
    char *d =
        kc_sql_value("SELECT coalesce(md5(string_agg(x, '|' ORDER BY x)), 'empty') FROM ("
                     " SELECT 't:' || t::text AS x FROM tenants.tenants t WHERE tenant_id = $1"
                     " UNION ALL SELECT 'o:' || o::text FROM tenants.orgs o WHERE tenant_id = $1"
                     " UNION ALL SELECT 'a:' || a::text FROM apps.apps a WHERE tenant_id = $1"
                     " UNION ALL SELECT 'u:' || u::text FROM apps.app_users u WHERE tenant_id = $1"
                     " UNION ALL SELECT 'to:' || id FROM tenants.outbox WHERE tenant_id = $1"
                     " UNION ALL SELECT 'ao:' || id FROM apps.outbox WHERE tenant_id = $1) s",
                     1, p);
    if (!d)
        fail_msg("tenant_digest: query failed");
    return d;
}

void synctest_assert_unchanged(const char *tenant_id, char *before, const char *file, int line)
{
    char *after = tenant_digest(tenant_id);
    if (strcmp(before, after) != 0)
        fail_msg("%s:%d: tenant %s changed (digest %s, was %s)", file, line, tenant_id, after,
                 before);
    free(before);
    free(after);
}

long outbox_count(const char *schema, const char *tenant_id, const char *type)
{
    const char *p[] = {tenant_id, type ? type : ""};
    const char *sql = strcmp(schema, "tenants") == 0
                          ? "SELECT count(*) FROM tenants.outbox WHERE tenant_id = $1"
                            " AND ($2 = '' OR event_type = $2)"
                          : "SELECT count(*) FROM apps.outbox WHERE tenant_id = $1"
                            " AND ($2 = '' OR event_type = $2)";
    return sql_long(sql, 2, p);
}

char *admin_rpc(const char *svc, const char *caller_kind, const char *action, char **json, ...)
{
    rpc_client_t *c = kc_rpc_client(strcmp(svc, "tenant") == 0 ? "tenant" : "app");
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    char rid[37];
    rand_uuid(rid);
    env.request_id = rid;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    caller.kind = (char *)caller_kind;
    caller.id = "sync-test";
    env.caller = &caller;
    env.deadline_ms = time_now_ms() + 4000;
    Kooisv__AdminRequest req = KOOISV__ADMIN_REQUEST__INIT;
    req.action = (char *)action;
    Kooisv__AdminRequest__ArgsEntry entries[8], *ptrs[8];
    va_list ap;
    va_start(ap, json);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL && req.n_args < 8) {
        kooisv__admin_request__args_entry__init(&entries[req.n_args]);
        entries[req.n_args].key = (char *)k;
        entries[req.n_args].value = (char *)va_arg(ap, const char *);
        ptrs[req.n_args] = &entries[req.n_args];
        req.n_args++;
    }
    va_end(ap);
    req.args = ptrs;
    env.body_case = KOOISV__ENVELOPE__BODY_ADMIN;
    env.admin = &req;
    Kooisv__Reply *reply = NULL;
    if (rpc_call(c, &env, 5000, &reply) != 0)
        fail_msg("admin %s to %s: no answer", action, svc);
    char *code = xasprintf("%s %s", reply->result_code, reply->result_msg);
    *json = reply->result_case == KOOISV__REPLY__RESULT_ADMIN ? xstrdup(reply->admin->json) : NULL;
    kooisv__reply__free_unpacked(reply, NULL);
    rpc_client_destroy(&c);
    return code;
}

void assert_unknown_action_refused(const char *svc)
{
    char *json = NULL;
    char *code = admin_rpc(svc, "operator", "no.such.action", &json, NULL);
    char *want = xasprintf("000002 unknown action for the %s service: no.such.action", svc);
    if (strcmp(code, want) != 0 || json)
        fail_msg("%s: unknown admin action answered \"%s\"%s, expected \"%s\"", svc, code,
                 json ? " with a result" : "", want);
    free(want);
    free(code);
}

/* The emulator keeps the last 100 calls per path: enough for one test's events. */
static json_t *webhook_log(void)
{
    kresp_t r;
    if (kc_emulator("GET", "/_emulator/calls?path=webhook/sync&limit=100", NULL, &r) != 0 ||
        r.status != 200 || !r.json) {
        kresp_free(&r);
        return NULL;
    }
    json_t *calls = json_incref(json_object_get(r.json, "calls"));
    kresp_free(&r);
    return calls;
}

long webhook_calls_with(const char *needle)
{
    json_t *calls = webhook_log();
    long n = 0;
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c)
    {
        const char *body = json_string_value(json_object_get(c, "body"));
        if (body && strstr(body, needle) && json_integer_value(json_object_get(c, "status")) == 200)
            n++;
    }
    json_decref(calls);
    return n;
}

typedef struct {
    const char *needle;
    long n;
    long seen;
} wait_arg_t;

static bool enough_calls(void *arg)
{
    wait_arg_t *w = arg;
    w->seen = webhook_calls_with(w->needle);
    return w->seen >= w->n;
}

long webhook_wait(const char *needle, long n, int timeout_ms)
{
    wait_arg_t w = {needle, n, 0};
    kc_wait(timeout_ms, 100, enough_calls, &w);
    return w.seen;
}

bool webhook_signatures_ok(const char *needle)
{
    json_t *calls = webhook_log();
    bool ok = calls != NULL;
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c)
    {
        const char *body = json_string_value(json_object_get(c, "body"));
        if (body && strstr(body, needle) && !json_is_true(json_object_get(c, "signature_ok")))
            ok = false;
    }
    json_decref(calls);
    return ok;
}

typedef struct {
    pthread_barrier_t *barrier;
    void (*fn)(void *arg, int i);
    void *arg;
    int i;
} thread_arg_t;

static void *thread_main(void *p)
{
    thread_arg_t *t = p;
    pthread_barrier_wait(t->barrier);
    t->fn(t->arg, t->i);
    return NULL;
}

void run_concurrently(int n, void (*fn)(void *arg, int i), void *arg)
{
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)n);
    pthread_t *threads = xcalloc((size_t)n, sizeof *threads);
    thread_arg_t *args = xcalloc((size_t)n, sizeof *args);
    for (int i = 0; i < n; i++) {
        args[i] = (thread_arg_t){&barrier, fn, arg, i};
        pthread_create(&threads[i], NULL, thread_main, &args[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);
    free(threads);
    free(args);
}
