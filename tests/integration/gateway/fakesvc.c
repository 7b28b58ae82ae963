/* fakesvc: a stand-in replica of the audit, order, tenant or app service for the gateway's
 * standalone integration test. It speaks the real transport (svc_run), records every
 * message it receives as one line in FAKESVC_LOG, and can be slowed down at run time through
 * FAKESVC_CONTROL (re-read on every call): "delay_ms=N" delays every answer, "stall_first_ms=N"
 * delays only the first copy of each request (so the gateway's resend reaches another worker),
 * "fail_copies=1" answers every later copy of a request 000005 at once.
 * The audit flavour keeps nonces in memory and reports replays like the real one. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "svc.h"
#include "xmalloc.h"
#include "zmqauth.h"

static const char *name;
static const char *log_path;
static const char *control_path;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Seen (caller, nonce) -> request id, and request ids seen once (for stall_first). */
typedef struct seen {
    struct seen *next;
    char *key;
    char *rid;
} seen_t;
static seen_t *nonces;
static seen_t *rids;
static long seq;

static long control_value(const char *key)
{
    if (!control_path)
        return 0;
    FILE *f = fopen(control_path, "r");
    if (!f)
        return 0;
    char line[128];
    long v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == '=')
            v = strtol(line + kl + 1, NULL, 10);
    fclose(f);
    return v;
}

static void sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *case_name(const Kooisv__Envelope *env)
{
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_AUDIT_INTENT:
        return "intent";
    case KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME:
        return "outcome";
    case KOOISV__ENVELOPE__BODY_NEW_INSTANCE:
        return "newInstance";
    case KOOISV__ENVELOPE__BODY_QUERY_INSTANCE:
        return "queryInstance";
    case KOOISV__ENVELOPE__BODY_REFRESH_INSTANCE:
        return "refreshInstance";
    case KOOISV__ENVELOPE__BODY_UPDATE_INSTANCE_STATUS:
        return "updateInstanceStatus";
    case KOOISV__ENVELOPE__BODY_RELEASE_INSTANCE:
        return "releaseInstance";
    case KOOISV__ENVELOPE__BODY_UPGRADE_INSTANCE:
        return "upgradeInstance";
    case KOOISV__ENVELOPE__BODY_CHANGE_INSTANCE_CHECK:
        return "changeInstanceCheck";
    case KOOISV__ENVELOPE__BODY_GET_LICENSE_ASYNC:
        return "getLicenseAsync";
    case KOOISV__ENVELOPE__BODY_TENANT_SYNC:
        return "tenantSync";
    case KOOISV__ENVELOPE__BODY_APPLICATION_SYNC:
        return "applicationSync";
    case KOOISV__ENVELOPE__BODY_AUTH_SYNC:
        return "authSync";
    case KOOISV__ENVELOPE__BODY_SINGLE_ORG_SYNC:
        return "singleOrgSync";
    case KOOISV__ENVELOPE__BODY_ALL_ORG_SYNC:
        return "allOrgSync";
    default:
        return "other";
    }
}

/* One line per message (per outcome of a batch): what the tests assert on. */
static void record(const Kooisv__Envelope *env)
{
    if (env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_OUTCOMES) {
        pthread_mutex_lock(&lock);
        FILE *f = log_path ? fopen(log_path, "a") : NULL;
        if (f) {
            fprintf(f, "%s batch rid=%s n=%zu\n", name, env->request_id,
                    env->audit_outcomes->n_outcomes);
            fclose(f);
        }
        pthread_mutex_unlock(&lock);
        for (size_t i = 0; i < env->audit_outcomes->n_outcomes; i++) {
            Kooisv__Envelope one = *env;
            one.request_id = env->audit_outcomes->outcomes[i]->request_id;
            one.body_case = KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME;
            one.audit_outcome = env->audit_outcomes->outcomes[i];
            record(&one);
        }
        return;
    }
    char res[1024] = "";
    const Kooisv__AuditIntent *in =
        env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_INTENT ? env->audit_intent : NULL;
    const Kooisv__AuditOutcome *out =
        env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME ? env->audit_outcome : NULL;
    for (size_t i = 0; in && i < in->n_resources; i++) {
        size_t l = strlen(res);
        snprintf(res + l, sizeof res - l, "%s%s:%s", i ? "," : "", in->resources[i]->kind,
                 in->resources[i]->id);
    }
    pthread_mutex_lock(&lock);
    FILE *f = log_path ? fopen(log_path, "a") : NULL;
    if (f) {
        fprintf(f,
                "%s %s rid=%s event=%s nonce=%s nonce_ts=%lld reject=%s src=%s caller=%s:%s "
                "test=%d res=%s code=%s http=%lld deadline=%lld reason=%s\n",
                name, case_name(env), env->request_id, in ? in->event_type : "",
                in ? in->nonce : "", in ? (long long)in->nonce_ts_ms : 0LL,
                in ? in->reject_code : "", env->source_addr, env->caller ? env->caller->kind : "",
                env->caller ? env->caller->id : "", env->test_flag ? 1 : 0, res,
                out ? out->result_code : "", out ? (long long)out->http_status : 0LL,
                (long long)env->deadline_ms, in ? in->reject_reason : "");
        fclose(f);
    }
    pthread_mutex_unlock(&lock);
}

