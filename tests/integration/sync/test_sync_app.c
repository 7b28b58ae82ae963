/* Kit applicationSync and authSync end to end: marketplace-signed HTTPS through the gateway to
 * the app service and PostgreSQL (suite fixture). clientSecret is encrypted by the test with the
 * suite's RSA public key in each OAEP variant the marketplace's Java providers produce. */
#include <openssl/rsa.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kclient.h"
#include "rsaoaep.h"
#include "synctest.h"
#include "xmalloc.h"

/* Users of (inst, tenant), every app. */
static long app_user_count(const char *inst, const char *tenant)
{
    const char *p[] = {inst, tenant};
    return sql_long("SELECT count(*) FROM apps.app_users WHERE instance_id = $1 AND tenant_id = $2",
                    2, p);
}

static kit_answer_t app_sync(const char *inst, const char *tenant, const char *app,
                             const char *client_id, const char *secret_b64, int flag)
{
    return kit_call("applicationSync",
                    "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"%s\","
                    "\"clientId\":\"%s\",\"clientSecret\":\"%s\",\"flag\":%d,\"testFlag\":0,"
                    "\"timeStamp\":\"20261128101500123\"}",
                    inst, tenant, app, client_id, secret_b64, flag);
}

/* app_sync that must succeed. */
static void app_sync_ok(const char *inst, const char *tenant, const char *app,
                        const char *client_id, const char *secret_b64, int flag)
{
    kit_answer_t a = app_sync(inst, tenant, app, client_id, secret_b64, flag);
    assert_kit(a, "000000", NULL);
}

static char *stored_sealed(const char *inst, const char *tenant, const char *app)
{
    const char *p[] = {inst, tenant, app};
    return sql_text("SELECT client_secret_sealed FROM apps.apps WHERE instance_id = $1 AND"
                    " tenant_id = $2 AND app_id = $3",
                    3, p);
}

/* The secret as an operator sees it through app.secret ("" when refused). Caller frees. */
static char *secret_via_admin(const char *inst, const char *tenant, const char *app,
                              const char *caller_kind, char **code)
{
    char *json = NULL;
    *code = admin_rpc("app", caller_kind, "app.secret", &json, "instance", inst, "tenant", tenant,
                      "app", app, NULL);
    char *secret = xstrdup("");
    if (json) {
        json_t *doc = json_loads(json, 0, NULL);
        const char *s = json_string_value(json_object_get(doc, "clientSecret"));
        if (s) {
            free(secret);
            secret = xstrdup(s);
        }
        json_decref(doc);
        free(json);
    }
    return secret;
}

/* ---- applicationSync ---- */

static void test_client_secret_variants(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    for (int v = 0; v < 3; v++) {
        char app[16], secret[64], client[16];
        snprintf(app, sizeof app, "app-%d", v);
        snprintf(client, sizeof client, "client-%d", v);
        snprintf(secret, sizeof secret, "S3cret/variant+%d=%s", v, tenant);
        char *ct = kit_encrypt_secret(v, secret);
        app_sync_ok(inst, tenant, app, client, ct, 1);
        free(ct);
        /* stored sealed: not the plain text, not the ciphertext, sealbox v1 */
        char *sealed = stored_sealed(inst, tenant, app);
        assert_non_null(sealed);
        assert_int_equal(strncmp(sealed, "v1:", 3), 0);
        assert_null(strstr(sealed, secret));
        free(sealed);
        const char *p[] = {secret};
        assert_int_equal(
            sql_long("SELECT count(*) FROM apps.apps a WHERE a::text LIKE '%' || $1 || '%'", 1, p),
            0);
        assert_int_equal(
            sql_long("SELECT count(*) FROM apps.outbox o WHERE o::text LIKE '%' || $1 || '%'", 1,
                     p),
            0);
        /* an operator gets it back; nobody else */
        char *code;
        char *back = secret_via_admin(inst, tenant, app, "operator", &code);
        assert_string_equal(code, "000000 success");
        assert_string_equal(back, secret);
        free(code);
        free(back);
        back = secret_via_admin(inst, tenant, app, "kit", &code);
        assert_int_equal(strncmp(code, "000001", 6), 0);
        assert_string_equal(back, "");
        free(code);
        free(back);
    }
    /* a sealed value copied to another row does not open there */
    const char *p[] = {inst, tenant};
    assert_int_equal(kc_sql_exec("UPDATE apps.apps SET client_secret_sealed = (SELECT"
                                 " client_secret_sealed FROM apps.apps WHERE instance_id = $1 AND"
                                 " tenant_id = $2 AND app_id = 'app-0') WHERE instance_id = $1 AND"
                                 " tenant_id = $2 AND app_id = 'app-1'",
                                 2, p),
                     1);
    char *code;
    char *back = secret_via_admin(inst, tenant, "app-1", "operator", &code);
    assert_int_equal(strncmp(code, "000005", 6), 0);
    free(code);
    free(back);
    free(inst);
    free(tenant);
}

