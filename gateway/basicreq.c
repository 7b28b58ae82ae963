#include "basicreq.h"
#include "resultcode.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canonjson.h"
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

/* ------------------------------------------------------------------ body builders */

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

static bool build_new_instance(check_t *c, Kooisv__Envelope *env)
{
    const char *order = field_id(c, "orderId", true);
    const char *line = field_id(c, "orderLineId", true);
    const char *business = field_id(c, "businessId", true);
    if (c->err.failed)
        return false;
    Kooisv__NewInstance *m = xmalloc(sizeof *m);
    kooisv__new_instance__init(m);
    m->order_id = xstrdup(order);
    m->order_line_id = xstrdup(line);
    m->business_id = xstrdup(business);
    env->body_case = KOOISV__ENVELOPE__BODY_NEW_INSTANCE;
    env->new_instance = m;
    return true;
}

/* instanceId: 1..100 comma-separated ids, spaces around each trimmed, duplicates dropped. */
static bool build_query_instance(check_t *c, Kooisv__Envelope *env)
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
    Kooisv__QueryInstance *m = xmalloc(sizeof *m);
    kooisv__query_instance__init(m);
    m->instance_ids = ids;
    m->n_instance_ids = n;
    env->body_case = KOOISV__ENVELOPE__BODY_QUERY_INSTANCE;
    env->query_instance = m;
    return true;
}

static bool build_refresh_instance(check_t *c, Kooisv__Envelope *env)
{
    const char *scene = field_enum(c, "scene", true, scenes);
    const char *order = field_id(c, "orderId", true);
    const char *line = field_id(c, "orderLineId", true);
    const char *instance = field_id(c, "instanceId", true);
    const char *expire = field_time(c, "expireTime", true);
    const char *product = field_id(c, "productId", false);
    if (c->err.failed)
        return false;
    Kooisv__RefreshInstance *m = xmalloc(sizeof *m);
    kooisv__refresh_instance__init(m);
    m->scene = xstrdup(scene);
    m->order_id = xstrdup(order);
    m->order_line_id = xstrdup(line);
    m->instance_id = xstrdup(instance);
    m->expire_time = xstrdup(expire);
    m->product_id = jsonfield_copy(product);
    env->body_case = KOOISV__ENVELOPE__BODY_REFRESH_INSTANCE;
    env->refresh_instance = m;
    return true;
}

static bool build_update_status(check_t *c, Kooisv__Envelope *env)
{
    const char *instance = field_id(c, "instanceId", true);
    const char *status = field_enum(c, "status", true, statuses);
    if (c->err.failed)
        return false;
    Kooisv__UpdateInstanceStatus *m = xmalloc(sizeof *m);
    kooisv__update_instance_status__init(m);
    m->instance_id = xstrdup(instance);
    m->status = xstrdup(status);
    env->body_case = KOOISV__ENVELOPE__BODY_UPDATE_INSTANCE_STATUS;
    env->update_instance_status = m;
    return true;
}

static bool build_release_instance(check_t *c, Kooisv__Envelope *env)
{
    const char *instance = field_id(c, "instanceId", true);
    const char *order = field_id(c, "orderId", false);
    const char *line = field_id(c, "orderLineId", false);
    if (c->err.failed)
        return false;
    Kooisv__ReleaseInstance *m = xmalloc(sizeof *m);
    kooisv__release_instance__init(m);
    m->instance_id = xstrdup(instance);
    m->order_id = jsonfield_copy(order);
    m->order_line_id = jsonfield_copy(line);
    env->body_case = KOOISV__ENVELOPE__BODY_RELEASE_INSTANCE;
    env->release_instance = m;
    return true;
}

static bool build_upgrade_instance(check_t *c, Kooisv__Envelope *env)
{
    const char *instance = field_id(c, "instanceId", true);
    const char *order = field_id(c, "orderId", true);
    const char *line = field_id(c, "orderLineId", true);
    const char *product = field_id(c, "productId", false);
    if (c->err.failed)
        return false;
    Kooisv__UpgradeInstance *m = xmalloc(sizeof *m);
    kooisv__upgrade_instance__init(m);
    m->instance_id = xstrdup(instance);
    m->order_id = xstrdup(order);
    m->order_line_id = xstrdup(line);
    m->product_id = jsonfield_copy(product);
    env->body_case = KOOISV__ENVELOPE__BODY_UPGRADE_INSTANCE;
    env->upgrade_instance = m;
    return true;
}

/* productInfo: an object, or a JSON string holding one (the marketplace sends both). */
static bool build_change_check(check_t *c, Kooisv__Envelope *env)
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
    Kooisv__ChangeInstanceCheck *m = xmalloc(sizeof *m);
    kooisv__change_instance_check__init(m);
    m->instance_id = xstrdup(instance);
    m->product_id = jsonfield_copy(product);
    m->product_info_json = canonical;
    json_decref(parsed);
    env->body_case = KOOISV__ENVELOPE__BODY_CHANGE_INSTANCE_CHECK;
    env->change_instance_check = m;
    return true;
}

