/* kitsync: the five kit sync bodies (spec §4) checked field by field and turned into the
 * envelope bodies the tenant and app services receive. Everything the services may assume
 * (presence, type, length, allowed values) is decided here, with a message naming the field. */
#include "kitsync.h"
#include "resultcode.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basicreq.h"
#include "envbody.h"
#include "jsonfield.h"
#include "resref.h"
#include "xmalloc.h"

/* Field limits, in characters (Unicode code points): the spec states them in characters and a
 * Chinese org name is three bytes per character. */
enum {
    KIT_ID_MAX = 64,         /* instanceId, orderId, tenantId, tenantCode, appId, orgCode... */
    KIT_NAME_MAX = 128,      /* name, orgName, user name, position */
    KIT_DOMAIN_MAX = 256,    /* domainName */
    KIT_USER_NAME_MAX = 128, /* userName: account names are often e-mail addresses */
    KIT_CLIENT_ID_MAX = 128, /* OAuth client ids are longer than ours */
    KIT_SECRET_MAX = 4096,   /* base64 RSA ciphertext: 684 chars at 4096 bits, room for 8192 */
    KIT_MOBILE_MAX = 32,
    KIT_EMAIL_MAX = 254,    /* RFC 5321 path limit */
    KIT_SYNC_TIME_MAX = 32, /* currentSyncTime, opaque to us */
    KIT_LIST_MAX = 10000,   /* users or orgs in one call */
};

enum {
    F_OPTIONAL = 0, /* absent or null gives "" */
    F_REQUIRED = 1, /* present and not empty */
};

/* Member key of obj as a string within max characters. Absent or null: "" when optional,
 * an error when required; a required string must not be empty. Nothing in a kit body has a
 * reason to carry a control character, and they break logs and exports. */
static const char *get_string(const json_t *obj, const char *key, const char *label, long max,
                              int flags, const char **out, jsonfield_err_t *e)
{
    const char *s;
    *out = "";
    switch (jsonfield_string(obj, key, &s)) {
    case JSONFIELD_OK:
        break;
    case JSONFIELD_ABSENT:
        if (flags & F_REQUIRED)
            return jsonfield_fail(e, "%s: missing", label);
        return NULL;
    case JSONFIELD_HAS_NUL:
        return jsonfield_fail(e, "%s: contains a NUL character", label);
    default:
        return jsonfield_fail(e, "%s: must be a JSON string", label);
    }
    if (jsonfield_has_control(s))
        return jsonfield_fail(e, "%s: contains a control character", label);
    if ((long)jsonfield_chars(s) > max)
        return jsonfield_fail(e, "%s: longer than %ld characters", label, max);
    if ((flags & F_REQUIRED) && !*s)
        return jsonfield_fail(e, "%s: must not be empty", label);
    *out = s;
    return NULL;
}

/* Member key of obj as a JSON integer in [min, max]; absent or null gives def unless required.
 * Numbers only: §4 says these are JSON numbers here, and a string is a caller bug to surface. */
static const char *get_int(const json_t *obj, const char *key, const char *label, bool required,
                           long def, long min, long max, long *out, jsonfield_err_t *e)
{
    const json_t *v = json_object_get(obj, key);
    *out = def;
    if (!v || json_is_null(v)) {
        if (required)
            return jsonfield_fail(e, "%s: missing", label);
        return NULL;
    }
    if (!json_is_integer(v))
        return jsonfield_fail(e, "%s: must be a JSON integer", label);
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
        return jsonfield_fail(e, "%s: must be between %ld and %ld", label, min, max);
    *out = (long)i;
    return NULL;
}

/* timeStamp: optional; when given, yyyyMMddHHmmssSSS and a real calendar time. */
static const char *get_time_stamp(const json_t *body, const char **out, jsonfield_err_t *e)
{
    const char *code = get_string(body, "timeStamp", "timeStamp", 17, F_OPTIONAL, out, e);
    if (code || !**out)
        return code;
    switch (jsonfield_compact_time(*out, JSONFIELD_MILLIS)) {
    case JSONFIELD_OK:
        return NULL;
    case JSONFIELD_BAD_SHAPE:
        return jsonfield_fail(e, "timeStamp: must be yyyyMMddHHmmssSSS");
    default:
        return jsonfield_fail(e, "timeStamp: not a valid time");
    }
}