/* True the first time key is seen; stores key -> rid. *first_rid gets the stored rid. */
static bool remember(seen_t **list, const char *key, const char *rid, const char **first_rid)
{
    for (seen_t *s = *list; s; s = s->next)
        if (strcmp(s->key, key) == 0) {
            *first_rid = s->rid;
            return false;
        }
    seen_t *s = xcalloc(1, sizeof *s);
    s->key = xstrdup(key);
    s->rid = xstrdup(rid);
    s->next = *list;
    *list = s;
    *first_rid = s->rid;
    return true;
}

static void handle_audit(svc_call_t *call, const Kooisv__Envelope *env)
{
    if (env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME) {
        svc_call_result(call, "000000", "stored");
        return;
    }
    if (env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_OUTCOMES) {
        Kooisv__AuditOutcomeBatchResult *r = svc_call_alloc(call, sizeof *r);
        kooisv__audit_outcome_batch_result__init(r);
        r->n_result_codes = env->audit_outcomes->n_outcomes;
        r->result_codes = svc_call_alloc(call, (r->n_result_codes + 1) * sizeof *r->result_codes);
        for (size_t i = 0; i < r->n_result_codes; i++)
            r->result_codes[i] = "000000";
        Kooisv__Reply *reply = svc_call_reply(call);
        reply->result_case = KOOISV__REPLY__RESULT_AUDIT_OUTCOMES;
        reply->audit_outcomes = r;
        svc_call_result(call, "000000", "stored");
        return;
    }
    if (env->body_case != KOOISV__ENVELOPE__BODY_AUDIT_INTENT) {
        svc_call_result(call, "000002", "not an audit record");
        return;
    }
    const Kooisv__AuditIntent *in = env->audit_intent;
    bool replay = false;
    pthread_mutex_lock(&lock);
    if (*in->nonce && !*in->reject_code) {
        char *key = xasprintf("%s/%s", env->caller ? env->caller->id : "", in->nonce);
        const char *first = NULL;
        if (!remember(&nonces, key, env->request_id, &first))
            replay = strcmp(first, env->request_id) != 0; /* the same request again is fine */
        free(key);
    }
    long n = ++seq;
    pthread_mutex_unlock(&lock);
    Kooisv__AuditIntentResult *r = svc_call_alloc(call, sizeof *r);
    kooisv__audit_intent_result__init(r);
    r->seq = n;
    r->replay = replay;
    Kooisv__Reply *reply = svc_call_reply(call);
    reply->result_case = KOOISV__REPLY__RESULT_AUDIT_INTENT;
    reply->audit_intent = r;
    svc_call_result(call, "000000", "recorded");
}