static bool build_get_license(check_t *c, Kooisv__Envelope *env)
{
    const char *instance = field_id(c, "instanceId", true);
    const char *event = field_id(c, "eventId", true);
    const char *effective = field_license_time(c, "effectiveTime", true);
    const char *expire = field_license_time(c, "expireTime", false);
    const char *fingerprint = field_str(c, "deviceFingerprint", false, BASICREQ_FINGERPRINT_MAX);
    if (c->err.failed)
        return false;
    Kooisv__GetLicenseAsync *m = xmalloc(sizeof *m);
    kooisv__get_license_async__init(m);
    m->instance_id = xstrdup(instance);
    m->event_id = xstrdup(event);
    m->effective_time = xstrdup(effective);
    m->expire_time = jsonfield_copy(expire);
    m->device_fingerprint = jsonfield_copy(fingerprint);
    env->body_case = KOOISV__ENVELOPE__BODY_GET_LICENSE_ASYNC;
    env->get_license_async = m;
    return true;
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
    bool ok = false;
    switch ((basic_activity_t)a) {
    case BASIC_NEW_INSTANCE:
        ok = build_new_instance(&c, env);
        break;
    case BASIC_QUERY_INSTANCE:
        ok = build_query_instance(&c, env);
        break;
    case BASIC_REFRESH_INSTANCE:
        ok = build_refresh_instance(&c, env);
        break;
    case BASIC_UPDATE_INSTANCE_STATUS:
        ok = build_update_status(&c, env);
        break;
    case BASIC_RELEASE_INSTANCE:
        ok = build_release_instance(&c, env);
        break;
    case BASIC_UPGRADE_INSTANCE:
        ok = build_upgrade_instance(&c, env);
        break;
    case BASIC_CHANGE_INSTANCE_CHECK:
        ok = build_change_check(&c, env);
        break;
    case BASIC_GET_LICENSE_ASYNC:
        ok = build_get_license(&c, env);
        break;
    case BASIC__COUNT:
        break;
    }
    if (!ok) {
        env->test_flag = 0;
        return RC_INVALID;
    }
    snprintf(msg, msglen, "ok");
    return RC_OK;
}

void basicreq_free_body(Kooisv__Envelope *env)
{
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_NEW_INSTANCE:
    case KOOISV__ENVELOPE__BODY_QUERY_INSTANCE:
    case KOOISV__ENVELOPE__BODY_REFRESH_INSTANCE:
    case KOOISV__ENVELOPE__BODY_UPDATE_INSTANCE_STATUS:
    case KOOISV__ENVELOPE__BODY_RELEASE_INSTANCE:
    case KOOISV__ENVELOPE__BODY_UPGRADE_INSTANCE:
    case KOOISV__ENVELOPE__BODY_CHANGE_INSTANCE_CHECK:
    case KOOISV__ENVELOPE__BODY_GET_LICENSE_ASYNC:
        /* Every string and list of the message is malloc'ed (the builders copy): protobuf-c
         * frees them as it frees a message it unpacked. The oneof's members share storage. */
        protobuf_c_message_free_unpacked(&env->new_instance->base, NULL);
        break;
    default:
        return; /* not a basic body: not ours to free */
    }
    env->body_case = KOOISV__ENVELOPE__BODY__NOT_SET;
    env->new_instance = NULL;
}

void basicreq_resources(const Kooisv__Envelope *env, Kooisv__ResourceRef ***res, size_t *n)
{
    switch (env->body_case) {
    case KOOISV__ENVELOPE__BODY_NEW_INSTANCE:
        resref_add(res, n, "order", env->new_instance->order_id);
        resref_add(res, n, "order_line", env->new_instance->order_line_id);
        break;
    case KOOISV__ENVELOPE__BODY_QUERY_INSTANCE:
        for (size_t i = 0; i < env->query_instance->n_instance_ids; i++)
            resref_add(res, n, "instance", env->query_instance->instance_ids[i]);
        break;
    case KOOISV__ENVELOPE__BODY_REFRESH_INSTANCE:
        resref_add(res, n, "instance", env->refresh_instance->instance_id);
        resref_add(res, n, "order", env->refresh_instance->order_id);
        resref_add(res, n, "order_line", env->refresh_instance->order_line_id);
        break;
    case KOOISV__ENVELOPE__BODY_UPDATE_INSTANCE_STATUS:
        resref_add(res, n, "instance", env->update_instance_status->instance_id);
        break;
    case KOOISV__ENVELOPE__BODY_RELEASE_INSTANCE:
        resref_add(res, n, "instance", env->release_instance->instance_id);
        resref_add(res, n, "order", env->release_instance->order_id);
        resref_add(res, n, "order_line", env->release_instance->order_line_id);
        break;
    case KOOISV__ENVELOPE__BODY_UPGRADE_INSTANCE:
        resref_add(res, n, "instance", env->upgrade_instance->instance_id);
        resref_add(res, n, "order", env->upgrade_instance->order_id);
        resref_add(res, n, "order_line", env->upgrade_instance->order_line_id);
        break;
    case KOOISV__ENVELOPE__BODY_CHANGE_INSTANCE_CHECK:
        resref_add(res, n, "instance", env->change_instance_check->instance_id);
        break;
    case KOOISV__ENVELOPE__BODY_GET_LICENSE_ASYNC:
        resref_add(res, n, "instance", env->get_license_async->instance_id);
        break;
    default:
        break;
    }
}