/* The label of field key in messages: the key itself in the body, "list[i].key" in an entry
 * of a list. */
static const char *kit_label(char *buf, size_t len, const char *list, size_t i, const char *key)
{
    if (!list)
        return key;
    snprintf(buf, len, "%s[%zu].%s", list, i, key);
    return buf;
}

/* One string field of a body or list entry, for get_strings, and the message field kit_copy
 * copies it to (its .proto name; NULL: copied by the caller). */
typedef struct {
    const char *key;
    long max;
    int flags;
    const char **out;
    const char *field;
} kit_field_t;

/* The string fields of obj, in order; the first problem is the one reported. list and i name
 * the list entry obj is (list NULL for the body itself). */
static const char *get_strings(const json_t *obj, const char *list, size_t i,
                               const kit_field_t *fields, size_t n, jsonfield_err_t *e)
{
    char label[64];
    for (size_t k = 0; k < n; k++) {
        const kit_field_t *f = &fields[k];
        const char *code = get_string(obj, f->key, kit_label(label, sizeof label, list, i, f->key),
                                      f->max, f->flags, f->out, e);
        if (code)
            return code;
    }
    return NULL;
}

/* Copy the fields get_strings read into message m. */
static void kit_copy(ProtobufCMessage *m, const kit_field_t *fields, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (fields[k].field)
            envbody_set_string(m, fields[k].field, *fields[k].out);
}

#define KIT_NFIELDS(fields) (sizeof(fields) / sizeof(fields)[0])

/* The fields every kit body shares: instanceId (may be "" in seller-console debugging),
 * tenantId, testFlag (0 or 1, absent = 0), timeStamp and, in all but allOrgSync, flag. */
typedef struct {
    const char *instance_id;
    const char *tenant_id;
    const char *time_stamp;
    long test_flag;
    long flag;
} kit_common_t;

/* The shared fields of body into c; flag_max < 0: the call has no flag, else a required
 * flag in 0..flag_max. */
static const char *get_common(const json_t *body, long flag_max, kit_common_t *c,
                              jsonfield_err_t *e)
{
    const kit_field_t ids[] = {
        {"instanceId", KIT_ID_MAX, F_OPTIONAL, &c->instance_id, NULL},
        {"tenantId", KIT_ID_MAX, F_REQUIRED, &c->tenant_id, NULL},
    };
    const char *code;
    c->flag = 0;
    if ((code = get_strings(body, NULL, 0, ids, KIT_NFIELDS(ids), e)) ||
        (code = get_int(body, "testFlag", "testFlag", false, 0, 0, 1, &c->test_flag, e)) ||
        (code = get_time_stamp(body, &c->time_stamp, e)))
        return code;
    if (flag_max < 0)
        return NULL;
    return get_int(body, "flag", "flag", true, 0, 0, flag_max, &c->flag, e);
}

/* A list given as a JSON array or as a JSON string holding one (both forms are seen in the
 * wild). *owned receives a reference the caller must drop (json_decref; may be NULL). */
static const char *get_list(const json_t *body, const char *key, const json_t **arr, json_t **owned,
                            jsonfield_err_t *e)
{
    json_error_t jerr;
    switch (jsonfield_embedded(body, key, JSON_ARRAY, arr, owned, &jerr)) {
    case JSONFIELD_OK:
        break;
    case JSONFIELD_ABSENT:
        return jsonfield_fail(e, "%s: missing", key);
    case JSONFIELD_BAD_JSON:
        return jsonfield_fail(e, "%s: string is not valid JSON (%s)", key, jerr.text);
    case JSONFIELD_STRING_HOLDS:
        return jsonfield_fail(e, "%s: string does not hold a JSON array", key);
    default:
        return jsonfield_fail(e, "%s: must be an array or a JSON string holding one", key);
    }
    if (json_array_size(*arr) > KIT_LIST_MAX) {
        json_decref(*owned);
        *owned = NULL;
        *arr = NULL;
        return jsonfield_fail(e, "%s: more than %d entries", key, KIT_LIST_MAX);
    }
    return NULL;
}

