/* market: kooisvctl's marketplace client (see market.h).
 *
 *   kooisvctl market ACTIVITY [--FIELD VALUE ...] [options]   one call, request and answer shown
 *   kooisvctl market check [options]                          the debugging cases (marketcheck)
 *
 * Field flags are the spec's field names (--orderId, --instanceId, ...). Keys come from flags,
 * else the settings (KOOISV_BASIC_KEY/_FILE, KOOISV_KIT_KEY/_FILE); they are never printed.
 * Exit status: 0 resultCode 000000 with a valid Body-Sign, 1 anything else, 2 usage. */
#include "market.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "appcrypt.h"
#include "config.h"
#include "ctlenv.h"
#include "httpc.h"
#include "marketcheck.h"
#include "mktcall.h"
#include "randutil.h"
#include "resultcode.h"
#include "rsaoaep.h"
#include "timeutil.h"
#include "xmalloc.h"

#define DEFAULT_TIMEOUT_MS 10000
#define WAIT_POLL_MS 500
#define KIT_ZONE_OFFSET_MS (8LL * 3600 * 1000) /* kit timeStamp is UTC+8 (spec §4) */

/* ================================================================ activities (spec §3, §4) */

typedef enum { FIELD_STR, FIELD_INT, FIELD_JSON } field_type_t;

typedef struct {
    const char *name;
    field_type_t type;
    bool required;
    const char *help;
} field_t;

typedef struct {
    const char *name;
    bool kit;
    const char *summary;
    const field_t *fields;
} activity_t;

#define F_END                                                                                      \
    {                                                                                              \
        NULL, FIELD_STR, false, NULL                                                               \
    }
#define F_TEST_BASIC                                                                               \
    {                                                                                              \
        "testFlag", FIELD_STR, false, "\"1\" debugging call (default), \"0\" real"                 \
    }
#define F_KIT_COMMON                                                                               \
    {"instanceId", FIELD_STR, false, "instance id (\"\" in seller-console debugging)"},            \
        {"tenantId", FIELD_STR, false, "tenant id"},                                               \
        {"testFlag", FIELD_INT, false, "1 debugging call (default), 0 real"},                      \
    {                                                                                              \
        "timeStamp", FIELD_STR, false, "yyyyMMddHHmmssSSS, UTC+8 (default: now)"                   \
    }
#define F_FLAG(h)                                                                                  \
    {                                                                                              \
        "flag", FIELD_INT, true, h                                                                 \
    }

static const field_t f_new[] = {
    {"orderId", FIELD_STR, true, "order id (debug orders: MOCKPERIODYEARNEW, ...)"},
    {"orderLineId", FIELD_STR, true, "order line id (default: <orderId>-000001)"},
    {"businessId", FIELD_STR, true, "id of this attempt (default: a fresh UUID)"},
    F_TEST_BASIC,
    F_END};
static const field_t f_query[] = {
    {"instanceId", FIELD_STR, true, "1-100 instance ids, comma-separated"}, F_TEST_BASIC, F_END};
static const field_t f_refresh[] = {
    {"instanceId", FIELD_STR, true, "instance id"},
    {"scene", FIELD_STR, true, "TRIAL_TO_FORMAL | RENEWAL | UNSUBSCRIBE_RENEWAL_PERIOD"},
    {"orderId", FIELD_STR, true, "the order (UNSUBSCRIBE_RENEWAL_PERIOD: the one cancelled)"},
    {"orderLineId", FIELD_STR, true, "order line id (default: <orderId>-000001)"},
    {"expireTime", FIELD_STR, true, "new expiry, yyyyMMddHHmmss (marketplace zone, UTC)"},
    {"productId", FIELD_STR, false, "new product when the period type changes"},
    F_TEST_BASIC,
    F_END};
static const field_t f_status[] = {{"instanceId", FIELD_STR, true, "instance id"},
                                   {"status", FIELD_STR, true, "FREEZE | UNFREEZE"},
                                   F_TEST_BASIC,
                                   F_END};
static const field_t f_release[] = {
    {"instanceId", FIELD_STR, true, "instance id"},
    {"orderId", FIELD_STR, false, "the unsubscribed order (release by unsubscription)"},
    {"orderLineId", FIELD_STR, false, "its line"},
    F_TEST_BASIC,
    F_END};
static const field_t f_upgrade[] = {
    {"instanceId", FIELD_STR, true, "instance id (unchanged by the upgrade)"},
    {"orderId", FIELD_STR, true, "the change order (debug: MOCKMONTYCHANGE)"},
    {"orderLineId", FIELD_STR, true, "order line id (default: <orderId>-000001)"},
    F_TEST_BASIC,
    F_END};