static void test_application_flags(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    char *ct1 = kit_encrypt_secret(0, "first-secret");
    app_sync_ok(inst, tenant, "a1", "c1", ct1, 1);
    char *sealed1 = stored_sealed(inst, tenant, "a1");
    /* repeated add (a fresh ciphertext of another secret): nothing changes */
    char *ct2 = kit_encrypt_secret(2, "second-secret");
    app_sync_ok(inst, tenant, "a1", "c1-other", ct2, 1);
    char *sealed = stored_sealed(inst, tenant, "a1");
    assert_string_equal(sealed, sealed1);
    free(sealed);
    assert_int_equal(outbox_count("apps", tenant, "applicationSync.add"), 1);
    /* modify: new client id and secret */
    app_sync_ok(inst, tenant, "a1", "c1-new", ct2, 2);
    char *code;
    char *back = secret_via_admin(inst, tenant, "a1", "operator", &code);
    assert_string_equal(back, "second-secret");
    free(back);
    free(code);
    const char *key[] = {inst, tenant};
    char *cid = sql_text(
        "SELECT client_id FROM apps.apps WHERE instance_id = $1 AND tenant_id = $2", 2, key);
    assert_string_equal(cid, "c1-new");
    free(cid);
    /* the same modify again (another ciphertext of the same secret): no change, no event */
    char *ct3 = kit_encrypt_secret(1, "second-secret");
    app_sync_ok(inst, tenant, "a1", "c1-new", ct3, 2);
    assert_int_equal(outbox_count("apps", tenant, "applicationSync.modify"), 1);
    /* modify of a missing app creates it (documented upsert) */
    app_sync_ok(inst, tenant, "a2", "c2", ct3, 2);
    /* delete takes the app's users along; twice is fine; no instance check */
    kit_ok("authSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a1\",\"flag\":1,"
           "\"userList\":[{\"userName\":\"u\",\"name\":\"U\",\"orgCode\":\"o\","
           "\"role\":\"user\",\"enable\":\"true\"}]}",
           inst, tenant);
    for (int i = 0; i < 2; i++) {
        kit_ok("applicationSync",
               "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a1\",\"flag\":0}", inst,
               tenant);
    }
    assert_int_equal(app_user_count(inst, tenant), 0);
    assert_int_equal(outbox_count("apps", tenant, "applicationSync.delete"), 1);
    kit_ok("applicationSync",
           "{\"instanceId\":\"NO-SUCH\",\"tenantId\":\"%s\",\"appId\":\"zz\",\"flag\":0}", tenant);
    free(ct1);
    free(ct2);
    free(ct3);
    free(sealed1);
    free(inst);
    free(tenant);
}

