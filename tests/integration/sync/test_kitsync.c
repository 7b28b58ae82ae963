/* Unit tests of gateway/kitsync.c: every rule of spec §4 as the gateway applies it, with the
 * message naming the field, and the messages built for the services. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "canonjson.h"
#include "kitsync.h"
#include "xmalloc.h"

typedef struct {
    const char *call;
    const char *body;
    const char *want_code;
    const char *want_msg; /* substring of the message */
} kit_case_t;

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *v = canonjson_parse(text, strlen(text), &err);
    if (!v)
        fail_msg("test body does not parse: %s: %s", err.text, text);
    return v;
}

/* Run one case; returns the envelope (caller frees with kitsync_free_body). */
static void run_case(const kit_case_t *c, int idx)
{
    json_t *body = parse(c->body);
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    service_id_t svc = SVC__COUNT;
    char msg[256];
    const char *code = kitsync_build(c->call, body, &env, &svc, msg, sizeof msg);
    if (strcmp(code, c->want_code) != 0 || !strstr(msg, c->want_msg))
        fail_msg("case %d (%s %s): got %s \"%s\", want %s \"%s\"", idx, c->call, c->body, code, msg,
                 c->want_code, c->want_msg);
    if (strcmp(code, "000000") != 0)
        assert_int_equal(env.body_case, KOOISV__ENVELOPE__BODY__NOT_SET);
    kitsync_free_body(&env);
    assert_int_equal(env.body_case, KOOISV__ENVELOPE__BODY__NOT_SET);
    json_decref(body);
}

#define TS "\"timeStamp\":\"20230403171434618\""
#define BAD "000002"
#define OK "000000"

