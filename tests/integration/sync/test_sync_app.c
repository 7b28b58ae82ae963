/* Kit applicationSync and authSync end to end: marketplace-signed HTTPS through the gateway to
 * the app service and PostgreSQL (suite fixture). clientSecret is encrypted here with the
 * suite's RSA public key in each OAEP variant the marketplace's Java providers produce. */
#include <openssl/pem.h>
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

static EVP_PKEY *public_key(void)
{
    const char *path = suite_get("KOOISV_RSA_PUBLIC_KEY_FILE");
    if (!path)
        fail_msg("suite env has no KOOISV_RSA_PUBLIC_KEY_FILE");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!k)
        fail_msg("%s is not a PEM public key", path);
    return k;
}

static char *encrypt_secret(int variant, const char *secret)
{
    EVP_PKEY *k = public_key();
    char *c = rsaoaep_encrypt(k, variant, secret, strlen(secret));
    EVP_PKEY_free(k);
    assert_non_null(c);
    return c;
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
        char *ct = encrypt_secret(v, secret);
        kit_answer_t a = app_sync(inst, tenant, app, client, ct, 1);
        assert_kit(a, "000000", NULL);
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
    char *ct1 = encrypt_secret(0, "first-secret");
    kit_answer_t a = app_sync(inst, tenant, "a1", "c1", ct1, 1);
    assert_kit(a, "000000", NULL);
    char *sealed1 = stored_sealed(inst, tenant, "a1");
    /* repeated add (a fresh ciphertext of another secret): nothing changes */
    char *ct2 = encrypt_secret(2, "second-secret");
    a = app_sync(inst, tenant, "a1", "c1-other", ct2, 1);
    assert_kit(a, "000000", NULL);
    char *sealed = stored_sealed(inst, tenant, "a1");
    assert_string_equal(sealed, sealed1);
    free(sealed);
    assert_int_equal(outbox_count("apps", tenant, "applicationSync.add"), 1);
    /* modify: new client id and secret */
    a = app_sync(inst, tenant, "a1", "c1-new", ct2, 2);
    assert_kit(a, "000000", NULL);
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
    char *ct3 = encrypt_secret(1, "second-secret");
    a = app_sync(inst, tenant, "a1", "c1-new", ct3, 2);
    assert_kit(a, "000000", NULL);
    assert_int_equal(outbox_count("apps", tenant, "applicationSync.modify"), 1);
    /* modify of a missing app creates it (documented upsert) */
    a = app_sync(inst, tenant, "a2", "c2", ct3, 2);
    assert_kit(a, "000000", NULL);
    /* delete takes the app's users along; twice is fine; no instance check */
    a = kit_call("authSync",
                 "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a1\",\"flag\":1,"
                 "\"userList\":[{\"userName\":\"u\",\"name\":\"U\",\"orgCode\":\"o\","
                 "\"role\":\"user\",\"enable\":\"true\"}]}",
                 inst, tenant);
    assert_kit(a, "000000", NULL);
    for (int i = 0; i < 2; i++) {
        a = kit_call("applicationSync",
                     "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a1\",\"flag\":0}",
                     inst, tenant);
        assert_kit(a, "000000", NULL);
    }
    assert_int_equal(sql_long("SELECT count(*) FROM apps.app_users WHERE instance_id = $1 AND"
                              " tenant_id = $2",
                              2, key),
                     0);
    assert_int_equal(outbox_count("apps", tenant, "applicationSync.delete"), 1);
    a = kit_call("applicationSync",
                 "{\"instanceId\":\"NO-SUCH\",\"tenantId\":\"%s\",\"appId\":\"zz\",\"flag\":0}",
                 tenant);
    assert_kit(a, "000000", NULL);
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
    char *after = tenant_digest(tenant);
    assert_string_equal(before, after);
    free(before);
    free(after);
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

static kit_answer_t auth(const char *inst, const char *tenant, const char *app, int flag,
                         const char *users)
{
    return kit_call("authSync",
                    "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"%s\",\"flag\":%d,"
                    "\"currentSyncTime\":\"20261128101500123\",\"testFlag\":0,\"userList\":%s}",
                    inst, tenant, app, flag, users);
}

static void test_auth_flags(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    /* users arrive before their app and their department: accepted */
    kit_answer_t a = auth(inst, tenant, "app", 1,
                          "[" USER("alice", "admin", "true",
                                   "no-such-dept") "," USER("bob", "user", "false", "d1") "]");
    assert_kit(a, "000000", NULL);
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
    a = auth(inst, tenant, "app", 1, "[" USER("alice", "user", "false", "x") "]");
    assert_kit(a, "000000", NULL);
    char *after = tenant_digest(tenant);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* modify: role and enable change; the same modify again emits nothing */
    a = auth(inst, tenant, "app", 2, "[" USER("bob", "admin", "true", "d2") "]");
    assert_kit(a, "000000", NULL);
    v = user_field(inst, tenant, "app", "bob", "role || enabled || org_code");
    assert_string_equal(v, "admintrued2");
    free(v);
    long events = outbox_count("apps", tenant, "authSync.modify");
    assert_int_equal(events, 1);
    a = auth(inst, tenant, "app", 2, "[" USER("bob", "admin", "true", "d2") "]");
    assert_kit(a, "000000", NULL);
    assert_int_equal(outbox_count("apps", tenant, "authSync.modify"), 1);
    /* modify of a missing user creates it */
    a = auth(inst, tenant, "app", 2, "[" USER("carol", "user", "true", "d1") "]");
    assert_kit(a, "000000", NULL);
    v = user_field(inst, tenant, "app", "carol", "auth_status");
    assert_string_equal(v, "authorised");
    free(v);

    /* cancel authorisation (3): the user stays, marked; distinct from delete (0) */
    a = auth(inst, tenant, "app", 3, "[{\"userName\":\"alice\"}]");
    assert_kit(a, "000000", NULL);
    v = user_field(inst, tenant, "app", "alice", "auth_status || name");
    assert_string_equal(v, "cancelledFull alice");
    free(v);
    a = auth(inst, tenant, "app", 3, "[{\"userName\":\"alice\"},{\"userName\":\"nobody\"}]");
    assert_kit(a, "000000", NULL);
    assert_int_equal(outbox_count("apps", tenant, "authSync.cancel"), 1);
    /* add after cancel authorises again */
    a = auth(inst, tenant, "app", 1, "[" USER("alice", "user", "true", "d3") "]");
    assert_kit(a, "000000", NULL);
    v = user_field(inst, tenant, "app", "alice", "auth_status || role");
    assert_string_equal(v, "authoriseduser");
    free(v);
    /* delete: gone; twice is fine */
    for (int i = 0; i < 2; i++) {
        a = auth(inst, tenant, "app", 0, "[{\"userName\":\"bob\"}]");
        assert_kit(a, "000000", NULL);
    }
    v = user_field(inst, tenant, "app", "bob", "user_name");
    assert_null(v);
    assert_int_equal(outbox_count("apps", tenant, "authSync.delete"), 1);

    /* userList as a JSON string holding the array */
    a = auth(inst, tenant, "app", 1,
             "\"[{\\\"userName\\\":\\\"dave\\\",\\\"name\\\":\\\"D\\\",\\\"orgCode\\\":\\\"d\\\","
             "\\\"role\\\":\\\"user\\\",\\\"enable\\\":\\\"true\\\"}]\"");
    assert_kit(a, "000000", NULL);
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
    char *ct = encrypt_secret(0, "tenant-one-secret");
    kit_answer_t a = app_sync(inst, t1, "same-app", "c", ct, 1);
    assert_kit(a, "000000", NULL);
    free(ct);
    ct = encrypt_secret(0, "tenant-two-secret");
    a = app_sync(inst, t2, "same-app", "c", ct, 1);
    assert_kit(a, "000000", NULL);
    free(ct);
    a = auth(inst, t1, "same-app", 1, "[" USER("same-user", "admin", "true", "d") "]");
    assert_kit(a, "000000", NULL);
    a = auth(inst, t2, "same-app", 1, "[" USER("same-user", "user", "false", "d") "]");
    assert_kit(a, "000000", NULL);
    a = auth(inst, t2, "same-app", 1, "[" USER("only-in-two", "user", "true", "d") "]");
    assert_kit(a, "000000", NULL);

    char *before = tenant_digest(t2);
    a = auth(inst, t1, "same-app", 3, "[{\"userName\":\"same-user\"}]");
    assert_kit(a, "000000", NULL);
    a = auth(inst, t1, "same-app", 0, "[{\"userName\":\"only-in-two\"}]");
    assert_kit(a, "000000", NULL);
    ct = encrypt_secret(1, "tenant-one-new");
    a = app_sync(inst, t1, "same-app", "c2", ct, 2);
    assert_kit(a, "000000", NULL);
    free(ct);
    char *after = tenant_digest(t2);
    assert_string_equal(before, after);
    free(before);
    free(after);

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
        kit_answer_t a = auth(inst, tenant, "big", flag, list);
        assert_kit(a, "000000", NULL);
    }
    const char *p[] = {inst, tenant};
    assert_int_equal(sql_long("SELECT count(*) FROM apps.app_users WHERE instance_id = $1 AND"
                              " tenant_id = $2",
                              2, p),
                     3000);
    assert_int_equal(outbox_count("apps", tenant, "authSync.add"), 1);
    assert_int_equal(outbox_count("apps", tenant, "authSync.modify"), 0);
    free(list);
    free(inst);
    free(tenant);
}