static void handle_order(svc_call_t *call, const Kooisv__Envelope *env)
{
    Kooisv__Reply *reply = svc_call_reply(call);
    if (env->body_case == KOOISV__ENVELOPE__BODY_NEW_INSTANCE) {
        Kooisv__NewInstanceResult *r = svc_call_alloc(call, sizeof *r);
        kooisv__new_instance_result__init(r);
        r->instance_id = svc_call_printf(call, "inst-%s", env->new_instance->order_id);
        reply->result_case = KOOISV__REPLY__RESULT_NEW_INSTANCE;
        reply->new_instance = r;
    } else if (env->body_case == KOOISV__ENVELOPE__BODY_QUERY_INSTANCE) {
        const Kooisv__QueryInstance *q = env->query_instance;
        Kooisv__QueryInstanceResult *r = svc_call_alloc(call, sizeof *r);
        kooisv__query_instance_result__init(r);
        r->info = svc_call_alloc(call, (q->n_instance_ids + 1) * sizeof *r->info);
        for (size_t i = 0; i < q->n_instance_ids; i++) {
            Kooisv__InstanceInfo *info = svc_call_alloc(call, sizeof *info);
            kooisv__instance_info__init(info);
            info->instance_id = svc_call_strdup(call, q->instance_ids[i]);
            Kooisv__AppInfo *app = svc_call_alloc(call, sizeof *app);
            kooisv__app_info__init(app);
            app->front_end_url = svc_call_printf(call, "https://app.example.com/\xe7\xa4\xba/%s",
                                                 q->instance_ids[i]);
            app->user_name = "0123456789abcdefCxa/kbut/oHLJxYv7ss2mw==";
            app->password = "0123456789abcdefoO6VsGl1i8yM7vBpsVZTcA==";
            info->app_info = app;
            r->info[r->n_info++] = info;
        }
        r->encrypt_type = "1";
        reply->result_case = KOOISV__REPLY__RESULT_QUERY_INSTANCE;
        reply->query_instance = r;
    } else if (env->body_case == KOOISV__ENVELOPE__BODY_UPDATE_INSTANCE_STATUS &&
               strcmp(env->update_instance_status->instance_id, "missing") == 0) {
        svc_call_result(call, "000003", "instance does not exist");
        return;
    }
    svc_call_result(call, "000000", "success");
}

static void handle(void *state, svc_call_t *call)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    if (env->body_case == KOOISV__ENVELOPE__BODY_AUDIT_OUTCOMES && control_value("no_batches")) {
        /* As an audit service from before outcome batches answers them: unknown, stored none. */
        svc_call_result(call, "000002", "the audit service does not serve this request");
        return;
    }
    record(env);
    long stall = control_value("stall_first_ms");
    if (stall > 0 || control_value("fail_copies")) {
        const char *first = NULL;
        pthread_mutex_lock(&lock);
        bool is_first = remember(&rids, env->request_id, env->request_id, &first);
        pthread_mutex_unlock(&lock);
        if (is_first)
            sleep_ms(stall);
        else if (control_value("fail_copies")) {
            svc_call_result(call, "000005", "copy failed on purpose");
            return;
        }
    }
    sleep_ms(control_value("delay_ms"));
    if (strcmp(name, "audit") == 0)
        handle_audit(call, env);
    else if (strcmp(name, "order") == 0)
        handle_order(call, env);
    else
        svc_call_result(call, "000000", "success");
}

/* Name and bind address from FAKESVC_NAME/FAKESVC_BIND, else from the program name
 * ("kooisv-billing" -> "billing") and KOOISV_BIND, so it can also stand in for a service binary
 * in a locally started suite. */
int main(int argc, char **argv)
{
    name = getenv("FAKESVC_NAME");
    const char *bind = getenv("FAKESVC_BIND");
    if (!name && argc > 0) {
        const char *base = strrchr(argv[0], '/');
        base = base ? base + 1 : argv[0];
        name = strncmp(base, "kooisv-", 7) == 0 ? base + 7 : NULL;
    }
    if (!bind)
        bind = getenv("KOOISV_BIND");
    log_path = getenv("FAKESVC_LOG");
    control_path = getenv("FAKESVC_CONTROL");
    if (!name || !bind) {
        fprintf(stderr, "fakesvc: set FAKESVC_NAME and FAKESVC_BIND\n");
        return 2;
    }
    log_init(name);
    /* A CURVE server like every service: KOOISV_CURVE_SECRET_KEY(_FILE), KOOISV_CURVE_CLIENTS. */
    static const config_var_t vars[] = {ZMQAUTH_SERVER_CONFIG_VARS};
    config_load("kooisv-gw-fakesvc", "stand-in service for the gateway tests", vars,
                sizeof vars / sizeof vars[0], argc, argv);
    zmqauth_config_server("kooisv-gw-fakesvc");
    svc_def_t def = {.name = name, .bind = bind, .workers = 4, .handle = handle};
    return svc_run(&def);
}