static const kit_case_t cases[] = {
    /* ---- common fields ---- */
    {"nosuchSync", "{}", BAD, "unknown"},
    {"tenantSync", "[]", BAD, "body: must be a JSON object"},
    {"tenantSync", "{\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD, "tenantId: missing"},
    {"tenantSync", "{\"tenantId\":\"\",\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "tenantId: must not be empty"},
    {"tenantSync", "{\"tenantId\":7,\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "tenantId: must be a JSON string"},
    {"tenantSync",
     "{\"tenantId\":\"t1234567890123456789012345678901234567890123456789012345678901234\","
     "\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\"}",
     BAD, "tenantId: longer than 64"},
    {"tenantSync", "{\"tenantId\":\"t\\u0001\",\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\"}",
     BAD, "tenantId: contains a control character"},
    {"tenantSync",
     "{\"instanceId\":5,\"tenantId\":\"t\",\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "instanceId: must be a JSON string"},
    {"tenantSync",
     "{\"instanceId\":\"i1234567890123456789012345678901234567890123456789012345678901234\","
     "\"tenantId\":\"t\",\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\"}",
     BAD, "instanceId: longer than 64"},
    {"tenantSync", "{\"tenantId\":\"t\",\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "flag: missing"},
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":\"1\",\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "flag: must be a JSON integer"},
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":1.0,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "flag: must be a JSON integer"},
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":true,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "flag: must be a JSON integer"},
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":3,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "flag: must be between 0 and 2"},
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":-1,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "flag: must be between 0 and 2"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":99999999999999999,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "flag: must be between 0 and 2"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"testFlag\":\"0\",\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "testFlag: must be a JSON integer"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"testFlag\":2,\"tenantCode\":\"c\",\"name\":\"n\"}", BAD,
     "testFlag: must be between 0 and 1"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"timeStamp\":\"2023\",\"tenantCode\":\"c\",\"name\":\"n\"}",
     BAD, "timeStamp: must be yyyyMMddHHmmssSSS"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"timeStamp\":\"20231345171434618\",\"tenantCode\":\"c\","
     "\"name\":\"n\"}",
     BAD, "timeStamp: not a valid time"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"timeStamp\":\"2023040317143461x\",\"tenantCode\":\"c\","
     "\"name\":\"n\"}",
     BAD, "timeStamp: must be yyyyMMddHHmmssSSS"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"timeStamp\":20230403171434618,\"tenantCode\":\"c\",\"name\":"
     "\"n\"}",
     BAD, "timeStamp: must be a JSON string"},
    /* ---- tenantSync ---- */
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":1,\"name\":\"n\"}", BAD, "tenantCode: missing"},
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":1,\"tenantCode\":\"c\"}", BAD, "name: missing"},
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":2,\"tenantCode\":\"c\",\"name\":\"\"}", BAD,
     "name: must not be empty"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\",\"orderId\":1}", BAD,
     "orderId: must be a JSON string"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\",\"domainName\":[]}", BAD,
     "domainName: must be a JSON string"},
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":0}", OK, "success"},
    {"tenantSync", "{\"tenantId\":\"t\",\"flag\":0,\"instanceId\":\"\",\"orderId\":\"\"}", OK,
     "success"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\",\"instanceId\":\"\","
     "\"orderId\":\"\"," TS "}",
     OK, "success"},
    {"tenantSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\",\"instanceId\":null}", OK,
     "success"},
    /* ---- applicationSync ---- */
    {"applicationSync", "{\"tenantId\":\"t\",\"flag\":1,\"clientId\":\"c\",\"clientSecret\":\"s\"}",
     BAD, "appId: missing"},
    {"applicationSync", "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"clientSecret\":\"s\"}",
     BAD, "clientId: missing"},
    {"applicationSync", "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":2,\"clientId\":\"c\"}", BAD,
     "clientSecret: missing"},
    {"applicationSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"clientId\":\"c\",\"clientSecret\":5}", BAD,
     "clientSecret: must be a JSON string"},
    {"applicationSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":3,\"clientId\":\"c\",\"clientSecret\":\"s\"}",
     BAD, "flag: must be between 0 and 2"},
    {"applicationSync", "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":0}", OK, "success"},
    /* garbage secret passes here: only the app service can tell (000101) */
    {"applicationSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"clientId\":\"c\",\"clientSecret\":\"!!\"}",
     OK, "success"},
    /* ---- singleOrgSync ---- */
    {"singleOrgSync", "{\"tenantId\":\"t\",\"flag\":1,\"orgName\":\"n\"}", BAD, "orgCode: missing"},
    {"singleOrgSync", "{\"tenantId\":\"t\",\"flag\":1,\"orgCode\":\"o\"}", BAD, "orgName: missing"},
    {"singleOrgSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"orgCode\":\"o\",\"orgName\":"
     "\"n12345678901234567890123456789012345678901234567890123456789012345678901234567890"
     "123456789012345678901234567890123456789012345678\"}",
     BAD, "orgName: longer than 128"},
    {"singleOrgSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"orgCode\":\"o\",\"orgName\":\"n\",\"parentCode\":\"o\"}",
     BAD, "parentCode: an org cannot be its own parent"},
    {"singleOrgSync",
     "{\"tenantId\":\"t\",\"flag\":1,\"orgCode\":\"o\",\"orgName\":\"n\",\"parentCode\":1}", BAD,
     "parentCode: must be a JSON string"},
    {"singleOrgSync", "{\"tenantId\":\"t\",\"flag\":4,\"orgCode\":\"o\",\"orgName\":\"n\"}", BAD,
     "flag: must be between 0 and 2"},
    {"singleOrgSync", "{\"tenantId\":\"t\",\"flag\":0,\"orgCode\":\"o\"}", OK, "success"},
    /* ---- allOrgSync ---- */
    {"allOrgSync", "{\"tenantId\":\"t\"}", BAD, "orgInfoList: missing"},
    {"allOrgSync", "{\"tenantId\":\"t\",\"orgInfoList\":{}}", BAD,
     "orgInfoList: must be an array or a JSON string holding one"},
    {"allOrgSync", "{\"tenantId\":\"t\",\"orgInfoList\":\"[{\"}", BAD,
     "orgInfoList: string is not valid JSON"},
    {"allOrgSync", "{\"tenantId\":\"t\",\"orgInfoList\":\"{}\"}", BAD,
     "orgInfoList: string does not hold a JSON array"},
    {"allOrgSync", "{\"tenantId\":\"t\",\"orgInfoList\":[1]}", BAD,
     "orgInfoList[0]: must be an object"},
    {"allOrgSync",
     "{\"tenantId\":\"t\",\"orgInfoList\":[{\"orgCode\":\"a\",\"orgName\":\"A\"},{\"orgName\":"
     "\"B\"}]}",
     BAD, "orgInfoList[1].orgCode: missing"},
    {"allOrgSync", "{\"tenantId\":\"t\",\"orgInfoList\":[{\"orgCode\":\"a\"}]}", BAD,
     "orgInfoList[0].orgName: missing"},
    {"allOrgSync",
     "{\"tenantId\":\"t\",\"orgInfoList\":[{\"orgCode\":\"a\",\"orgName\":\"A\",\"parentCode\":"
     "\"a\"}]}",
     BAD, "orgInfoList[0].parentCode: an org cannot be its own parent"},
    {"allOrgSync",
     "{\"tenantId\":\"t\",\"orgInfoList\":[{\"orgCode\":\"a\",\"orgName\":\"A\"},{\"orgCode\":"
     "\"b\",\"orgName\":\"B\"},"
     "{\"orgCode\":\"a\",\"orgName\":\"A2\"}]}",
     BAD, "orgInfoList[2].orgCode: duplicate of orgInfoList[0]"},
    {"allOrgSync", "{\"tenantId\":\"t\",\"orgInfoList\":[]}", OK, "success"},
    {"allOrgSync", "{\"tenantId\":\"t\",\"orgInfoList\":\"[]\"}", OK, "success"},
    {"allOrgSync",
     "{\"tenantId\":\"t\",\"orgInfoList\":\"[{\\\"orgCode\\\":\\\"a\\\",\\\"orgName\\\":\\\"A\\\","
     "\\\"parentCode\\\":\\\"\\\"}]\"}",
     OK, "success"},
    /* ---- authSync ---- */
    {"authSync", "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1}", BAD, "userList: missing"},
    {"authSync", "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[]}", BAD,
     "userList: must not be empty"},
    {"authSync", "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":4,\"userList\":[]}", BAD,
     "flag: must be between 0 and 3"},
    {"authSync", "{\"tenantId\":\"t\",\"flag\":1,\"userList\":[]}", BAD, "appId: missing"},
    {"authSync", "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":5}", BAD,
     "userList: must be an array"},
    {"authSync", "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[\"x\"]}", BAD,
     "userList[0]: must be an object"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"name\":\"N\",\"orgCode\":"
     "\"o\",\"role\":\"user\",\"enable\":\"true\"}]}",
     BAD, "userList[0].userName: missing"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"orgCode\":"
     "\"o\",\"role\":\"user\",\"enable\":\"true\"}]}",
     BAD, "userList[0].name: missing"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":2,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"role\":\"user\",\"enable\":\"true\"}]}",
     BAD, "userList[0].orgCode: missing"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"enable\":\"true\"}]}",
     BAD, "userList[0].role: missing"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"root\",\"enable\":\"true\"}]}",
     BAD, "userList[0].role: must be \"user\" or \"admin\""},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\"}]}",
     BAD, "userList[0].enable: missing"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"yes\"}]}",
     BAD, "userList[0].enable: must be \"true\" or \"false\""},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":1}]}",
     BAD, "userList[0].enable: must be \"true\" or \"false\""},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\",\"employeeType\":5}]}",
     BAD, "userList[0].employeeType: must be 1, 2, 3 or 4"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\",\"employeeType\":\"0\"}]}",
     BAD, "userList[0].employeeType: must be 1, 2, 3 or 4"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\",\"employeeType\":[]}]}",
     BAD, "userList[0].employeeType: must be a number 1..4"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\",\"mobile\":\"call me\"}]}",
     BAD, "userList[0].mobile: must hold digits"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\",\"mobile\":"
     "\"123456789012345678901234567890123\"}]}",
     BAD, "userList[0].mobile: longer than 32"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\",\"email\":\"nobody\"}]}",
     BAD, "userList[0].email: not an e-mail address"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\",\"position\":7}]}",
     BAD, "userList[0].position: must be a JSON string"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\"},"
     "{\"userName\":\"v\",\"name\":\"N\",\"orgCode\":\"o\",\"role\":\"user\",\"enable\":\"true\"},"
     "{\"userName\":\"u\",\"name\":\"N\",\"orgCode\":\"o\",\"role\":\"admin\",\"enable\":\"true\"}]"
     "}",
     BAD, "userList[2].userName: duplicate of userList[0]"},
    {"authSync", "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":\"not json\"}", BAD,
     "userList: string is not valid JSON"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":\"3\",\"userList\":[{\"userName\":\"u\"}]}", BAD,
     "flag: must be a JSON integer"},
    /* delete and cancel need only the key */
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":0,\"userList\":[{\"userName\":\"u\"}]}", OK,
     "success"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":3,\"userList\":[{\"userName\":\"u\"}]}", OK,
     "success"},
    {"authSync",
     "{\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":1,\"userList\":[{\"userName\":\"u\",\"name\":"
     "\"N\",\"orgCode\":\"o\",\"role\":\"admin\",\"enable\":false,\"employeeType\":\"4\",\"email\":"
     "\"a@b.c\",\"mobile\":\"+86 138-0000\"}]}",
     OK, "success"},
};