/* Duplicate detection over a list: sort (key, index) pairs, compare neighbours. */
typedef struct {
    const char *key;
    size_t index;
} keyed_t;

static int keyed_cmp(const void *a, const void *b)
{
    const keyed_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* First duplicate among keys[0..n): 1 with the two indexes set (second > first), else 0. */
static int find_duplicate(keyed_t *keys, size_t n, size_t *first, size_t *second)
{
    if (n < 2)
        return 0;
    qsort(keys, n, sizeof *keys, keyed_cmp);
    int found = 0;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(keys[i - 1].key, keys[i].key) == 0) {
            /* report the duplicate that appears earliest in the request */
            if (!found || keys[i].index < *second) {
                *first = keys[i - 1].index;
                *second = keys[i].index;
                found = 1;
            }
        }
    }
    return found;
}

/* Copy the shared fields and fields[0..n) (kit_copy) into m, a body message of body_case (NULL:
 * a new one), and make env carry it; returns it. */
static ProtobufCMessage *kit_attach(Kooisv__Envelope *env, Kooisv__Envelope__BodyCase body_case,
                                    ProtobufCMessage *m, const kit_common_t *c,
                                    const kit_field_t *fields, size_t n)
{
    if (m)
        envbody_attach(env, body_case, m);
    else
        m = envbody_new(env, body_case);
    envbody_set_string(m, "instance_id", c->instance_id);
    envbody_set_string(m, "tenant_id", c->tenant_id);
    envbody_set_string(m, "time_stamp", c->time_stamp);
    if (envbody_has_field(m, "flag"))
        envbody_set_int32(m, "flag", (int32_t)c->flag);
    kit_copy(m, fields, n);
    env->test_flag = c->test_flag == 1;
    return m;
}

/* Refuse the first key of a list given twice (keys[0..n) as filled by the list's builder). */
static const char *kit_unique(keyed_t *keys, size_t n, const char *list, const char *field,
                              jsonfield_err_t *e)
{
    size_t first = 0, second = 0;
    if (!find_duplicate(keys, n, &first, &second))
        return NULL;
    return jsonfield_fail(e, "%s[%zu].%s: duplicate of %s[%zu]", list, second, field, list, first);
}

/* A list a kit body carries: its member name, the member of its entries that must be unique,
 * whether it may be empty, and add, which checks entry i (JSON value o) for a call with flag,
 * appends what it makes to body and points *key at its key (borrowed from body). */
typedef struct {
    const char *name;
    const char *key_name;
    bool may_be_empty;
    const char *(*add)(const json_t *o, size_t i, long flag, ProtobufCMessage *body,
                       const char **key, jsonfield_err_t *e);
} kit_list_t;

/* *out: a new message of body_case holding the entries of the list in body (get_list), each
 * added by list->add, no key given twice; on failure *out is NULL. */
static const char *kit_list(const json_t *body, const kit_list_t *list, long flag,
                            Kooisv__Envelope__BodyCase body_case, ProtobufCMessage **out,
                            jsonfield_err_t *e)
{
    const json_t *arr;
    json_t *owned;
    const char *code;
    *out = NULL;
    if ((code = get_list(body, list->name, &arr, &owned, e)))
        return code;
    size_t n = json_array_size(arr);
    if (n == 0 && !list->may_be_empty) {
        json_decref(owned);
        return jsonfield_fail(e, "%s: must not be empty", list->name);
    }
    ProtobufCMessage *m = envbody_message_new(body_case);
    keyed_t *keys = xcalloc(n ? n : 1, sizeof *keys);
    for (size_t i = 0; i < n && !code; i++) {
        keys[i].index = i;
        code = list->add(json_array_get(arr, i), i, flag, m, &keys[i].key, e);
    }
    if (!code)
        code = kit_unique(keys, n, list->name, list->key_name, e);
    free(keys);
    json_decref(owned);
    if (code)
        protobuf_c_message_free_unpacked(m, NULL);
    else
        *out = m;
    return code;
}

/* ---- tenantSync ---- */

