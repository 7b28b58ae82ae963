#include "basicreq.h"
#include "resultcode.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canonjson.h"
#include "envbody.h"
#include "jsonfield.h"
#include "timeutil.h"
#include "xmalloc.h"

static const char *const activity_names[BASIC__COUNT] = {
    "newInstance",     "queryInstance",   "refreshInstance",     "updateInstanceStatus",
    "releaseInstance", "upgradeInstance", "changeInstanceCheck", "getLicenseAsync",
};

static const char *const scenes[] = {"TRIAL_TO_FORMAL", "RENEWAL", "UNSUBSCRIBE_RENEWAL_PERIOD",
                                     NULL};
static const char *const statuses[] = {"FREEZE", "UNFREEZE", NULL};

int basicreq_activity(const json_t *body)
{
    const char *name = json_string_value(json_object_get(body, "activity"));
    if (!name)
        return -1;
    for (int i = 0; i < BASIC__COUNT; i++)
        if (strcmp(name, activity_names[i]) == 0)
            return i;
    return -1;
}

const char *basicreq_activity_name(basic_activity_t activity)
{
    return activity >= 0 && activity < BASIC__COUNT ? activity_names[activity] : "unknown";
}

/* ------------------------------------------------------------------ field checks */

/* One validation pass: the first problem found wins and is the one reported. */
typedef struct {
    const json_t *body;
    jsonfield_err_t err;
} check_t;

/* A string field: NULL when absent or null. Present values must be strings without NUL or
 * control characters, non-empty when mandatory, at most maxchars long (0: no limit). */
static const char *field_str(check_t *c, const char *name, bool mandatory, size_t maxchars)
{
    if (c->err.failed)
        return NULL;
    const char *s;
    switch (jsonfield_string(c->body, name, &s)) {
    case JSONFIELD_OK:
        break;
    case JSONFIELD_ABSENT:
        if (mandatory)
            jsonfield_fail(&c->err, "%s is missing", name);
        return NULL;
    case JSONFIELD_HAS_NUL:
        jsonfield_fail(&c->err, "%s contains a NUL character", name);
        return NULL;
    default:
        jsonfield_fail(&c->err, "%s must be a JSON string", name);
        return NULL;
    }
    if (mandatory && !*s) {
        jsonfield_fail(&c->err, "%s is empty", name);
        return NULL;
    }
    if (maxchars && jsonfield_chars(s) > maxchars) {
        jsonfield_fail(&c->err, "%s is longer than %zu characters", name, maxchars);
        return NULL;
    }
    if (jsonfield_has_control(s)) {
        jsonfield_fail(&c->err, "%s contains control characters", name);
        return NULL;
    }
    return s;
}

static const char *field_id(check_t *c, const char *name, bool mandatory)
{
    return field_str(c, name, mandatory, BASICREQ_ID_MAX);
}

static const char *field_enum(check_t *c, const char *name, bool mandatory,
                              const char *const *allowed)
{
    const char *s = field_str(c, name, mandatory, 64);
    if (!s || !*s || jsonfield_in(s, allowed))
        return s;
    char list[160];
    jsonfield_list(allowed, list, sizeof list);
    jsonfield_fail(&c->err, "%s must be one of %s", name, list);
    return NULL;
}

/* yyyyMMddHHmmss, a real calendar time (refreshInstance.expireTime). */
static const char *field_time(check_t *c, const char *name, bool mandatory)
{
    const char *s = field_str(c, name, mandatory, 0);
    if (!s || !*s)
        return s;
    if (jsonfield_compact_time(s, JSONFIELD_SECONDS) != JSONFIELD_OK) {
        jsonfield_fail(&c->err, "%s must be a calendar time as yyyyMMddHHmmss", name);
        return NULL;
    }
    return s;
}