static void test_cases(void **state)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], (int)i);
}

static Kooisv__Envelope build_ok(const char *call, const char *text, service_id_t *svc)
{
    json_t *body = parse(text);
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    char msg[256];
    const char *code = kitsync_build(call, body, &env, svc, msg, sizeof msg);
    if (strcmp(code, "000000") != 0)
        fail_msg("%s: %s %s", call, code, msg);
    json_decref(body);
    return env;
}

/* The resource references kitsync_resources gives for env; fail unless there are want of
 * them. Free with resources_free(res, want). */
static Kooisv__ResourceRef **resources_of(const Kooisv__Envelope *env, size_t want)
{
    Kooisv__ResourceRef **res = NULL;
    size_t n = 0;
    kitsync_resources(env, &res, &n);
    assert_int_equal(n, want);
    return res;
}

static void resources_free(Kooisv__ResourceRef **res, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kooisv__resource_ref__free_unpacked(res[i], NULL);
    free(res);
}

/* The strict parser refuses \u0000, but a body built otherwise must still be refused. */
static void test_nul_in_string(void **state)
{
    json_t *body = json_pack("{s:o,s:i,s:s,s:s}", "tenantId", json_stringn("t\0x", 3), "flag", 1,
                             "tenantCode", "c", "name", "n");
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    service_id_t svc;
    char msg[128];
    assert_string_equal(kitsync_build("tenantSync", body, &env, &svc, msg, sizeof msg), "000002");
    assert_string_equal(msg, "tenantId: contains a NUL character");
    json_decref(body);
}