static const char *build_tenant(const json_t *body, Kooisv__Envelope *env,
                                Kooisv__Envelope__BodyCase body_case, jsonfield_err_t *e)
{
    kit_common_t c;
    const char *code, *order_id, *tenant_code, *name, *domain;
    if ((code = get_common(body, 2, &c, e)))
        return code;
    /* delete needs only the key; add needs the tenant's identity; modify changes name/domain */
    const kit_field_t fields[] = {
        {"orderId", KIT_ID_MAX, F_OPTIONAL, &order_id, "order_id"},
        {"tenantCode", KIT_ID_MAX, c.flag == 1 ? F_REQUIRED : F_OPTIONAL, &tenant_code,
         "tenant_code"},
        {"name", KIT_NAME_MAX, c.flag == 0 ? F_OPTIONAL : F_REQUIRED, &name, "name"},
        {"domainName", KIT_DOMAIN_MAX, F_OPTIONAL, &domain, "domain_name"},
    };
    if ((code = get_strings(body, NULL, 0, fields, KIT_NFIELDS(fields), e)))
        return code;
    kit_attach(env, body_case, NULL, &c, fields, KIT_NFIELDS(fields));
    return NULL;
}

/* ---- applicationSync ---- */

static const char *build_application(const json_t *body, Kooisv__Envelope *env,
                                     Kooisv__Envelope__BodyCase body_case, jsonfield_err_t *e)
{
    kit_common_t c;
    const char *code, *app_id, *client_id, *secret;
    if ((code = get_common(body, 2, &c, e)))
        return code;
    /* The secret's content is not checked here: an undecryptable one is 000101, decided by the
     * app service which holds the private key. */
    int need = c.flag == 0 ? F_OPTIONAL : F_REQUIRED;
    const kit_field_t fields[] = {
        {"appId", KIT_ID_MAX, F_REQUIRED, &app_id, "app_id"},
        {"clientId", KIT_CLIENT_ID_MAX, need, &client_id, "client_id"},
        {"clientSecret", KIT_SECRET_MAX, need, &secret, "client_secret"},
    };
    if ((code = get_strings(body, NULL, 0, fields, KIT_NFIELDS(fields), e)))
        return code;
    kit_attach(env, body_case, NULL, &c, fields, KIT_NFIELDS(fields));
    return NULL;
}

/* ---- authSync ---- */

/* employeeType: 1..4, absent/null/"" = 0. The spec gives no JSON type for it, so both a number
 * and a numeric string are taken. */
static const char *get_employee_type(const json_t *u, const char *label, int32_t *out,
                                     jsonfield_err_t *e)
{
    const json_t *v = json_object_get(u, "employeeType");
    *out = 0;
    if (!v || json_is_null(v))
        return NULL;
    long t;
    if (json_is_integer(v)) {
        t = (long)json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!*s)
            return NULL;
        if (strlen(s) != 1 || s[0] < '0' || s[0] > '9')
            return jsonfield_fail(e, "%s: must be 1, 2, 3 or 4", label);
        t = s[0] - '0';
    } else {
        return jsonfield_fail(e, "%s: must be a number 1..4", label);
    }
    if (t < 1 || t > 4)
        return jsonfield_fail(e, "%s: must be 1, 2, 3 or 4", label);
    *out = (int32_t)t;
    return NULL;
}

/* enable: "true"/"false" per the spec; JSON booleans are taken too (a Java client serialising
 * a Boolean field sends them), anything else is refused. *present says whether it was given. */
static const char *get_enable(const json_t *u, const char *label, bool required, bool *out,
                              jsonfield_err_t *e)
{
    const json_t *v = json_object_get(u, "enable");
    *out = false;
    if (!v || json_is_null(v) || (json_is_string(v) && !*json_string_value(v))) {
        if (required)
            return jsonfield_fail(e, "%s: missing", label);
        return NULL;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return NULL;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "true") == 0) {
            *out = true;
            return NULL;
        }
        if (strcmp(s, "false") == 0)
            return NULL;
    }
    return jsonfield_fail(e, "%s: must be \"true\" or \"false\"", label);
}

static const char *const kit_roles[] = {"user", "admin", NULL};