/* A getLicenseAsync time in any form of spec §3 (common/timeutil: time_parse_license). */
static const char *field_license_time(check_t *c, const char *name, bool mandatory)
{
    const char *s = field_str(c, name, mandatory, 0);
    char why[160];
    if (!s || !*s)
        return s;
    if (!time_parse_license(s, NULL, why, sizeof why)) {
        jsonfield_fail(&c->err, "%s %s", name, why);
        return NULL;
    }
    return s;
}

/* Field readers of the body tables: one signature, the check and its limits chosen by name. */
typedef const char *(*field_read_t)(check_t *c, const char *name, bool mandatory);

static const char *field_scene(check_t *c, const char *name, bool mandatory)
{
    return field_enum(c, name, mandatory, scenes);
}

static const char *field_status(check_t *c, const char *name, bool mandatory)
{
    return field_enum(c, name, mandatory, statuses);
}

static const char *field_fingerprint(check_t *c, const char *name, bool mandatory)
{
    return field_str(c, name, mandatory, BASICREQ_FINGERPRINT_MAX);
}

/* ------------------------------------------------------------------ body builders */

/* One string field of a body: request member name, read and checked by read, copied into the
 * message's field (its .proto name). */
typedef struct {
    const char *name;
    const char *field;
    field_read_t read;
    bool mandatory;
} body_field_t;

typedef struct body_spec body_spec_t;

/* One activity's body: its oneof case, its builder, the string fields build_fields checks (in
 * that order: the first problem is the one reported; name NULL ends) and the resources it
 * names. */
struct body_spec {
    Kooisv__Envelope__BodyCase body_case;
    bool (*build)(check_t *c, Kooisv__Envelope *env, const body_spec_t *spec);
    body_field_t fields[6];
    const envbody_ref_t *refs;
};

/* A body made only of string fields. */
static bool build_fields(check_t *c, Kooisv__Envelope *env, const body_spec_t *spec)
{
    const char *values[sizeof spec->fields / sizeof spec->fields[0]];
    size_t n = 0;
    for (; n < sizeof values / sizeof values[0] && spec->fields[n].name; n++)
        values[n] = spec->fields[n].read(c, spec->fields[n].name, spec->fields[n].mandatory);
    if (c->err.failed)
        return false;
    ProtobufCMessage *m = envbody_new(env, spec->body_case);
    for (size_t i = 0; i < n; i++)
        envbody_set_string(m, spec->fields[i].field, values[i]);
    return true;
}

static void set_test_flag(check_t *c, Kooisv__Envelope *env)
{
    const char *flag = field_str(c, "testFlag", false, 1);
    if (c->err.failed)
        return;
    if (flag && strcmp(flag, "0") != 0 && strcmp(flag, "1") != 0) {
        jsonfield_fail(&c->err, "testFlag must be \"0\" or \"1\"");
        return;
    }
    env->test_flag = flag && strcmp(flag, "1") == 0;
}

/* instanceId: 1..100 comma-separated ids, spaces around each trimmed, duplicates dropped. */
static bool build_query_instance(check_t *c, Kooisv__Envelope *env, const body_spec_t *spec)
{
    const char *list = field_str(c, "instanceId", true, 0);
    if (c->err.failed)
        return false;
    char **ids = NULL;
    size_t n = 0, count = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        while (len && *s == ' ') {
            s++;
            len--;
        }
        while (len && s[len - 1] == ' ')
            len--;
        if (!len) {
            jsonfield_fail(&c->err, "instanceId holds an empty id");
            break;
        }
        if (++count > BASICREQ_INSTANCE_IDS_MAX) {
            jsonfield_fail(&c->err, "instanceId holds more than %d ids", BASICREQ_INSTANCE_IDS_MAX);
            break;
        }
        char *id = xstrndup(s, len);
        if (jsonfield_chars(id) > BASICREQ_ID_MAX) {
            free(id);
            jsonfield_fail(&c->err, "instanceId holds an id longer than %d characters",
                           BASICREQ_ID_MAX);
            break;
        }
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = strcmp(ids[i], id) == 0;
        if (dup) {
            free(id);
        } else {
            ids = xrealloc(ids, (n + 1) * sizeof *ids);
            ids[n++] = id;
        }
        if (!end)
            break;
        p = end + 1;
    }
    if (c->err.failed) {
        for (size_t i = 0; i < n; i++)
            free(ids[i]);
        free(ids);
        return false;
    }
    Kooisv__QueryInstance *m = (Kooisv__QueryInstance *)envbody_new(env, spec->body_case);
    m->instance_ids = ids;
    m->n_instance_ids = n;
    return true;
}