static void test_known(void **state)
{
    assert_true(kitsync_known("tenantSync"));
    assert_true(kitsync_known("applicationSync"));
    assert_true(kitsync_known("authSync"));
    assert_true(kitsync_known("singleOrgSync"));
    assert_true(kitsync_known("allOrgSync"));
    assert_false(kitsync_known("TenantSync"));
    assert_false(kitsync_known(""));
    assert_false(kitsync_known(NULL));
}

/* The spec vector's body becomes the message the tenant service gets. */
static void test_tenant_vector(void **state)
{
    service_id_t svc;
    Kooisv__Envelope env = build_ok(
        "tenantSync",
        "{\"domainName\": \"https://example.tenantaccount.com\", \"flag\": 1, \"instanceId\": "
        "\"huaiweitest123456\", \"name\": \"huaiweitest\", \"orderId\": \"CS1906666666ABCDE\", "
        "\"tenantCode\": \"huawei\", \"tenantId\": \"t-001\", \"testFlag\": 1, \"timeStamp\": "
        "\"20230403171434618\"}",
        &svc);
    assert_int_equal(svc, SVC_TENANT);
    assert_int_equal(env.body_case, KOOISV__ENVELOPE__BODY_TENANT_SYNC);
    assert_true(env.test_flag);
    const Kooisv__TenantSync *m = env.tenant_sync;
    assert_string_equal(m->instance_id, "huaiweitest123456");
    assert_string_equal(m->order_id, "CS1906666666ABCDE");
    assert_string_equal(m->tenant_id, "t-001");
    assert_string_equal(m->tenant_code, "huawei");
    assert_string_equal(m->name, "huaiweitest");
    assert_string_equal(m->domain_name, "https://example.tenantaccount.com");
    assert_int_equal(m->flag, 1);
    assert_string_equal(m->time_stamp, "20230403171434618");

    Kooisv__ResourceRef **res = resources_of(&env, 3);
    assert_string_equal(res[0]->kind, "instance");
    assert_string_equal(res[1]->kind, "order");
    assert_string_equal(res[1]->id, "CS1906666666ABCDE");
    assert_string_equal(res[2]->kind, "tenant");
    resources_free(res, 3);
    kitsync_free_body(&env);
}