static const field_t f_check[] = {
    {"instanceId", FIELD_STR, true, "instance id"},
    {"productInfo", FIELD_JSON, true, "JSON object with productId, e.g. '{\"productId\":\"P\"}'"},
    F_TEST_BASIC,
    F_END};
static const field_t f_license[] = {
    {"instanceId", FIELD_STR, true, "instance id"},
    {"eventId", FIELD_STR, true, "license event id"},
    {"effectiveTime", FIELD_STR, true, "UTC: 'yyyy-MM-dd HH:mm:ss z' or yyyyMMddHHmmss[SSS]"},
    {"expireTime", FIELD_STR, false, "UTC, as effectiveTime (required for periodic products)"},
    {"deviceFingerprint", FIELD_STR, false, "device fingerprint (<= 1024 characters)"},
    F_TEST_BASIC,
    F_END};
static const field_t f_tenant[] = {F_KIT_COMMON,
                                   F_FLAG("0 delete, 1 add, 2 modify"),
                                   {"orderId", FIELD_STR, false, "order id"},
                                   {"tenantCode", FIELD_STR, false, "tenant code"},
                                   {"name", FIELD_STR, false, "tenant name"},
                                   {"domainName", FIELD_STR, false, "tenant domain name"},
                                   F_END};
static const field_t f_app[] = {
    F_KIT_COMMON,
    F_FLAG("0 delete, 1 add, 2 modify"),
    {"appId", FIELD_STR, false, "application id"},
    {"clientId", FIELD_STR, false, "client id"},
    {"clientSecret", FIELD_STR, false, "RSA-OAEP ciphertext, base64 (or --clientSecretPlain)"},
    F_END};
static const field_t f_auth[] = {
    F_KIT_COMMON,
    F_FLAG("0 delete, 1 add, 2 modify, 3 cancel authorisation"),
    {"appId", FIELD_STR, false, "application id"},
    {"userList", FIELD_JSON, false, "JSON array of {userName, name, orgCode, role, enable, ...}"},
    {"currentSyncTime", FIELD_STR, false, "time of this sync"},
    F_END};
static const field_t f_org[] = {F_KIT_COMMON,
                                F_FLAG("0 delete, 1 add, 2 modify"),
                                {"orgCode", FIELD_STR, true, "organisation code"},
                                {"orgName", FIELD_STR, true, "organisation name (<= 128)"},
                                {"parentCode", FIELD_STR, false, "parent (empty: top level)"},
                                F_END};
static const field_t f_allorg[] = {
    F_KIT_COMMON,
    {"orgInfoList", FIELD_JSON, true, "JSON array of {orgCode, orgName, parentCode}"},
    F_END};

static const activity_t activities[] = {
    {"newInstance", false, "buy: create an instance (provisioned asynchronously)", f_new},
    {"queryInstance", false, "instances and their appInfo (decrypted here)", f_query},
    {"refreshInstance", false, "renewal, trial to formal, renewal cancelled", f_refresh},
    {"updateInstanceStatus", false, "freeze or unfreeze", f_status},
    {"releaseInstance", false, "release (end of service)", f_release},
    {"upgradeInstance", false, "change the plan", f_upgrade},
    {"changeInstanceCheck", false, "may the instance change to this product?", f_check},
    {"getLicenseAsync", false, "issue a license", f_license},
    {"tenantSync", true, "kit: tenant added, changed or deleted", f_tenant},
    {"applicationSync", true, "kit: application and its client secret", f_app},
    {"authSync", true, "kit: users authorised to an application", f_auth},
    {"singleOrgSync", true, "kit: one organisation", f_org},
    {"allOrgSync", true, "kit: the whole organisation tree", f_allorg},
};
#define N_ACTIVITIES (sizeof activities / sizeof *activities)

static const activity_t *activity_find(const char *name)
{
    for (size_t i = 0; i < N_ACTIVITIES; i++)
        if (strcmp(activities[i].name, name) == 0)
            return &activities[i];
    return NULL;
}