typedef struct {
    const char *body;
    char codes[8][8];
} dup_t;

static void send_dup(void *arg, int i)
{
    dup_t *d = arg;
    kresp_t r;
    kc_use_gateway(1 + i % 2);
    kc_kit("authSync", d->body, &r);
    snprintf(d->codes[i], sizeof d->codes[i], "%s", r.code ? r.code : "none");
    kresp_free(&r);
}

static void test_auth_concurrent_duplicates(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    char *body = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"appId\":\"a\",\"flag\":1,"
                           "\"userList\":[" USER("u1", "user", "true", "d") "," USER(
                               "u2", "user", "true", "d") "," USER("u3", "admin", "true", "d") "]}",
                           inst, tenant);
    dup_t d = {.body = body};
    run_concurrently(8, send_dup, &d);
    for (int i = 0; i < 8; i++)
        if (strcmp(d.codes[i], "000000") != 0)
            fail_msg("duplicate %d answered %s", i, d.codes[i]);
    const char *p[] = {inst, tenant};
    assert_int_equal(sql_long("SELECT count(*) FROM apps.app_users WHERE instance_id = $1 AND"
                              " tenant_id = $2",
                              2, p),
                     3);
    assert_int_equal(outbox_count("apps", tenant, "authSync.add"), 1);
    free(body);
    free(inst);
    free(tenant);
}