/* 128 Chinese characters (384 bytes) fit: limits count characters. */
static void test_limits_count_characters(void **state)
{
    char name[128 * 3 + 1] = "";
    for (int i = 0; i < 128; i++)
        strcat(name, "\xe9\x83\xa8"); /* 部 */
    char *text = xasprintf("{\"tenantId\":\"t\",\"flag\":1,\"orgCode\":\"d-1\",\"orgName\":\"%s\","
                           "\"parentCode\":\"\"}",
                           name);
    service_id_t svc;
    Kooisv__Envelope env = build_ok("singleOrgSync", text, &svc);
    assert_int_equal(svc, SVC_TENANT);
    assert_string_equal(env.single_org_sync->org_name, name);
    assert_false(env.test_flag);
    kitsync_free_body(&env);
    free(text);

    text = xasprintf(
        "{\"tenantId\":\"t\",\"flag\":1,\"orgCode\":\"d-1\",\"orgName\":\"%s\xe9\x83\xa8\"}", name);
    json_t *body = parse(text);
    Kooisv__Envelope env2 = KOOISV__ENVELOPE__INIT;
    char msg[128];
    assert_string_equal(kitsync_build("singleOrgSync", body, &env2, &svc, msg, sizeof msg),
                        "000002");
    assert_non_null(strstr(msg, "orgName: longer than 128"));
    json_decref(body);
    free(text);
}

static void test_auth_users(void **state)
{
    service_id_t svc;
    Kooisv__Envelope env =
        build_ok("authSync",
                 "{\"instanceId\":\"\",\"tenantId\":\"t\",\"appId\":\"a\",\"flag\":3,"
                 "\"currentSyncTime\":\"x\","
                 "\"userList\":\"[{\\\"userName\\\":\\\"u1\\\",\\\"name\\\":\\\"One\\\","
                 "\\\"orgCode\\\":\\\"o\\\","
                 "\\\"role\\\":\\\"admin\\\",\\\"enable\\\":\\\"true\\\",\\\"employeeType\\\":2},"
                 "{\\\"userName\\\":\\\"u2\\\"}]\"}",
                 &svc);
    assert_int_equal(svc, SVC_APP);
    const Kooisv__AuthSync *m = env.auth_sync;
    assert_int_equal(m->flag, 3);
    assert_string_equal(m->instance_id, "");
    assert_string_equal(m->current_sync_time, "x");
    assert_int_equal(m->n_users, 2);
    assert_string_equal(m->users[0]->user_name, "u1");
    assert_string_equal(m->users[0]->role, "admin");
    assert_true(m->users[0]->enable);
    assert_int_equal(m->users[0]->employee_type, 2);
    assert_string_equal(m->users[1]->user_name, "u2");
    assert_string_equal(m->users[1]->role, "");
    assert_int_equal(m->users[1]->employee_type, 0);

    /* an empty instance id is not a resource */
    Kooisv__ResourceRef **res = resources_of(&env, 4);
    assert_string_equal(res[0]->kind, "tenant");
    assert_string_equal(res[1]->kind, "app");
    assert_string_equal(res[2]->kind, "user");
    assert_string_equal(res[3]->id, "u2");
    resources_free(res, 4);
    kitsync_free_body(&env);
}