/* productInfo: an object, or a JSON string holding one (the marketplace sends both). */
static bool build_change_check(check_t *c, Kooisv__Envelope *env, const body_spec_t *spec)
{
    const char *instance = field_id(c, "instanceId", true);
    if (c->err.failed)
        return false;
    const json_t *v;
    json_t *parsed;
    json_error_t err;
    switch (jsonfield_embedded(c->body, "productInfo", JSON_OBJECT, &v, &parsed, &err)) {
    case JSONFIELD_OK:
        break;
    case JSONFIELD_ABSENT:
        jsonfield_fail(&c->err, "productInfo is missing");
        return false;
    default:
        jsonfield_fail(&c->err, "productInfo must be a JSON object or a string holding one");
        return false;
    }
    check_t inner = {.body = v, .err = {.msg = c->err.msg, .len = c->err.len}};
    const char *product = field_id(&inner, "productId", true);
    char *canonical = inner.err.failed ? NULL : canonjson_dump(v);
    if (inner.err.failed || !canonical) {
        if (!inner.err.failed)
            jsonfield_fail(&c->err, "productInfo holds a number that cannot be represented");
        else
            c->err.failed = true; /* inner wrote "productId ..." */
        free(canonical);
        json_decref(parsed);
        return false;
    }
    Kooisv__ChangeInstanceCheck *m =
        (Kooisv__ChangeInstanceCheck *)envbody_new(env, spec->body_case);
    m->instance_id = xstrdup(instance);
    m->product_id = jsonfield_copy(product);
    m->product_info_json = canonical;
    json_decref(parsed);
    return true;
}

/* The resources the bodies name (a kind NULL ends each list). */
static const envbody_ref_t order_refs[] = {
    {"order", "order_id"}, {"order_line", "order_line_id"}, {NULL, NULL}};
static const envbody_ref_t instance_refs[] = {{"instance", "instance_id"}, {NULL, NULL}};
static const envbody_ref_t instance_order_refs[] = {{"instance", "instance_id"},
                                                    {"order", "order_id"},
                                                    {"order_line", "order_line_id"},
                                                    {NULL, NULL}};