/* userList[i] (object u), checked for authSync's flag, appended to body (an AuthSync). */
static const char *add_user(const json_t *u, size_t i, long flag, ProtobufCMessage *body,
                            const char **key, jsonfield_err_t *e)
{
    char label[64];
    const char *code, *user_name, *name, *org_code, *position, *employee_code, *role, *mobile,
        *email;
    if (!json_is_object(u))
        return jsonfield_fail(e, "userList[%zu]: must be an object", i);
    /* delete (0) and cancel (3) only need the key: a repeated delete must not fail on detail */
    int need = (flag == 1 || flag == 2) ? F_REQUIRED : F_OPTIONAL;
    const kit_field_t fields[] = {
        {"userName", KIT_USER_NAME_MAX, F_REQUIRED, &user_name, "user_name"},
        {"name", KIT_NAME_MAX, need, &name, "name"},
        {"orgCode", KIT_ID_MAX, need, &org_code, "org_code"},
        {"position", KIT_NAME_MAX, F_OPTIONAL, &position, "position"},
        {"employeeCode", KIT_ID_MAX, F_OPTIONAL, &employee_code, "employee_code"},
        {"role", 8, need, &role, "role"},
        {"mobile", KIT_MOBILE_MAX, F_OPTIONAL, &mobile, "mobile"},
        {"email", KIT_EMAIL_MAX, F_OPTIONAL, &email, "email"},
    };
    if ((code = get_strings(u, "userList", i, fields, KIT_NFIELDS(fields), e)))
        return code;
#define LABEL(f) kit_label(label, sizeof label, "userList", i, f)
    if (*role && !jsonfield_in(role, kit_roles))
        return jsonfield_fail(e, "%s: must be \"user\" or \"admin\"", LABEL("role"));
    if (*mobile && strspn(mobile, "+-0123456789 ") != strlen(mobile))
        return jsonfield_fail(e, "%s: must hold digits, '+', '-' or spaces only", LABEL("mobile"));
    if (*email && (!strchr(email, '@') || strchr(email, ' ')))
        return jsonfield_fail(e, "%s: not an e-mail address", LABEL("email"));
    int32_t employee_type;
    if ((code = get_employee_type(u, LABEL("employeeType"), &employee_type, e)))
        return code;
    bool enable;
    if ((code = get_enable(u, LABEL("enable"), need == F_REQUIRED, &enable, e)))
        return code;
#undef LABEL
    Kooisv__SyncUser *su = (Kooisv__SyncUser *)envbody_add_entry(body, "users");
    kit_copy(&su->base, fields, KIT_NFIELDS(fields));
    su->employee_type = employee_type;
    su->enable = enable;
    *key = su->user_name;
    return NULL;
}

static const char *build_auth(const json_t *body, Kooisv__Envelope *env,
                              Kooisv__Envelope__BodyCase body_case, jsonfield_err_t *e)
{
    kit_common_t c;
    const char *code, *app_id, *sync_time;
    if ((code = get_common(body, 3, &c, e)))
        return code;
    const kit_field_t fields[] = {
        {"appId", KIT_ID_MAX, F_REQUIRED, &app_id, "app_id"},
        {"currentSyncTime", KIT_SYNC_TIME_MAX, F_OPTIONAL, &sync_time, "current_sync_time"},
    };
    if ((code = get_strings(body, NULL, 0, fields, KIT_NFIELDS(fields), e)))
        return code;
    static const kit_list_t users = {"userList", "userName", false, add_user};
    ProtobufCMessage *m;
    if ((code = kit_list(body, &users, c.flag, body_case, &m, e)))
        return code;
    kit_attach(env, body_case, m, &c, fields, KIT_NFIELDS(fields));
    return NULL;
}

/* ---- singleOrgSync / allOrgSync ---- */

/* An org's fields, as singleOrgSync's body and allOrgSync's list entries give them. */
typedef struct {
    const char *code;
    const char *name;
    const char *parent;
} kit_org_t;

/* orgCode, orgName and parentCode of obj (the body, or entry i of list); an org cannot be its
 * own parent. */