static void test_all_org_and_app(void **state)
{
    service_id_t svc;
    Kooisv__Envelope env = build_ok(
        "allOrgSync",
        "{\"instanceId\":\"i\",\"tenantId\":\"t\",\"orgInfoList\":[{\"orgCode\":\"b\",\"orgName\":"
        "\"B\","
        "\"parentCode\":\"a\"},{\"orgCode\":\"a\",\"orgName\":\"A\",\"parentCode\":null}]}",
        &svc);
    assert_int_equal(svc, SVC_TENANT);
    assert_int_equal(env.all_org_sync->n_orgs, 2);
    assert_string_equal(env.all_org_sync->orgs[0]->parent_code, "a");
    assert_string_equal(env.all_org_sync->orgs[1]->parent_code, "");
    resources_free(resources_of(&env, 4), 4);
    kitsync_free_body(&env);

    env = build_ok("applicationSync",
                   "{\"instanceId\":\"i\",\"tenantId\":\"t\",\"appId\":\"a\",\"clientId\":\"c\","
                   "\"clientSecret\":\"QUJD\",\"flag\":2,\"testFlag\":0}",
                   &svc);
    assert_int_equal(svc, SVC_APP);
    assert_string_equal(env.application_sync->client_secret, "QUJD");
    assert_int_equal(env.application_sync->flag, 2);
    kitsync_free_body(&env);
}

/* 10000 entries pass, 10001 do not. */
static void test_list_maximum(void **state)
{
    for (int count = 10000; count <= 10001; count++) {
        json_t *list = json_array();
        for (int i = 0; i < count; i++) {
            char code[16];
            snprintf(code, sizeof code, "o%d", i);
            json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "orgCode", code, "orgName", "N",
                                                  "parentCode", i ? "o0" : ""));
        }
        json_t *body = json_pack("{s:s,s:o}", "tenantId", "t", "orgInfoList", list);
        Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
        service_id_t svc;
        char msg[128];
        const char *code = kitsync_build("allOrgSync", body, &env, &svc, msg, sizeof msg);
        if (count == 10000) {
            assert_string_equal(code, "000000");
            assert_int_equal(env.all_org_sync->n_orgs, 10000);
            /* the audit record names 120 orgs and summarises the rest (audit takes <= 128) */
            Kooisv__ResourceRef **res = resources_of(&env, 1 + 120 + 1);
            assert_string_equal(res[0]->kind, "tenant");
            assert_string_equal(res[120]->id, "o119");
            assert_string_equal(res[121]->kind, "org");
            assert_string_equal(res[121]->id, "+9880 more");
            resources_free(res, 1 + 120 + 1);
        } else {
            assert_string_equal(code, "000002");
            assert_non_null(strstr(msg, "orgInfoList: more than 10000 entries"));
        }
        kitsync_free_body(&env);
        json_decref(body);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known),
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_nul_in_string),
        cmocka_unit_test(test_tenant_vector),
        cmocka_unit_test(test_limits_count_characters),
        cmocka_unit_test(test_auth_users),
        cmocka_unit_test(test_all_org_and_app),
        cmocka_unit_test(test_list_maximum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