/* The bodies, by activity. */
static const body_spec_t bodies[BASIC__COUNT] = {
    [BASIC_NEW_INSTANCE] = {KOOISV__ENVELOPE__BODY_NEW_INSTANCE,
                            build_fields,
                            {{"orderId", "order_id", field_id, true},
                             {"orderLineId", "order_line_id", field_id, true},
                             {"businessId", "business_id", field_id, true}},
                            order_refs},
    /* its resources are its list of instance ids: see basicreq_resources */
    [BASIC_QUERY_INSTANCE] = {KOOISV__ENVELOPE__BODY_QUERY_INSTANCE,
                              build_query_instance,
                              {},
                              NULL},
    [BASIC_REFRESH_INSTANCE] = {KOOISV__ENVELOPE__BODY_REFRESH_INSTANCE,
                                build_fields,
                                {{"scene", "scene", field_scene, true},
                                 {"orderId", "order_id", field_id, true},
                                 {"orderLineId", "order_line_id", field_id, true},
                                 {"instanceId", "instance_id", field_id, true},
                                 {"expireTime", "expire_time", field_time, true},
                                 {"productId", "product_id", field_id, false}},
                                instance_order_refs},
    [BASIC_UPDATE_INSTANCE_STATUS] = {KOOISV__ENVELOPE__BODY_UPDATE_INSTANCE_STATUS,
                                      build_fields,
                                      {{"instanceId", "instance_id", field_id, true},
                                       {"status", "status", field_status, true}},
                                      instance_refs},
    [BASIC_RELEASE_INSTANCE] = {KOOISV__ENVELOPE__BODY_RELEASE_INSTANCE,
                                build_fields,
                                {{"instanceId", "instance_id", field_id, true},
                                 {"orderId", "order_id", field_id, false},
                                 {"orderLineId", "order_line_id", field_id, false}},
                                instance_order_refs},
    [BASIC_UPGRADE_INSTANCE] = {KOOISV__ENVELOPE__BODY_UPGRADE_INSTANCE,
                                build_fields,
                                {{"instanceId", "instance_id", field_id, true},
                                 {"orderId", "order_id", field_id, true},
                                 {"orderLineId", "order_line_id", field_id, true},
                                 {"productId", "product_id", field_id, false}},
                                instance_order_refs},
    [BASIC_CHANGE_INSTANCE_CHECK] = {KOOISV__ENVELOPE__BODY_CHANGE_INSTANCE_CHECK,
                                     build_change_check,
                                     {},
                                     instance_refs},
    [BASIC_GET_LICENSE_ASYNC] = {KOOISV__ENVELOPE__BODY_GET_LICENSE_ASYNC,
                                 build_fields,
                                 {{"instanceId", "instance_id", field_id, true},
                                  {"eventId", "event_id", field_id, true},
                                  {"effectiveTime", "effective_time", field_license_time, true},
                                  {"expireTime", "expire_time", field_license_time, false},
                                  {"deviceFingerprint", "device_fingerprint", field_fingerprint,
                                   false}},
                                 instance_refs},
};

/* The body of oneof case body_case, or NULL when it is not a basic body. */
static const body_spec_t *body_of_case(Kooisv__Envelope__BodyCase body_case)
{
    for (int i = 0; i < BASIC__COUNT; i++)
        if (bodies[i].body_case == body_case)
            return &bodies[i];
    return NULL;
}

const char *basicreq_build(const json_t *body, Kooisv__Envelope *env, char *msg, size_t msglen)
{
    check_t c = {.body = body, .err = {.msg = msg, .len = msglen}};
    if (!json_is_object(body)) {
        snprintf(msg, msglen, "request body must be a JSON object");
        return RC_INVALID;
    }
    const json_t *act = json_object_get(body, "activity");
    if (!act || json_is_null(act)) {
        snprintf(msg, msglen, "activity is missing");
        return RC_INVALID;
    }
    if (!json_is_string(act)) {
        snprintf(msg, msglen, "activity must be a JSON string");
        return RC_INVALID;
    }
    int a = basicreq_activity(body);
    if (a < 0) {
        snprintf(msg, msglen, "unknown activity");
        return RC_INVALID;
    }
    set_test_flag(&c, env);
    if (c.err.failed)
        return RC_INVALID;
    bool ok = bodies[a].build(&c, env, &bodies[a]);
    if (!ok) {
        env->test_flag = 0;
        return RC_INVALID;
    }
    snprintf(msg, msglen, "ok");
    return RC_OK;
}

void basicreq_free_body(Kooisv__Envelope *env)
{
    if (body_of_case(env->body_case)) /* any other body is not ours to free */
        envbody_free(env);
}

void basicreq_resources(const Kooisv__Envelope *env, Kooisv__ResourceRef ***res, size_t *n)
{
    const body_spec_t *spec = body_of_case(env->body_case);
    if (!spec)
        return;
    envbody_add_refs(env, spec->refs, res, n);
    if (env->body_case == KOOISV__ENVELOPE__BODY_QUERY_INSTANCE)
        for (size_t i = 0; i < env->query_instance->n_instance_ids; i++)
            resref_add(res, n, "instance", env->query_instance->instance_ids[i]);
}