static void test_undecryptable_secret(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    char *before = tenant_digest(tenant);
    /* garbage, valid base64 of garbage, a ciphertext for another key, an empty one */
    kit_answer_t a = app_sync(inst, tenant, "a1", "c1", "not base64 at all!", 1);
    assert_kit(a, "000101", NULL);
    a = app_sync(inst, tenant, "a1", "c1", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", 1);
    assert_kit(a, "000101", NULL);
    EVP_PKEY *other = EVP_RSA_gen(3072);
    char *ct = rsaoaep_encrypt(other, 0, "s", 1);
    EVP_PKEY_free(other);
    a = app_sync(inst, tenant, "a1", "c1", ct, 1);
    assert_kit(a, "000101", NULL);
    a = app_sync(inst, tenant, "a1", "c1", ct, 2);
    assert_kit(a, "000101", NULL);
    free(ct);
    a = app_sync(inst, tenant, "a1", "c1", "", 1);
    assert_true(strcmp(a.code, "000101") == 0 || strcmp(a.code, "000002") == 0);
    assert_tenant_unchanged(tenant, before);
    free(inst);
    free(tenant);
}

/* ---- authSync ---- */

#define USER(name, role, enable, org)                                                              \
    "{\"userName\":\"" name "\",\"name\":\"Full " name "\",\"orgCode\":\"" org "\","               \
    "\"role\":\"" role "\",\"enable\":\"" enable "\",\"mobile\":\"+86 13800001234\","              \
    "\"email\":\"" name "@example.com\",\"employeeType\":2,\"position\":\"Dev\"}"

static char *user_field(const char *inst, const char *tenant, const char *app, const char *user,
                        const char *column_sql)
{
    const char *p[] = {inst, tenant, app, user};
    char *sql = xasprintf("SELECT %s FROM apps.app_users WHERE instance_id = $1 AND tenant_id = $2"
                          " AND app_id = $3 AND user_name = $4",
                          column_sql);
    char *v = sql_text(sql, 4, p);
    free(sql);
    return v;
}

/* authSync of users (a JSON list, or a string holding one) to app with flag; must succeed. */
static void auth_ok(const char *inst, const char *tenant, const char *app, int flag,
                    const char *users)
{
    kit_ok("authSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"%s\",\"flag\":%d,"
           "\"currentSyncTime\":\"20261128101500123\",\"testFlag\":0,\"userList\":%s}",
           inst, tenant, app, flag, users);
}

static void test_auth_flags(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    /* users arrive before their app and their department: accepted */
    auth_ok(inst, tenant, "app", 1,
            "[" USER("alice", "admin", "true", "no-such-dept") "," USER("bob", "user", "false",
                                                                        "d1") "]");
    char *v = user_field(inst, tenant, "app", "alice", "role || enabled || auth_status");
    assert_string_equal(v, "admintrueauthorised");
    free(v);
    v = user_field(inst, tenant, "app", "bob", "role || enabled || employee_type");
    assert_string_equal(v, "userfalse2");
    free(v);
    /* contact data sealed, never plain */
    v = user_field(inst, tenant, "app", "alice", "mobile_sealed || ' ' || email_sealed");
    assert_int_equal(strncmp(v, "v1:", 3), 0);
    assert_null(strstr(v, "13800001234"));
    assert_null(strstr(v, "example.com"));
    free(v);
    const char *p[] = {tenant};
    assert_int_equal(sql_long("SELECT count(*) FROM apps.app_users u WHERE tenant_id = $1 AND"
                              " (u::text LIKE '%13800001234%' OR u::text LIKE '%example.com%')",
                              1, p),
                     0);
    assert_int_equal(sql_long("SELECT count(*) FROM apps.outbox o WHERE tenant_id = $1 AND"
                              " o::text LIKE '%example.com%'",
                              1, p),
                     0);

    /* repeated add: nothing changes */
    char *before = tenant_digest(tenant);
    auth_ok(inst, tenant, "app", 1, "[" USER("alice", "user", "false", "x") "]");
    assert_tenant_unchanged(tenant, before);

    /* modify: role and enable change; the same modify again emits nothing */
    auth_ok(inst, tenant, "app", 2, "[" USER("bob", "admin", "true", "d2") "]");
    v = user_field(inst, tenant, "app", "bob", "role || enabled || org_code");
    assert_string_equal(v, "admintrued2");
    free(v);
    long events = outbox_count("apps", tenant, "authSync.modify");
    assert_int_equal(events, 1);
    auth_ok(inst, tenant, "app", 2, "[" USER("bob", "admin", "true", "d2") "]");
    assert_int_equal(outbox_count("apps", tenant, "authSync.modify"), 1);
    /* modify of a missing user creates it */
    auth_ok(inst, tenant, "app", 2, "[" USER("carol", "user", "true", "d1") "]");
    v = user_field(inst, tenant, "app", "carol", "auth_status");
    assert_string_equal(v, "authorised");
    free(v);

    /* cancel authorisation (3): the user stays, marked; distinct from delete (0) */
    auth_ok(inst, tenant, "app", 3, "[{\"userName\":\"alice\"}]");
    v = user_field(inst, tenant, "app", "alice", "auth_status || name");
    assert_string_equal(v, "cancelledFull alice");
    free(v);
    auth_ok(inst, tenant, "app", 3, "[{\"userName\":\"alice\"},{\"userName\":\"nobody\"}]");
    assert_int_equal(outbox_count("apps", tenant, "authSync.cancel"), 1);
    /* add after cancel authorises again */
    auth_ok(inst, tenant, "app", 1, "[" USER("alice", "user", "true", "d3") "]");
    v = user_field(inst, tenant, "app", "alice", "auth_status || role");
    assert_string_equal(v, "authoriseduser");
    free(v);
    /* delete: gone; twice is fine */
    for (int i = 0; i < 2; i++) {
        auth_ok(inst, tenant, "app", 0, "[{\"userName\":\"bob\"}]");
    }
    v = user_field(inst, tenant, "app", "bob", "user_name");
    assert_null(v);
    assert_int_equal(outbox_count("apps", tenant, "authSync.delete"), 1);

    /* userList as a JSON string holding the array */
    auth_ok(inst, tenant, "app", 1,
            "\"[{\\\"userName\\\":\\\"dave\\\",\\\"name\\\":\\\"D\\\",\\\"orgCode\\\":\\\"d\\\","
            "\\\"role\\\":\\\"user\\\",\\\"enable\\\":\\\"true\\\"}]\"");
    v = user_field(inst, tenant, "app", "dave", "name");
    assert_string_equal(v, "D");
    free(v);

    /* the operator's view: app.users, contact data masked */
    char *json = NULL;
    char *code = admin_rpc("app", "operator", "app.users", &json, "instance", inst, "tenant",
                           tenant, "app", "app", NULL);
    assert_string_equal(code, "000000 success");
    assert_non_null(strstr(json, "\"userName\":\"alice\""));
    assert_non_null(strstr(json, "\"authStatus\":\"authorised\""));
    assert_null(strstr(json, "13800001234"));
    assert_non_null(strstr(json, "1234"));
    free(code);
    free(json);
    free(inst);
    free(tenant);
}

/* Two tenants with the same app and user names never see each other. */
static void test_app_isolation(void **state)
{
    char *inst = uid("I"), *t1 = uid("T"), *t2 = uid("T");
    char *ct = kit_encrypt_secret(0, "tenant-one-secret");
    app_sync_ok(inst, t1, "same-app", "c", ct, 1);
    free(ct);
    ct = kit_encrypt_secret(0, "tenant-two-secret");
    app_sync_ok(inst, t2, "same-app", "c", ct, 1);
    free(ct);
    auth_ok(inst, t1, "same-app", 1, "[" USER("same-user", "admin", "true", "d") "]");
    auth_ok(inst, t2, "same-app", 1, "[" USER("same-user", "user", "false", "d") "]");
    auth_ok(inst, t2, "same-app", 1, "[" USER("only-in-two", "user", "true", "d") "]");

    char *before = tenant_digest(t2);
    auth_ok(inst, t1, "same-app", 3, "[{\"userName\":\"same-user\"}]");
    auth_ok(inst, t1, "same-app", 0, "[{\"userName\":\"only-in-two\"}]");
    ct = kit_encrypt_secret(1, "tenant-one-new");
    app_sync_ok(inst, t1, "same-app", "c2", ct, 2);
    free(ct);
    assert_tenant_unchanged(t2, before);

    char *json = NULL;
    char *code = admin_rpc("app", "operator", "app.users", &json, "instance", inst, "tenant", t1,
                           "app", "same-app", NULL);
    assert_null(strstr(json, "only-in-two"));
    assert_non_null(strstr(json, "\"authStatus\":\"cancelled\""));
    free(code);
    free(json);
    code = admin_rpc("app", "operator", "app.users", &json, "instance", inst, "tenant", t2, "app",
                     "same-app", NULL);
    assert_non_null(strstr(json, "only-in-two"));
    assert_null(strstr(json, "cancelled"));
    free(code);
    free(json);
    char *secret = secret_via_admin(inst, t2, "same-app", "operator", &code);
    assert_string_equal(secret, "tenant-two-secret");
    free(secret);
    free(code);
    /* another instance with the same tenant id is another world too */
    secret = secret_via_admin("other-instance", t2, "same-app", "operator", &code);
    assert_int_equal(strncmp(code, "000003", 6), 0);
    free(secret);
    free(code);
    free(inst);
    free(t1);
    free(t2);
}

/* A large list in one call (3000 users, about 400 KB): applied and answered in time, and the
 * same list as a modify is recognised as no change. */
static void test_auth_large_list(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    json_t *users = json_array();
    for (int i = 0; i < 3000; i++) {
        char name[32], mobile[32], email[48];
        snprintf(name, sizeof name, "user-%05d", i);
        snprintf(mobile, sizeof mobile, "1380000%04d", i);
        snprintf(email, sizeof email, "user%05d@example.com", i);
        json_array_append_new(users,
                              json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i}", "userName", name,
                                        "name", "Some Body", "orgCode", "dept-1", "role",
                                        i % 10 ? "user" : "admin", "enable", "true", "mobile",
                                        mobile, "email", email, "employeeType", 1 + i % 4));
    }
    char *list = json_dumps(users, JSON_COMPACT);
    json_decref(users);
    for (int flag = 1; flag <= 2; flag++) {
        auth_ok(inst, tenant, "big", flag, list);
    }
    assert_int_equal(app_user_count(inst, tenant), 3000);
    assert_int_equal(outbox_count("apps", tenant, "authSync.add"), 1);
    assert_int_equal(outbox_count("apps", tenant, "authSync.modify"), 0);
    free(list);
    free(inst);
    free(tenant);
}