static const field_t *field_find(const activity_t *a, const char *name)
{
    for (const field_t *f = a->fields; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

/* ================================================================ options */

typedef struct {
    const char *url, *basic_key_file, *kit_key_file, *ca_file, *rsa_file, *timeout;
    const char *secret_plain, *body, *timestamp, *nonce, *signature, *wait, *print;
    bool json;
    json_t *fields; /* field flags given, by name (strings as given) */
    json_t *extra;  /* --set NAME=VALUE */
} call_args_t;

/* where a flag's value goes: a string member of call_args_t, or handled by call_main */
#define SLOT(member) (offsetof(call_args_t, member) + 1)
#define NO_SLOT 0

typedef struct {
    const char *flag;
    const char *arg; /* NULL: a switch */
    const char *help;
    size_t slot; /* SLOT(member) or NO_SLOT */
} option_t;

/* every flag of a call, once: its help line and where its value is kept */
static const option_t call_options[] = {
    {"--url", "URL", "production URL [KOOISV_URL]; kit calls go to URL/produceAPI/v2/<name>",
     SLOT(url)},
    {"--basic-key-file", "PATH", "basic interfaces key [KOOISV_BASIC_KEY or _FILE]",
     SLOT(basic_key_file)},
    {"--kit-key-file", "PATH", "kit sync key [KOOISV_KIT_KEY or _FILE]", SLOT(kit_key_file)},
    {"--ca-file", "PATH",
     "CA bundle verifying the server [KOOISV_CA_FILE; default: the system store]", SLOT(ca_file)},
    {"--rsa-public-key-file", "PATH",
     "RSA public key for --clientSecretPlain [KOOISV_RSA_PUBLIC_KEY_FILE]", SLOT(rsa_file)},
    {"--timeout-ms", "MS", "per call (default 10000)", SLOT(timeout)},
    {"--clientSecretPlain", "TEXT", "applicationSync: encrypt TEXT as clientSecret (RSA-OAEP)",
     SLOT(secret_plain)},
    {"--set", "NAME=VALUE", "any other string field (repeatable)", NO_SLOT},
    {"--body", "JSON|@FILE", "send this body as it is instead of one built from the flags",
     SLOT(body)},
    {"--timestamp", "MS", "sign with this timestamp (default: now)", SLOT(timestamp)},
    {"--nonce", "TEXT", "sign with this nonce (default: a fresh one)", SLOT(nonce)},
    {"--signature", "HEX", "send this signature instead of the correct one", SLOT(signature)},
    {"--wait", "SECONDS", "queryInstance: repeat until every instance has its appInfo", SLOT(wait)},
    {"--print", "FIELD", "print only this field of the answer (for scripts)", SLOT(print)},
    {"--json", NULL, "print request and answer as one JSON document", NO_SLOT},
    {NULL, NULL, NULL, NO_SLOT},
};

/* the call option named FLAG, or NULL */
static const option_t *option_find(const char *flag)
{
    for (const option_t *o = call_options; o->flag; o++)
        if (strcmp(o->flag, flag) == 0)
            return o;
    return NULL;
}

/* the member of A that holds OPT's value, or NULL when call_main handles it */
static const char **option_slot(call_args_t *a, const option_t *opt)
{
    return opt->slot == NO_SLOT ? NULL : (const char **)((char *)a + opt->slot - 1);
}

static void options_help(FILE *f, const option_t *opts)
{
    for (const option_t *o = opts; o->flag; o++) {
        char head[48];
        snprintf(head, sizeof head, "%s%s%s", o->flag, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-30s %s\n", head, o->help);
    }
}

void market_usage_summary(FILE *f)
{
    fprintf(f, "  %-26s %s\n", "market ACTIVITY",
            "Send one signed marketplace call and show request and answer");
    fprintf(f, "  %-26s %s\n", "market check",
            "Run the seller console's debugging cases against a deployment");
}

static void market_help(FILE *f)
{
    fprintf(f, "usage: kooisvctl [--env-file PATH] market ACTIVITY [--FIELD VALUE ...] [options]\n"
               "       kooisvctl [--env-file PATH] market check [options]\n"
               "       kooisvctl market ACTIVITY --help     (its fields)\n\n"
               "Sends one call to a kooisv production URL signed as the marketplace signs it,\n"
               "prints the request and the answer, checks Body-Sign and decrypts appInfo.\n"
               "Exit status: 0 resultCode 000000 with a valid Body-Sign, 1 otherwise, 2 usage.\n\n"
               "activities (spec §3) and kit sync calls (spec §4):\n");
    for (size_t i = 0; i < N_ACTIVITIES; i++)
        fprintf(f, "  %-22s %s\n", activities[i].name, activities[i].summary);
    fprintf(f, "  %-22s %s\n", "check", "the debugging cases (kooisvctl market check --help)");
    fprintf(f, "\noptions:\n");
    options_help(f, call_options);
    fprintf(f, "\nsettings (environment, or --env-file PATH; flags win): KOOISV_URL, "
               "KOOISV_BASIC_KEY(_FILE),\n  KOOISV_KIT_KEY(_FILE), KOOISV_CA_FILE, "
               "KOOISV_RSA_PUBLIC_KEY_FILE\n");
}

static void activity_help(FILE *f, const activity_t *a)
{
    fprintf(f, "usage: kooisvctl market %s [--FIELD VALUE ...] [options]\n\n%s (%s).\n\nfields:\n",
            a->name, a->summary, a->kit ? "kit sync, spec §4" : "basic interface, spec §3");
    for (const field_t *fl = a->fields; fl->name; fl++) {
        char head[48];
        snprintf(head, sizeof head, "--%s %s", fl->name,
                 fl->type == FIELD_INT    ? "N"
                 : fl->type == FIELD_JSON ? "JSON"
                                          : "TEXT");
        fprintf(f, "  %-30s %s%s\n", head, fl->help, fl->required ? " [required]" : "");
    }
    fprintf(f, "\noptions:\n");
    options_help(f, call_options);
}

/* ================================================================ configuration */

void market_conf_free(market_conf_t *conf)
{
    free(conf->url);
    if (conf->basic_key)
        xfree_secret(conf->basic_key, strlen(conf->basic_key));
    if (conf->kit_key)
        xfree_secret(conf->kit_key, strlen(conf->kit_key));
    free(conf->ca_file);
    free(conf->rsa_public_key_file);
    memset(conf, 0, sizeof *conf);
}

/* A key from its flag's file, else the setting name (or name_FILE). -1 when a file that was
 * named cannot be read (reason on stderr). */
static int key_load(const char *flag_file, const char *name, char **out)
{
    *out = flag_file ? ctlenv_secret_file(flag_file, name) : ctlenv_secret(name);
    if (*out || flag_file)
        return *out ? 0 : -1;
    char *file_var = xasprintf("%s_FILE", name);
    bool named = ctlenv_get(file_var) != NULL; /* named but unreadable: said on stderr */
    free(file_var);
    return named ? -1 : 0;
}

/* conf from the flags, else the settings; MARKET_EXIT_USAGE with the reason on stderr when the
 * URL is missing or not http(s), or a named file cannot be read. */
static int conf_load(market_conf_t *conf, const call_args_t *a)
{
    memset(conf, 0, sizeof *conf);
    const char *url = a->url ? a->url : ctlenv_get("KOOISV_URL");
    if (!url) {
        fprintf(stderr, "kooisvctl: market: no URL: give --url or set KOOISV_URL "
                        "(or --env-file .state/kooisv.env)\n");
        return MARKET_EXIT_USAGE;
    }
    if (strncmp(url, "https://", 8) != 0) { /* the marketplace speaks HTTPS only (spec §1) */
        fprintf(stderr, "kooisvctl: market: '%s' is not an https:// URL\n", url);
        return MARKET_EXIT_USAGE;
    }
    conf->url = xstrdup(url);
    const char *ca = a->ca_file ? a->ca_file : ctlenv_get("KOOISV_CA_FILE");
    if (ca) {
        FILE *f = fopen(ca, "r");
        if (!f) {
            fprintf(stderr, "kooisvctl: market: cannot read the CA file %s\n", ca);
            market_conf_free(conf);
            return MARKET_EXIT_USAGE;
        }
        fclose(f);
        conf->ca_file = xstrdup(ca);
    }
    const char *rsa = a->rsa_file ? a->rsa_file : ctlenv_get("KOOISV_RSA_PUBLIC_KEY_FILE");
    conf->rsa_public_key_file = rsa ? xstrdup(rsa) : NULL;
    conf->timeout_ms = a->timeout ? atoi(a->timeout) : DEFAULT_TIMEOUT_MS;
    if (conf->timeout_ms <= 0) {
        fprintf(stderr, "kooisvctl: market: --timeout-ms must be a positive number\n");
        market_conf_free(conf);
        return MARKET_EXIT_USAGE;
    }
    if (key_load(a->basic_key_file, "KOOISV_BASIC_KEY", &conf->basic_key) != 0 ||
        key_load(a->kit_key_file, "KOOISV_KIT_KEY", &conf->kit_key) != 0) {
        market_conf_free(conf);
        return MARKET_EXIT_USAGE;
    }
    return 0;
}

/* ================================================================ one call */

void market_answer_free(market_answer_t *a)
{
    if (!a)
        return;
    free(a->body);
    json_decref(a->json);
    free(a->request_id);
    memset(a, 0, sizeof *a);
}

/* The call conf would make, or NULL with a reason when the family's key is missing. */
static mktcall_t *call_new(const market_conf_t *conf, const char *kit_name, const char *body,
                           const char *ts, const char *nonce, const char *signature, char *why,
                           size_t whylen)
{
    const char *key = kit_name ? conf->kit_key : conf->basic_key;
    if (!key) {
        snprintf(why, whylen, "no %s key: set %s or %s_FILE, or give %s",
                 kit_name ? "kit sync" : "basic interfaces",
                 kit_name ? "KOOISV_KIT_KEY" : "KOOISV_BASIC_KEY",
                 kit_name ? "KOOISV_KIT_KEY" : "KOOISV_BASIC_KEY",
                 kit_name ? "--kit-key-file" : "--basic-key-file");
        return NULL;
    }
    char fresh_ts[24], fresh_nonce[33];
    mktcall_fresh(fresh_ts, fresh_nonce);
    mktcall_spec_t spec = {.url = conf->url,
                           .kit_name = kit_name,
                           .key = key,
                           .body = body,
                           .timestamp = ts ? ts : fresh_ts,
                           .nonce = nonce ? nonce : fresh_nonce,
                           .signature = signature};
    return mktcall_new(&spec);
}

static int call_send(const market_conf_t *conf, const mktcall_t *call, const char *kit_name,
                     market_answer_t *out)
{
    httpc_options_t opt = {
        .ca_file = conf->ca_file, .verify_peer = 1, .timeout_ms = conf->timeout_ms};
    httpc_response_t r;
    int rc = mktcall_send(call, &opt, &r);
    out->status = r.status;
    out->body = r.body ? r.body : xstrdup("");
    out->len = r.body ? r.body_len : 0;
    r.body = NULL;
    snprintf(out->error, sizeof out->error, "%s", r.error);
    out->body_sign = -1;
    if (rc == 0) {
        out->json = json_loadb(out->body, out->len, 0, NULL);
        out->code = json_string_value(json_object_get(out->json, "resultCode"));
        out->msg = json_string_value(json_object_get(out->json, "resultMsg"));
        const char *rid = httpc_header(&r, "X-Request-Id");
        out->request_id = rid ? xstrdup(rid) : NULL;
        r.body = out->body;
        r.body_len = out->len;
        out->body_sign = mktcall_body_sign(&r, kit_name ? conf->kit_key : conf->basic_key);
        r.body = NULL;
    }
    if (!out->msg)
        out->msg = "";
    httpc_response_free(&r);
    return rc;
}

int market_send(const market_conf_t *conf, const char *kit_name, const char *body, const char *ts,
                const char *nonce, const char *signature, market_answer_t *out)
{
    memset(out, 0, sizeof *out);
    mktcall_t *call =
        call_new(conf, kit_name, body, ts, nonce, signature, out->error, sizeof out->error);
    if (!call) {
        out->body = xstrdup("");
        out->msg = "";
        out->body_sign = -1;
        return -1;
    }
    int rc = call_send(conf, call, kit_name, out);
    mktcall_destroy(&call);
    return rc;
}

/* Decrypt the credentials of one appInfo into an entry of list; false with why. */
static bool appinfo_one(const market_conf_t *conf, const char *encrypt_type, const char *instance,
                        const json_t *app, json_t *list, char *why, size_t whylen)
{
    json_t *entry = json_pack("{s:s}", "instanceId", instance ? instance : "");
    static const char *const names[] = {"userName", "password"};
    for (size_t i = 0; i < 2; i++) {
        const char *wire = json_string_value(json_object_get(app, names[i]));
        if (!wire || !*wire)
            continue;
        char *plain =
            conf->basic_key ? appcrypt_decrypt(conf->basic_key, encrypt_type, wire) : NULL;
        if (!plain) {
            snprintf(why, whylen,
                     "appInfo.%s of %s does not decrypt with the basic key (encryptType %s)",
                     names[i], instance ? instance : "the answer", encrypt_type);
            json_decref(entry);
            return false;
        }
        json_object_set_new(entry, names[i], json_string(plain));
        xfree_secret(plain, strlen(plain));
    }
    json_array_append_new(list, entry);
    return true;
}

json_t *market_appinfo_decrypt(const market_conf_t *conf, const json_t *answer, char *why,
                               size_t whylen)
{
    const char *type = json_string_value(json_object_get(answer, "encryptType"));
    if (!type || !*type)
        type = "1";
    json_t *list = json_array();
    bool ok = true;
    const json_t *top = json_object_get(answer, "appInfo");
    if (json_is_object(top))
        ok = appinfo_one(conf, type, json_string_value(json_object_get(answer, "instanceId")), top,
                         list, why, whylen);
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(answer, "info"), i, item)
    {
        json_t *app = json_object_get(item, "appInfo");
        if (ok && json_is_object(app))
            ok = appinfo_one(conf, type, json_string_value(json_object_get(item, "instanceId")),
                             app, list, why, whylen);
    }
    if (!ok)
        json_decref(list);
    return ok ? list : NULL;
}

void market_kit_timestamp(char out[18])
{
    int64_t ms = time_now_ms() + KIT_ZONE_OFFSET_MS;
    char compact[15];
    time_format_compact(NULL, ms, compact);
    snprintf(out, 18, "%.14s%03u", compact, (unsigned)(ms % 1000) % 1000u);
}

/* ================================================================ the body */

/* The body of activity a from the field flags; NULL with the reason on stderr. Caller frees. */
static char *body_build(const market_conf_t *conf, const activity_t *a, const call_args_t *args)
{
    json_t *body = json_object();
    if (!a->kit)
        json_object_set_new(body, "activity", json_string(a->name));
    const char *key;
    json_t *v;
    json_object_foreach(args->fields, key, v)
    {
        const field_t *f = field_find(a, key);
        const char *text = json_string_value(v);
        if (f->type == FIELD_INT) {
            char *end;
            long long n = strtoll(text, &end, 10);
            if (!*text || *end) {
                fprintf(stderr, "kooisvctl: market %s: --%s must be an integer\n", a->name, key);
                goto fail;
            }
            json_object_set_new(body, key, json_integer(n));
        } else if (f->type == FIELD_JSON) {
            json_error_t err;
            json_t *parsed = json_loads(text, JSON_DECODE_ANY, &err);
            if (!parsed) {
                fprintf(stderr, "kooisvctl: market %s: --%s is not JSON: %s\n", a->name, key,
                        err.text);
                goto fail;
            }
            json_object_set_new(body, key, parsed);
        } else {
            json_object_set(body, key, v);
        }
    }
    json_object_update(body, args->extra);
    /* Defaults: testFlag on, a fresh businessId, line -000001, the kit timeStamp. */
    if (!json_object_get(body, "testFlag"))
        json_object_set_new(body, "testFlag", a->kit ? json_integer(1) : json_string("1"));
    if (field_find(a, "businessId") && !json_object_get(body, "businessId")) {
        char uuid[37];
        rand_uuid(uuid);
        json_object_set_new(body, "businessId", json_string(uuid));
    }
    const char *order = json_string_value(json_object_get(body, "orderId"));
    const field_t *line = field_find(a, "orderLineId");
    if (line && line->required && order && !json_object_get(body, "orderLineId")) {
        char *id = xasprintf("%s-000001", order);
        json_object_set_new(body, "orderLineId", json_string(id));
        free(id);
    }
    if (a->kit && !json_object_get(body, "timeStamp")) {
        char ts[18];
        market_kit_timestamp(ts);
        json_object_set_new(body, "timeStamp", json_string(ts));
    }
    if (args->secret_plain) {
        const char *why = NULL;
        EVP_PKEY *pub =
            conf->rsa_public_key_file ? rsaoaep_load_public(conf->rsa_public_key_file, &why) : NULL;
        if (!pub) {
            fprintf(stderr, "kooisvctl: market: --clientSecretPlain needs the RSA public key: %s\n",
                    why ? why : "set KOOISV_RSA_PUBLIC_KEY_FILE or give --rsa-public-key-file");
            goto fail;
        }
        char *c = rsaoaep_encrypt(pub, 0, args->secret_plain, strlen(args->secret_plain));
        EVP_PKEY_free(pub);
        json_object_set_new(body, "clientSecret", json_string(c ? c : ""));
        free(c);
    }
    for (const field_t *f = a->fields; f->name; f++)
        if (f->required && !json_object_get(body, f->name)) {
            fprintf(stderr, "kooisvctl: market %s: --%s is required (or send --body as it is)\n",
                    a->name, f->name);
            goto fail;
        }
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(body);
    return text;
fail:
    json_decref(body);
    return NULL;
}

/* --body: the text, or the content of @FILE. Caller frees; NULL with the reason on stderr. */
static char *body_given(const char *arg)
{
    if (arg[0] != '@')
        return xstrdup(arg);
    char *text = config_read_file(arg + 1, NULL);
    if (!text)
        fprintf(stderr, "kooisvctl: market: cannot read %s\n", arg + 1);
    return text;
}

/* ================================================================ output */

static void print_exchange(const mktcall_t *call, const market_answer_t *ans, const json_t *appinfo)
{
    printf("> POST %s\n", call->url);
    for (size_t i = 0; call->headers[i]; i++)
        printf("> %s\n", call->headers[i]);
    printf("> %s\n\n", call->body);
    if (ans->status == 0) {
        printf("< no answer: %s\n", ans->error);
        return;
    }
    printf("< HTTP %d, Body-Sign %s%s%s\n", ans->status,
           ans->body_sign == 1   ? "valid"
           : ans->body_sign == 0 ? "INVALID"
                                 : "MISSING",
           ans->request_id ? ", X-Request-Id " : "", ans->request_id ? ans->request_id : "");
    if (ans->json) {
        char *pretty = json_dumps(ans->json, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", pretty);
        free(pretty);
    } else {
        printf("%.*s\n", (int)ans->len, ans->body);
    }
    size_t i;
    json_t *e;
    json_array_foreach(appinfo, i, e)
    {
        const char *user = json_string_value(json_object_get(e, "userName"));
        const char *pass = json_string_value(json_object_get(e, "password"));
        printf("appInfo of %s decrypted: userName=%s password=%s\n",
               json_string_value(json_object_get(e, "instanceId")), user ? user : "-",
               pass ? pass : "-");
    }
}

static json_t *exchange_json(const mktcall_t *call, const market_answer_t *ans,
                             const json_t *appinfo, bool ok)
{
    json_t *headers = json_array();
    for (size_t i = 0; call->headers[i]; i++)
        json_array_append_new(headers, json_string(call->headers[i]));
    json_t *sent = json_loads(call->body, JSON_DECODE_ANY, NULL);
    json_t *doc =
        json_pack("{s:{s:s, s:s, s:o, s:o}}", "request", "method", "POST", "url", call->url,
                  "headers", headers, "body", sent ? sent : json_string(call->body));
    if (ans->status != 0) {
        json_t *body = ans->json ? json_incref(ans->json) : json_string(ans->body);
        json_object_set_new(doc, "response",
                            json_pack("{s:i, s:s?, s:s, s:o}", "status", ans->status, "requestId",
                                      ans->request_id, "bodySign",
                                      ans->body_sign == 1   ? "valid"
                                      : ans->body_sign == 0 ? "invalid"
                                                            : "missing",
                                      "body", body));
    } else {
        json_object_set_new(doc, "error", json_string(ans->error));
    }
    json_object_set_new(doc, "resultCode", ans->code ? json_string(ans->code) : json_null());
    if (appinfo)
        json_object_set(doc, "appInfo", (json_t *)appinfo);
    json_object_set_new(doc, "ok", json_boolean(ok));
    return doc;
}

/* True when every instance of a queryInstance answer carries appInfo with a frontEndUrl. */
static bool all_provisioned(const market_answer_t *ans)
{
    json_t *info = json_object_get(ans->json, "info");
    if (!ans->code || strcmp(ans->code, RC_OK) != 0 || json_array_size(info) == 0)
        return false;
    size_t i;
    json_t *item;
    json_array_foreach(info, i, item)
    {
        const char *url =
            json_string_value(json_object_get(json_object_get(item, "appInfo"), "frontEndUrl"));
        if (!url || !*url)
            return false;
    }
    return true;
}

/* ================================================================ main */

/* One call as args say; the exit status. */
static int call_run(const activity_t *a, const call_args_t *args)
{
    market_conf_t conf;
    int rc = conf_load(&conf, args);
    if (rc != 0)
        return rc;
    char *body = args->body ? body_given(args->body) : body_build(&conf, a, args);
    if (!body) {
        market_conf_free(&conf);
        return MARKET_EXIT_USAGE;
    }
    const char *kit_name = a->kit ? a->name : NULL;
    int wait_s = args->wait ? atoi(args->wait) : 0;
    int64_t until = time_mono_us() + (int64_t)wait_s * 1000000;
    char why[256] = "";
    mktcall_t *call = NULL;
    market_answer_t ans = {0};
    for (;;) {
        mktcall_destroy(&call);
        market_answer_free(&ans);
        call = call_new(&conf, kit_name, body, args->timestamp, args->nonce, args->signature, why,
                        sizeof why);
        if (!call) {
            fprintf(stderr, "kooisvctl: market %s: %s\n", a->name, why);
            free(body);
            market_conf_free(&conf);
            return MARKET_EXIT_USAGE;
        }
        int sent = call_send(&conf, call, kit_name, &ans);
        if (sent != 0 || !wait_s || strcmp(a->name, "queryInstance") != 0 ||
            all_provisioned(&ans) || (ans.code && strcmp(ans.code, RC_OK) != 0) ||
            time_mono_us() >= until)
            break;
        if (!args->json && !args->print)
            fprintf(stderr, "kooisvctl: market: waiting for appInfo...\n");
        struct timespec ts = {0, WAIT_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    json_t *appinfo = ans.json ? market_appinfo_decrypt(&conf, ans.json, why, sizeof why) : NULL;
    bool ok = ans.status != 0 && ans.code && strcmp(ans.code, RC_OK) == 0 && ans.body_sign == 1 &&
              (appinfo || !ans.json);
    if (wait_s && strcmp(a->name, "queryInstance") == 0 && ok && !all_provisioned(&ans)) {
        snprintf(why, sizeof why, "no appInfo within %d s", wait_s);
        ok = false;
    }
    if (args->json) {
        json_t *doc = exchange_json(call, &ans, appinfo, ok);
        char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", text);
        free(text);
        json_decref(doc);
    } else if (args->print) {
        json_t *v = json_object_get(ans.json, args->print);
        if (json_is_string(v))
            printf("%s\n", json_string_value(v));
        else if (v) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            printf("%s\n", text);
            free(text);
        }
    } else {
        print_exchange(call, &ans, appinfo);
    }
    /* The verdict, on stderr so that --json and --print stay clean. */
    if (ans.status == 0)
        fprintf(stderr, "kooisvctl: market %s: no answer from %s: %s\n", a->name, conf.url,
                ans.error);
    else if (ans.body_sign != 1)
        fprintf(stderr, "kooisvctl: market %s: Body-Sign %s (checked with the %s key)\n", a->name,
                ans.body_sign == 0 ? "does not verify" : "is missing",
                a->kit ? "kit sync" : "basic interfaces");
    else if (!ans.code)
        fprintf(stderr, "kooisvctl: market %s: HTTP %d without a resultCode\n", a->name,
                ans.status);
    else if (strcmp(ans.code, RC_OK) != 0)
        fprintf(stderr, "kooisvctl: market %s: %s %s\n", a->name, ans.code, ans.msg);
    else if (!ok)
        fprintf(stderr, "kooisvctl: market %s: %s\n", a->name, why);
    else if (!args->json && !args->print)
        fprintf(stderr, "kooisvctl: market %s: %s %s\n", a->name, ans.code, ans.msg);
    json_decref(appinfo);
    market_answer_free(&ans);
    mktcall_destroy(&call);
    free(body);
    market_conf_free(&conf);
    return ok ? 0 : MARKET_EXIT_FAILED;
}

static int call_main(const activity_t *a, int argc, char **argv)
{
    call_args_t args = {.fields = json_object(), .extra = json_object()};
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            activity_help(stdout, a);
            goto done;
        }
        if (strcmp(arg, "--json") == 0) {
            args.json = true;
            continue;
        }
        const option_t *opt = option_find(arg);
        const field_t *f = strncmp(arg, "--", 2) == 0 ? field_find(a, arg + 2) : NULL;
        if (!opt && !f) {
            fprintf(stderr,
                    "kooisvctl: market %s: unknown option %s (kooisvctl market %s --help)\n",
                    a->name, arg, a->name);
            rc = MARKET_EXIT_USAGE;
            break;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kooisvctl: market %s: %s needs a value\n", a->name, arg);
            rc = MARKET_EXIT_USAGE;
            break;
        }
        const char *value = argv[++i];
        if (f) {
            json_object_set_new(args.fields, f->name, json_string(value));
        } else if (strcmp(arg, "--set") == 0) {
            const char *eq = strchr(value, '=');
            if (!eq || eq == value) {
                fprintf(stderr, "kooisvctl: market %s: --set needs NAME=VALUE\n", a->name);
                rc = MARKET_EXIT_USAGE;
                break;
            }
            char *name = xstrndup(value, (size_t)(eq - value));
            json_object_set_new(args.extra, name, json_string(eq + 1));
            free(name);
        } else {
            *option_slot(&args, opt) = value;
        }
    }
    if (rc == 0)
        rc = call_run(a, &args);
done:
    json_decref(args.fields);
    json_decref(args.extra);
    return rc;
}

int market_main(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        market_help(argc < 1 ? stderr : stdout);
        return argc < 1 ? MARKET_EXIT_USAGE : 0;
    }
    if (strcmp(argv[0], "check") == 0)
        return marketcheck_main(argc, argv);
    const activity_t *a = activity_find(argv[0]);
    if (!a) {
        fprintf(stderr, "kooisvctl: market: unknown activity '%s'; known:", argv[0]);
        for (size_t i = 0; i < N_ACTIVITIES; i++)
            fprintf(stderr, " %s", activities[i].name);
        fprintf(stderr, ", check\n");
        return MARKET_EXIT_USAGE;
    }
    return call_main(a, argc, argv);
}

/* For marketcheck: the configuration from its flags (same names as a call's). */
int market_conf_from_flags(market_conf_t *conf, const char *url, const char *basic_key_file,
                           const char *kit_key_file, const char *ca_file, const char *rsa_file,
                           const char *timeout)
{
    call_args_t a = {.url = url,
                     .basic_key_file = basic_key_file,
                     .kit_key_file = kit_key_file,
                     .ca_file = ca_file,
                     .rsa_file = rsa_file,
                     .timeout = timeout};
    return conf_load(conf, &a);
}