/* The operators' HTTPS admin API reaches these look-ups; app.secret only with the admin role. */
static void test_admin_api(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    char *ct = encrypt_secret(2, "admin-api-secret");
    kit_answer_t a = app_sync(inst, tenant, "web", "client-web", ct, 1);
    assert_kit(a, "000000", NULL);
    free(ct);
    a = auth(inst, tenant, "web", 1, "[" USER("erin", "admin", "true", "hq") "]");
    assert_kit(a, "000000", NULL);
    a = kit_call("singleOrgSync",
                 "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"hq\","
                 "\"orgName\":\"Head office\",\"flag\":1}",
                 inst, tenant);
    assert_kit(a, "000000", NULL);
    const char *admin = suite_get("KOOISV_OPERATOR_TOKEN");
    const char *operator= suite_get("KOOISV_OPERATOR_ROLE_TOKEN");
    const char *auditor = suite_get("KOOISV_AUDITOR_TOKEN");
    kresp_t r;
    char *path = xasprintf("/v1/tenants/%s/orgs?instance=%s", tenant, inst);
    assert_int_equal(kc_admin("GET", path, operator, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Head office"));
    kresp_free(&r);
    assert_int_equal(kc_admin("GET", path, auditor, NULL, &r), 0);
    assert_int_equal(r.status, 403);
    kresp_free(&r);
    free(path);
    path = xasprintf("/v1/tenants/%s/users?instance=%s&app=web", tenant, inst);
    assert_int_equal(kc_admin("GET", path, operator, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "erin"));
    assert_null(strstr(r.body, "13800001234"));
    kresp_free(&r);
    free(path);
    path = xasprintf("/v1/apps/web/secret?instance=%s&tenant=%s", inst, tenant);
    assert_int_equal(kc_admin("GET", path, operator, NULL, &r), 0);
    assert_int_equal(r.status, 403);
    assert_null(strstr(r.body, "admin-api-secret"));
    kresp_free(&r);
    assert_int_equal(kc_admin("GET", path, auditor, NULL, &r), 0);
    assert_int_equal(r.status, 403);
    kresp_free(&r);
    assert_int_equal(kc_admin("GET", path, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 401);
    kresp_free(&r);
    assert_int_equal(kc_admin("GET", path, admin, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "admin-api-secret"));
    kresp_free(&r);
    free(path);
    /* the disclosure is in the audit trail (who, what, which app) */
    const char *p[] = {"admin.app.secret"};
    assert_true(sql_long("SELECT count(*) FROM audit.intents WHERE event_type = $1", 1, p) >= 1);
    assert_int_equal(kc_admin("GET", "/v1/outbox/failed", operator, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"tenant\""));
    assert_non_null(strstr(r.body, "\"app\""));
    kresp_free(&r);
    free(inst);
    free(tenant);
}

typedef struct {
    const char *name;
    const char *body;
    const char *code;
    const char *msg;
} bad_t;

static const bad_t bad_inputs[] = {
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
    kit_answer_t a = auth(inst, tenant, "a", 1, "[" USER("keep", "user", "true", "d") "]");
    assert_kit(a, "000000", NULL);
    char *before = tenant_digest(tenant);
    for (size_t i = 0; i < sizeof bad_inputs / sizeof bad_inputs[0]; i++) {
        const bad_t *b = &bad_inputs[i];
        char *body = NULL;
        if (asprintf(&body, b->body, inst, tenant) < 0)
            fail_msg("asprintf");
        kresp_t r;
        kc_kit(b->name, body, &r);
        const char *code = r.code ? r.code : "";
        const char *m = r.json ? json_string_value(json_object_get(r.json, "resultMsg")) : NULL;
        if (strcmp(code, b->code) != 0 || !m || !strstr(m, b->msg))
            fail_msg("bad input %zu (%s %s): answered %s \"%s\"", i, b->name, body, code,
                     m ? m : "");
        kresp_free(&r);
        free(body);
    }
    char *after = tenant_digest(tenant);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(inst);
    free(tenant);
}

int main(void)
{
    if (suite_env_load() != 0) {
        fprintf(stderr, "no suite env: run through ctest (fixture suite)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_secret_variants),
        cmocka_unit_test(test_application_flags),
        cmocka_unit_test(test_undecryptable_secret),
        cmocka_unit_test(test_auth_flags),
        cmocka_unit_test(test_app_isolation),
        cmocka_unit_test(test_auth_concurrent_duplicates),
        cmocka_unit_test(test_auth_large_list),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_admin_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