static void test_auth_concurrent_duplicates(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    char *body = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a\",\"flag\":1,"
                           "\"userList\":[" USER("u1", "user", "true", "d") "," USER(
                               "u2", "user", "true", "d") "," USER("u3", "admin", "true", "d") "]}",
                           inst, tenant);
    kit_concurrent_duplicates("authSync", body);
    assert_int_equal(app_user_count(inst, tenant), 3);
    assert_int_equal(outbox_count("apps", tenant, "authSync.add"), 1);
    free(body);
    free(inst);
    free(tenant);
}

/* GET path on the admin API with token (NULL = none); fail unless it answers status. Returns
 * the body; caller frees. */
static char *admin_get(const char *path, const char *token, int status)
{
    kresp_t r;
    assert_int_equal(kc_admin("GET", path, token, NULL, &r), 0);
    assert_int_equal(r.status, status);
    char *body = xstrdup(r.body);
    kresp_free(&r);
    return body;
}

/* The operators' HTTPS admin API reaches these look-ups; app.secret only with the admin role. */
static void test_admin_api(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    char *ct = kit_encrypt_secret(2, "admin-api-secret");
    app_sync_ok(inst, tenant, "web", "client-web", ct, 1);
    free(ct);
    auth_ok(inst, tenant, "web", 1,
            "[" USER("erin", "admin", "true", "hq") "," USER("frank", "user", "true", "hq") "]");
    kit_ok("singleOrgSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"hq\","
           "\"orgName\":\"Head office\",\"flag\":1}",
           inst, tenant);
    const char *admin = suite_get("KOOISV_OPERATOR_TOKEN");
    const char *operator= suite_get("KOOISV_OPERATOR_ROLE_TOKEN");
    const char *auditor = suite_get("KOOISV_AUDITOR_TOKEN");
    char *path = xasprintf("/v1/tenants/%s/orgs?instance=%s", tenant, inst);
    char *body = admin_get(path, operator, 200);
    assert_non_null(strstr(body, "Head office"));
    free(body);
    free(admin_get(path, auditor, 403));
    free(path);
    path = xasprintf("/v1/tenants/%s/users?instance=%s&app=web", tenant, inst);
    body = admin_get(path, operator, 200);
    assert_non_null(strstr(body, "erin"));
    assert_null(strstr(body, "13800001234"));
    free(body);
    free(path);
    /* Users page by page (a tenant may have more than one page of them): limit and after. */
    path = xasprintf("/v1/tenants/%s/users?instance=%s&app=web&limit=1", tenant, inst);
    body = admin_get(path, operator, 200);
    json_t *page = json_loads(body, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(page, "users")), 1);
    const char *next = json_string_value(json_object_get(page, "next"));
    assert_non_null(next);
    assert_string_equal(next, "erin");
    free(body);
    free(path);
    path = xasprintf("/v1/tenants/%s/users?instance=%s&app=web&limit=1&after=%s", tenant, inst,
                     next);
    body = admin_get(path, operator, 200);
    assert_non_null(strstr(body, "\"frank\""));
    assert_null(strstr(body, "\"erin\""));
    json_decref(page);
    free(body);
    free(path);
    path = xasprintf("/v1/tenants/%s/users?instance=%s&app=web&limit=0", tenant, inst);
    free(admin_get(path, operator, 400));
    free(path);
    path = xasprintf("/v1/apps/web/secret?instance=%s&tenant=%s", inst, tenant);
    body = admin_get(path, operator, 403);
    assert_null(strstr(body, "admin-api-secret"));
    free(body);
    free(admin_get(path, auditor, 403));
    free(admin_get(path, NULL, 401));
    body = admin_get(path, admin, 200);
    assert_non_null(strstr(body, "admin-api-secret"));
    free(body);
    free(path);
    /* the disclosure is in the audit trail (who, what, which app) */
    const char *p[] = {"admin.app.secret"};
    assert_true(sql_long("SELECT count(*) FROM audit.intents WHERE event_type = $1", 1, p) >= 1);
    body = admin_get("/v1/outbox/failed", operator, 200);
    assert_non_null(strstr(body, "\"tenant\""));
    assert_non_null(strstr(body, "\"app\""));
    free(body);
    free(inst);
    free(tenant);
}