static const char *get_org(const json_t *obj, const char *list, size_t i, int need_name,
                           kit_org_t *org, jsonfield_err_t *e)
{
    char label[64];
    const kit_field_t fields[] = {
        {"orgCode", KIT_ID_MAX, F_REQUIRED, &org->code, NULL},
        {"orgName", KIT_NAME_MAX, need_name, &org->name, NULL},
        {"parentCode", KIT_ID_MAX, F_OPTIONAL, &org->parent, NULL},
    };
    const char *code = get_strings(obj, list, i, fields, KIT_NFIELDS(fields), e);
    if (!code && strcmp(org->parent, org->code) == 0)
        code = jsonfield_fail(e, "%s: an org cannot be its own parent",
                              kit_label(label, sizeof label, list, i, "parentCode"));
    return code;
}

/* Copy org into m, a SingleOrgSync or a SyncOrg (the same field names). */
static void kit_org_copy(ProtobufCMessage *m, const kit_org_t *org)
{
    envbody_set_string(m, "org_code", org->code);
    envbody_set_string(m, "org_name", org->name);
    envbody_set_string(m, "parent_code", org->parent);
}

static const char *build_single_org(const json_t *body, Kooisv__Envelope *env,
                                    Kooisv__Envelope__BodyCase body_case, jsonfield_err_t *e)
{
    kit_common_t c;
    kit_org_t org;
    const char *code;
    if ((code = get_common(body, 2, &c, e)) ||
        (code = get_org(body, NULL, 0, c.flag == 0 ? F_OPTIONAL : F_REQUIRED, &org, e)))
        return code;
    kit_org_copy(kit_attach(env, body_case, NULL, &c, NULL, 0), &org);
    return NULL;
}

/* orgInfoList[i] (object o), appended to body (an AllOrgSync); flag is unused. */
static const char *add_org(const json_t *o, size_t i, long flag, ProtobufCMessage *body,
                           const char **key, jsonfield_err_t *e)
{
    kit_org_t org;
    const char *code;
    if (!json_is_object(o))
        return jsonfield_fail(e, "orgInfoList[%zu]: must be an object", i);
    if ((code = get_org(o, "orgInfoList", i, F_REQUIRED, &org, e)))
        return code;
    ProtobufCMessage *so = envbody_add_entry(body, "orgs");
    kit_org_copy(so, &org);
    *key = envbody_string(so, "org_code");
    return NULL;
}

/* An empty list is accepted: a full replace with nothing empties the tenant's tree. Cycles are
 * refused by the tenant service, which checks the list it stores. */
static const char *build_all_org(const json_t *body, Kooisv__Envelope *env,
                                 Kooisv__Envelope__BodyCase body_case, jsonfield_err_t *e)
{
    kit_common_t c;
    const char *code;
    if ((code = get_common(body, -1, &c, e)))
        return code;
    static const kit_list_t orgs = {"orgInfoList", "orgCode", true, add_org};
    ProtobufCMessage *m;
    if ((code = kit_list(body, &orgs, c.flag, body_case, &m, e)))
        return code;
    kit_attach(env, body_case, m, &c, NULL, 0);
    return NULL;
}

/* ---- table ---- */

/* A sync call: its name, the service that owns it, its builder, the body case the builder
 * makes (handed to it) and the resources that body names besides its list. */
typedef struct {
    const char *name;
    service_id_t svc;
    const char *(*build)(const json_t *body, Kooisv__Envelope *env,
                         Kooisv__Envelope__BodyCase body_case, jsonfield_err_t *e);
    Kooisv__Envelope__BodyCase body_case;
    const envbody_ref_t *refs;
} kit_call_t;

/* The resources the bodies name besides their lists (a kind NULL ends each). */
static const envbody_ref_t tenant_refs[] = {
    {"instance", "instance_id"}, {"order", "order_id"}, {"tenant", "tenant_id"}, {NULL, NULL}};
static const envbody_ref_t app_refs[] = {
    {"instance", "instance_id"}, {"tenant", "tenant_id"}, {"app", "app_id"}, {NULL, NULL}};
static const envbody_ref_t single_org_refs[] = {
    {"instance", "instance_id"}, {"tenant", "tenant_id"}, {"org", "org_code"}, {NULL, NULL}};
static const envbody_ref_t all_org_refs[] = {
    {"instance", "instance_id"}, {"tenant", "tenant_id"}, {NULL, NULL}};

static const kit_call_t kit_calls[] = {
    {"tenantSync", SVC_TENANT, build_tenant, KOOISV__ENVELOPE__BODY_TENANT_SYNC, tenant_refs},
    {"applicationSync", SVC_APP, build_application, KOOISV__ENVELOPE__BODY_APPLICATION_SYNC,
     app_refs},
    {"authSync", SVC_APP, build_auth, KOOISV__ENVELOPE__BODY_AUTH_SYNC, app_refs},
    {"singleOrgSync", SVC_TENANT, build_single_org, KOOISV__ENVELOPE__BODY_SINGLE_ORG_SYNC,
     single_org_refs},
    {"allOrgSync", SVC_TENANT, build_all_org, KOOISV__ENVELOPE__BODY_ALL_ORG_SYNC, all_org_refs},
};

/* The call whose body is of case body_case, or NULL when it is not a kit body. */
static const kit_call_t *kit_of_case(Kooisv__Envelope__BodyCase body_case)
{
    for (size_t i = 0; i < sizeof kit_calls / sizeof kit_calls[0]; i++)
        if (kit_calls[i].body_case == body_case)
            return &kit_calls[i];
    return NULL;
}

static const kit_call_t *kit_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof kit_calls / sizeof kit_calls[0]; i++)
        if (strcmp(kit_calls[i].name, name) == 0)
            return &kit_calls[i];
    return NULL;
}

int kitsync_known(const char *name)
{
    return kit_find(name) != NULL;
}

const char *kitsync_build(const char *name, const json_t *body, Kooisv__Envelope *env,
                          service_id_t *svc_out, char *msg, size_t msglen)
{
    jsonfield_err_t e = {.msg = msg, .len = msglen};
    if (msg && msglen)
        msg[0] = '\0';
    const kit_call_t *call = kit_find(name);
    if (!call)
        return jsonfield_fail(&e, "unknown sync interface");
    if (!json_is_object(body))
        return jsonfield_fail(&e, "body: must be a JSON object");
    const char *code = call->build(body, env, call->body_case, &e);
    if (code)
        return code;
    if (svc_out)
        *svc_out = call->svc;
    if (msg && msglen)
        snprintf(msg, msglen, "success");
    return RC_OK;
}

void kitsync_free_body(Kooisv__Envelope *env)
{
    if (env && kit_of_case(env->body_case)) /* any other body is not ours to free */
        envbody_free(env);
}

/* The audit service takes at most 128 resources per record: a long user or org list is named
 * up to KIT_AUDIT_NAMED entries, then summarised in one more ("+9880 more"); the complete list
 * is in the service's outbox event for the same request id. */
enum { KIT_AUDIT_NAMED = 120 };

static void add_list_ref(Kooisv__ResourceRef ***res, size_t *n, const char *kind, size_t i,
                         size_t total, const char *id)
{
    if (i < KIT_AUDIT_NAMED) {
        resref_add(res, n, kind, id);
    } else if (i == KIT_AUDIT_NAMED) {
        char more[64];
        snprintf(more, sizeof more, "+%zu more", total - KIT_AUDIT_NAMED);
        resref_add(res, n, kind, more);
    }
}

void kitsync_resources(const Kooisv__Envelope *env, Kooisv__ResourceRef ***res, size_t *n)
{
    const kit_call_t *call = env ? kit_of_case(env->body_case) : NULL;
    if (!call)
        return;
    envbody_add_refs(env, call->refs, res, n);
    /* the users and orgs touched: the audit record must name them (spec §8) */
    if (env->body_case == KOOISV__ENVELOPE__BODY_AUTH_SYNC) {
        const Kooisv__AuthSync *m = env->auth_sync;
        for (size_t i = 0; i < m->n_users; i++)
            add_list_ref(res, n, "user", i, m->n_users, m->users[i]->user_name);
    } else if (env->body_case == KOOISV__ENVELOPE__BODY_ALL_ORG_SYNC) {
        const Kooisv__AllOrgSync *m = env->all_org_sync;
        for (size_t i = 0; i < m->n_orgs; i++)
            add_list_ref(res, n, "org", i, m->n_orgs, m->orgs[i]->org_code);
    }
}