static const kit_refusal_t bad_inputs[] = {
    {"applicationSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"clientId\":\"c\","
     "\"clientSecret\":\"x\"}",
     "000002", "appId"},
    {"applicationSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"clientSecret\":"
     "\"x\"}",
     "000002", "clientId"},
    {"applicationSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"clientId\":"
     "\"c\"}",
     "000002", "clientSecret"},
    {"applicationSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":\"1\",\"clientId\":"
     "\"c\",\"clientSecret\":\"x\"}",
     "000002", "flag"},
    {"applicationSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":3,\"clientId\":\"c\","
     "\"clientSecret\":\"x\"}",
     "000002", "flag"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":4,\"userList\":[{"
     "\"userName\":\"u\"}]}",
     "000002", "flag"},
    {"authSync", "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1}",
     "000002", "userList"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"userList\":[]}",
     "000002", "userList"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"userList\":{}}",
     "000002", "userList"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"userList\":[{"
     "\"userName\":\"u\",\"name\":\"N\",\"orgCode\":\"o\",\"enable\":\"true\"}]}",
     "000002", "userList[0].role"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"userList\":[{"
     "\"userName\":\"u\",\"name\":\"N\",\"orgCode\":\"o\",\"role\":\"owner\",\"enable\":\"true\"}]"
     "}",
     "000002", "userList[0].role"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"userList\":[{"
     "\"userName\":\"u\",\"name\":\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"maybe\"}]"
     "}",
     "000002", "userList[0].enable"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"userList\":[{"
     "\"userName\":\"u\",\"name\":\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\","
     "\"employeeType\":9}]}",
     "000002", "userList[0].employeeType"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"userList\":[{"
     "\"name\":\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\"}]}",
     "000002", "userList[0].userName"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":2,\"userList\":[{"
     "\"userName\":\"u\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\"}]}",
     "000002", "userList[0].name"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"userList\":[{"
     "\"userName\":\"u\",\"name\":\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\"},{"
     "\"userName\":\"u\",\"name\":\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\"}]}",
     "000002", "duplicate"},
    {"authSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"appId\":\"a\",\"flag\":1,\"userList\":[{"
     "\"userName\":\"u\",\"name\":\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\","
     "\"email\":\"not-an-address\"}]}",
     "000002", "userList[0].email"},
};

static void test_bad_input(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    auth_ok(inst, tenant, "a", 1, "[" USER("keep", "user", "true", "d") "]");
    kit_refusals_check(bad_inputs, sizeof bad_inputs / sizeof bad_inputs[0], inst, tenant);
    free(inst);
    free(tenant);
}

/* An admin action neither the service nor its outbox serves is refused by name. */
static void test_admin_unknown_action(void **state)
{
    assert_unknown_action_refused("app");
}

int main(void)
{
    synctest_require_suite();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_secret_variants),
        cmocka_unit_test(test_application_flags),
        cmocka_unit_test(test_undecryptable_secret),
        cmocka_unit_test(test_auth_flags),
        cmocka_unit_test(test_app_isolation),
        cmocka_unit_test(test_auth_concurrent_duplicates),
        cmocka_unit_test(test_auth_large_list),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_admin_unknown_action),
        cmocka_unit_test(test_admin_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
