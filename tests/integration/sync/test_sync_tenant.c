/* Kit tenantSync, singleOrgSync and allOrgSync end to end: marketplace-signed HTTPS through the
 * gateway to the tenant service and PostgreSQL (suite fixture). Every refused call is checked
 * to have changed nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "canonjson.h"
#include "cryptoutil.h"
#include "kclient.h"
#include "sigv2.h"
#include "synctest.h"
#include "timeutil.h"
#include "xmalloc.h"

#define TENANT_EXISTS                                                                              \
    "SELECT count(*) FROM tenants.tenants WHERE instance_id = $1 AND tenant_id = $2"

static long org_count(const char *inst, const char *tenant)
{
    const char *p[] = {inst, tenant};
    return sql_long("SELECT count(*) FROM tenants.orgs WHERE instance_id = $1 AND tenant_id = $2",
                    2, p);
}

/* Fail unless org code of (inst, tenant) has the parent want ("": a root; NULL: no such org). */
static void assert_parent(const char *inst, const char *tenant, const char *code, const char *want)
{
    const char *p[] = {inst, tenant, code};
    char *parent = sql_text("SELECT parent_code FROM tenants.orgs WHERE instance_id = $1 AND"
                            " tenant_id = $2 AND org_code = $3",
                            3, p);
    if (want ? !parent || strcmp(parent, want) != 0 : parent != NULL)
        fail_msg("org %s of %s: parent %s, want %s", code, tenant, parent ? parent : "(no org)",
                 want ? want : "(no org)");
    free(parent);
}

/* The operators' tree view of (inst, tenant) (tenant.tree, answered 000000): its JSON text.
 * Caller frees. */
static char *tree_view(const char *inst, const char *tenant)
{
    char *json = NULL;
    char *code = admin_rpc("tenant", "operator", "tenant.tree", &json, "tenant", tenant, "instance",
                           inst, NULL);
    assert_string_equal(code, "000000 success");
    free(code);
    assert_non_null(json);
    return json;
}

static void org_add(const char *inst, const char *tenant, const char *code, const char *parent,
                    int flag)
{
    kit_ok("singleOrgSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"%s\","
           "\"orgName\":\"Org %s\",\"parentCode\":\"%s\",\"flag\":%d,"
           "\"testFlag\":0,\"timeStamp\":\"20261128101500123\"}",
           inst, tenant, code, code, parent, flag);
}

/* ---- signatures (spec §4: kit key, x-timestamp/x-nonce/x-sign, window, replay, case) ---- */

static void test_kit_signature(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    char *body = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"sig\","
                           "\"orgName\":\"S\",\"flag\":1}",
                           inst, tenant);
    char ts[24], nonce[40];
    char *before = tenant_digest(tenant);

    /* wrong signature, missing signature: 000001, nothing changes */
    snprintf(ts, sizeof ts, "%lld", (long long)time_now_ms());
    kit_answer_t a = kit_call_ex("singleOrgSync", body, ts, "n-bad-1",
                                 "00000000000000000000000000000000"
                                 "00000000000000000000000000000000");
    assert_kit(a, "000001", NULL);
    a = kit_call_ex("singleOrgSync", body, ts, "n-bad-2", "");
    assert_kit(a, "000001", NULL);
    /* signed by another key */
    char other[65];
    sigv2_sign(SIGV2_KIT, "another-kit-key-0123456789", "n-bad-3", ts, body, strlen(body), other);
    a = kit_call_ex("singleOrgSync", body, ts, "n-bad-3", other);
    assert_kit(a, "000001", NULL);
    /* stale and future timestamps, missing timestamp or nonce: 000002 */
    snprintf(ts, sizeof ts, "%lld", (long long)time_now_ms() - 120000);
    a = kit_call_ex("singleOrgSync", body, ts, "n-stale", NULL);
    assert_kit(a, "000002", NULL);
    snprintf(ts, sizeof ts, "%lld", (long long)time_now_ms() + 120000);
    a = kit_call_ex("singleOrgSync", body, ts, "n-future", NULL);
    assert_kit(a, "000002", NULL);
    a = kit_call_ex("singleOrgSync", body, NULL, "n-nots", NULL);
    assert_kit(a, "000002", NULL);
    snprintf(ts, sizeof ts, "%lld", (long long)time_now_ms());
    a = kit_call_ex("singleOrgSync", body, ts, NULL, NULL);
    assert_kit(a, "000002", NULL);
    char *after = tenant_digest(tenant);
    assert_string_equal(before, after);
    free(after);

    /* good, then the same nonce again (even on another gateway, another body): replay */
    snprintf(nonce, sizeof nonce, "n-%s", tenant);
    snprintf(ts, sizeof ts, "%lld", (long long)time_now_ms());
    a = kit_call_ex("singleOrgSync", body, ts, nonce, NULL);
    assert_kit(a, "000000", NULL);
    assert_int_equal(org_count(inst, tenant), 1);
    char *mid = tenant_digest(tenant);
    a = kit_call_ex("singleOrgSync", body, ts, nonce, NULL);
    assert_kit(a, "000001", NULL);
    kc_use_gateway(2);
    char *body2 = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"sig2\","
                            "\"orgName\":\"S2\",\"flag\":1}",
                            inst, tenant);
    a = kit_call_ex("singleOrgSync", body2, ts, nonce, NULL);
    kc_use_gateway(1);
    assert_kit(a, "000001", NULL);
    after = tenant_digest(tenant);
    assert_string_equal(mid, after);
    free(after);

    /* upper-case hex is the same signature; a signature over the exact raw bytes of a
     * non-canonical body is accepted too */
    char *canon_src = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"up\","
                                "\"orgName\":\"U\",\"flag\":1}",
                                inst, tenant);
    json_error_t jerr;
    json_t *v = canonjson_parse(canon_src, strlen(canon_src), &jerr);
    char *canon = canonjson_dump(v);
    json_decref(v);
    char sig[65];
    snprintf(ts, sizeof ts, "%lld", (long long)time_now_ms());
    sigv2_sign(SIGV2_KIT, suite_get("KOOISV_KIT_KEY"), "n-upper", ts, canon, strlen(canon), sig);
    for (char *p = sig; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    a = kit_call_ex("singleOrgSync", canon_src, ts, "n-upper", sig);
    assert_kit(a, "000000", NULL);
    char *raw = xasprintf("{ \"flag\" : 1, \"tenantId\" : \"%s\", \"instanceId\" : \"%s\","
                          " \"orgCode\" : \"raw\", \"orgName\" : \"R\" }",
                          tenant, inst);
    sigv2_sign(SIGV2_KIT, suite_get("KOOISV_KIT_KEY"), "n-raw", ts, raw, strlen(raw), sig);
    a = kit_call_ex("singleOrgSync", raw, ts, "n-raw", sig);
    assert_kit(a, "000000", NULL);
    assert_int_equal(org_count(inst, tenant), 3);

    free(raw);
    free(canon);
    free(canon_src);
    free(body2);
    free(mid);
    free(before);
    free(body);
    free(inst);
    free(tenant);
}

/* The spec's own vector bodies (fixed ids), signed afresh with the suite's kit key. */
static void test_vector_bodies(void **state)
{
    kresp_t r;
    const char *tenant_body =
        "{\"domainName\": \"https://example.tenantaccount.com\", \"flag\": 1, \"instanceId\": "
        "\"huaiweitest123456\", \"name\": \"huaiweitest\", \"orderId\": \"CS1906666666ABCDE\", "
        "\"tenantCode\": \"huawei\", \"tenantId\": \"t-001\", \"testFlag\": 0, \"timeStamp\": "
        "\"20230403171434618\"}";
    assert_int_equal(kc_kit("tenantSync", tenant_body, &r), 0);
    assert_non_null(r.code);
    assert_string_equal(r.code, "000000");
    assert_true(r.body_sign_ok);
    kresp_free(&r);
    const char *org_body =
        "{\"instanceId\": \"huaiweitest123456\", \"tenantId\": \"t-001\", \"orgCode\": \"d-100\", "
        "\"orgName\": \"\xe7\xa0\x94\xe5\x8f\x91\xe9\x83\xa8\", \"parentCode\": \"d-1\", \"flag\": "
        "1, \"testFlag\": 0, \"timeStamp\": \"20230403171434700\"}";
    assert_int_equal(kc_kit("singleOrgSync", org_body, &r), 0);
    assert_string_equal(r.code, "000000");
    kresp_free(&r);
    const char *p[] = {"huaiweitest123456", "t-001", "d-100"};
    char *name = sql_text("SELECT org_name FROM tenants.orgs WHERE instance_id = $1 AND"
                          " tenant_id = $2 AND org_code = $3",
                          3, p);
    assert_non_null(name);
    assert_string_equal(name, "\xe7\xa0\x94\xe5\x8f\x91\xe9\x83\xa8");
    free(name);
    char *dom = sql_text("SELECT domain_name FROM tenants.tenants WHERE instance_id = $1 AND"
                         " tenant_id = $2",
                         2, p);
    assert_string_equal(dom, "https://example.tenantaccount.com");
    free(dom);
}

/* ---- tenantSync: every flag, idempotency, upsert, delete without checks ---- */

static void test_tenant_flags(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    const char *key[] = {inst, tenant};
    const char *fmt = "{\"instanceId\":\"%s\",\"orderId\":\"CS%s\",\"tenantId\":\"%s\","
                      "\"tenantCode\":\"code-1\",\"name\":\"%s\",\"domainName\":\"%s\","
                      "\"flag\":%d,\"testFlag\":%d,\"timeStamp\":\"20261128101500123\"}";
    kit_answer_t a =
        kit_call("tenantSync", fmt, inst, inst, tenant, "Name 1", "d1.example.com", 1, 1);
    assert_kit(a, "000000", NULL);
    assert_int_equal(sql_long(TENANT_EXISTS, 2, key), 1);
    char *flag = sql_text("SELECT test_flag FROM tenants.tenants WHERE instance_id = $1 AND"
                          " tenant_id = $2",
                          2, key);
    assert_string_equal(flag, "t");
    free(flag);
    assert_int_equal(outbox_count("tenants", tenant, "tenantSync.add"), 1);

    /* repeated add: success, nothing new, the first data kept */
    char *before = tenant_digest(tenant);
    kit_ok("tenantSync", fmt, inst, inst, tenant, "Other", "other.example.com", 1, 1);
    assert_tenant_unchanged(tenant, before);

    /* modify: name and domain */
    kit_ok("tenantSync", fmt, inst, inst, tenant, "Name 2", "d2.example.com", 2, 1);
    char *name = sql_text("SELECT name || ' ' || domain_name || ' ' || tenant_code FROM"
                          " tenants.tenants WHERE instance_id = $1 AND tenant_id = $2",
                          2, key);
    assert_string_equal(name, "Name 2 d2.example.com code-1");
    free(name);
    assert_int_equal(outbox_count("tenants", tenant, "tenantSync.modify"), 1);
    /* the same modify again changes nothing and emits nothing */
    kit_ok("tenantSync", fmt, inst, inst, tenant, "Name 2", "d2.example.com", 2, 1);
    assert_int_equal(outbox_count("tenants", tenant, "tenantSync.modify"), 1);

    /* delete, twice; the tenant's orgs go with it */
    org_add(inst, tenant, "o1", "", 1);
    kit_ok("tenantSync", "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"flag\":0}", inst, tenant);
    assert_int_equal(sql_long(TENANT_EXISTS, 2, key), 0);
    assert_int_equal(org_count(inst, tenant), 0);
    kit_ok("tenantSync", "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"flag\":0}", inst, tenant);
    assert_int_equal(outbox_count("tenants", tenant, "tenantSync.delete"), 1);

    /* delete never checks that the instance exists */
    kit_ok("tenantSync", "{\"instanceId\":\"NO-SUCH-INSTANCE\",\"tenantId\":\"%s\",\"flag\":0}",
           tenant);

    /* modify of a missing tenant creates it (documented upsert) */
    char *t2 = uid("T");
    kit_ok("tenantSync", fmt, inst, inst, t2, "Late", "late.example.com", 2, 0);
    const char *key2[] = {inst, t2};
    assert_int_equal(sql_long(TENANT_EXISTS, 2, key2), 1);

    /* seller-console debugging: empty instanceId and orderId */
    char *t3 = uid("T");
    kit_ok("tenantSync",
           "{\"instanceId\":\"\",\"orderId\":\"\",\"tenantId\":\"%s\",\"tenantCode\":\"c\","
           "\"name\":\"Debug\",\"domainName\":\"\",\"flag\":1,\"testFlag\":1}",
           t3);
    const char *key3[] = {"", t3};
    assert_int_equal(sql_long(TENANT_EXISTS, 2, key3), 1);

    free(t3);
    free(t2);
    free(inst);
    free(tenant);
}

/* ---- org tree: any arrival order, cycles shown to operators, delete leaves orphans ---- */

/* The operators' tree view counts want orgs on a cycle (and names one when there are). */
static void tree_cycles(const char *inst, const char *tenant, long want)
{
    char *json = tree_view(inst, tenant);
    json_t *doc = json_loads(json, 0, NULL);
    if (!doc || json_integer_value(json_object_get(doc, "cycleCount")) != want ||
        json_is_null(json_object_get(doc, "cycleAt")) != (want == 0))
        fail_msg("tree of %s: want %ld orgs on a cycle, got %s", tenant, want, json);
    json_decref(doc);
    free(json);
}

/* Two moves sent in one order and delivered in the other: B to the top, then A under B, with
 * "A under B" arriving first (a cycle for a moment). Both are accepted; the tree ends right. */
static void test_org_moves_swapped(void **state)
{
    (void)state;
    char *inst = uid("I"), *tenant = uid("T");
    org_add(inst, tenant, "A", "", 1);
    org_add(inst, tenant, "B", "A", 1);
    org_add(inst, tenant, "A", "B", 2);
    tree_cycles(inst, tenant, 2);
    org_add(inst, tenant, "B", "", 2);
    assert_parent(inst, tenant, "A", "B");
    assert_parent(inst, tenant, "B", "");
    tree_cycles(inst, tenant, 0);
    assert_int_equal(outbox_count("tenants", tenant, "singleOrgSync.modify"), 2);
    free(inst);
    free(tenant);
}

static void test_org_order_and_cycles(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    /* grandchild, then child, then root: never refused */
    org_add(inst, tenant, "c", "b", 1);
    org_add(inst, tenant, "b", "a", 1);
    char *json = tree_view(inst, tenant);
    assert_non_null(strstr(json, "\"orphan\":true"));
    assert_non_null(strstr(json, "\"orphanCount\":1"));
    free(json);
    org_add(inst, tenant, "a", "", 1);
    json = tree_view(inst, tenant);
    assert_null(strstr(json, "\"orphan\":true"));
    /* a > b > c nested */
    json_error_t jerr;
    json_t *doc = json_loads(json, 0, &jerr);
    json_t *roots = json_object_get(doc, "tree");
    assert_int_equal(json_array_size(roots), 1);
    json_t *b = json_array_get(json_object_get(json_array_get(roots, 0), "children"), 0);
    assert_string_equal(json_string_value(json_object_get(b, "orgCode")), "b");
    json_t *c = json_array_get(json_object_get(b, "children"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "orgCode")), "c");
    json_decref(doc);
    free(json);

    /* moving a under c closes a cycle given the current tree: accepted (the move that breaks
     * it may still be on its way, spec §4) and marked in the operators' view */
    org_add(inst, tenant, "a", "c", 2);
    tree_cycles(inst, tenant, 3);
    org_add(inst, tenant, "a", "", 2); /* the move that breaks it */
    tree_cycles(inst, tenant, 0);
    /* an add that closes a cycle through orphans that arrived first is accepted as well */
    org_add(inst, tenant, "y", "x", 1);
    org_add(inst, tenant, "x", "y", 1);
    tree_cycles(inst, tenant, 2);
    org_add(inst, tenant, "x", "", 2);
    tree_cycles(inst, tenant, 0);
    /* its own parent is a bad parameter, not an ordering: refused, nothing changes */
    char *before = tenant_digest(tenant);
    kit_answer_t a = kit_call("singleOrgSync",
                              "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"a\","
                              "\"orgName\":\"A\",\"parentCode\":\"a\",\"flag\":2}",
                              inst, tenant);
    assert_kit(a, "000002", "parentCode");
    assert_tenant_unchanged(tenant, before);

    /* a legal move: c to the top; a modify of a missing org creates it */
    org_add(inst, tenant, "c", "", 2);
    assert_parent(inst, tenant, "c", "");
    org_add(inst, tenant, "m", "a", 2);
    assert_int_equal(org_count(inst, tenant), 6);

    /* repeated add creates nothing; delete twice; the children of a deleted org stay */
    long events = outbox_count("tenants", tenant, NULL);
    org_add(inst, tenant, "b", "a", 1);
    assert_int_equal(outbox_count("tenants", tenant, NULL), events);
    for (int i = 0; i < 2; i++)
        kit_ok("singleOrgSync",
               "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"a\",\"flag\":0}", inst,
               tenant);
    assert_int_equal(org_count(inst, tenant), 5);
    json = tree_view(inst, tenant);
    assert_non_null(strstr(json, "\"orphanCount\":2")); /* b (parent a), m (a) */
    free(json);
    free(inst);
    free(tenant);
}

/* Moves racing each other are both applied (each under the tree lock); when together they
 * close a cycle, the operators' view shows it. */
typedef struct {
    const char *inst, *tenant;
    char codes[2][8];
} race_t;

static void race_move(void *arg, int i)
{
    race_t *r = arg;
    /* thread 0: p under q; thread 1: q under p. */
    char *body = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"%s\","
                           "\"orgName\":\"N\",\"parentCode\":\"%s\",\"flag\":2}",
                           r->inst, r->tenant, i ? "q" : "p", i ? "p" : "q");
    kresp_t resp;
    kc_use_gateway(1 + i % 2);
    kc_kit("singleOrgSync", body, &resp);
    snprintf(r->codes[i], sizeof r->codes[i], "%s", resp.code ? resp.code : "none");
    kresp_free(&resp);
    free(body);
}

static void test_org_concurrent_moves(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    for (int round = 0; round < 5; round++) {
        org_add(inst, tenant, "p", "", 2);
        org_add(inst, tenant, "q", "", 2);
        race_t r = {.inst = inst, .tenant = tenant};
        run_concurrently(2, race_move, &r);
        if (strcmp(r.codes[0], "000000") != 0 || strcmp(r.codes[1], "000000") != 0)
            fail_msg("round %d: answers %s and %s", round, r.codes[0], r.codes[1]);
        assert_parent(inst, tenant, "p", "q");
        assert_parent(inst, tenant, "q", "p");
        tree_cycles(inst, tenant, 2);
    }
    free(inst);
    free(tenant);
}

/* ---- allOrgSync: whole replace, atomic, refusals leave the old tree ---- */

static void test_all_org_sync(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    org_add(inst, tenant, "old1", "", 1);
    org_add(inst, tenant, "old2", "old1", 1);
    kit_answer_t a =
        kit_call("allOrgSync",
                 "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"testFlag\":0,\"orgInfoList\":["
                 "{\"orgCode\":\"n3\",\"orgName\":\"N3\",\"parentCode\":\"n2\"},"
                 "{\"orgCode\":\"n2\",\"orgName\":\"N2\",\"parentCode\":\"n1\"},"
                 "{\"orgCode\":\"n1\",\"orgName\":\"N1\",\"parentCode\":\"\"},"
                 "{\"orgCode\":\"n4\",\"orgName\":\"N4\",\"parentCode\":\"gone\"}]}",
                 inst, tenant);
    assert_kit(a, "000000", NULL);
    assert_int_equal(org_count(inst, tenant), 4);
    assert_parent(inst, tenant, "old1", NULL);
    assert_parent(inst, tenant, "n3", "n2");
    assert_int_equal(outbox_count("tenants", tenant, "allOrgSync.replace"), 1);

    /* the same list again (as a JSON string this time): no change, no event */
    kit_ok(
        "allOrgSync",
        "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgInfoList\":\"["
        "{\\\"orgCode\\\":\\\"n1\\\",\\\"orgName\\\":\\\"N1\\\",\\\"parentCode\\\":\\\"\\\"},"
        "{\\\"orgCode\\\":\\\"n2\\\",\\\"orgName\\\":\\\"N2\\\",\\\"parentCode\\\":\\\"n1\\\"},"
        "{\\\"orgCode\\\":\\\"n3\\\",\\\"orgName\\\":\\\"N3\\\",\\\"parentCode\\\":\\\"n2\\\"},"
        "{\\\"orgCode\\\":\\\"n4\\\",\\\"orgName\\\":\\\"N4\\\",\\\"parentCode\\\":\\\"gone\\\"}]"
        "\"}",
        inst, tenant);
    assert_int_equal(outbox_count("tenants", tenant, "allOrgSync.replace"), 1);

    /* a list with a cycle, or a duplicate: 000002 and the old tree untouched */
    char *before = tenant_digest(tenant);
    a = kit_call("allOrgSync",
                 "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgInfoList\":["
                 "{\"orgCode\":\"r\",\"orgName\":\"R\"},"
                 "{\"orgCode\":\"x\",\"orgName\":\"X\",\"parentCode\":\"z\"},"
                 "{\"orgCode\":\"y\",\"orgName\":\"Y\",\"parentCode\":\"x\"},"
                 "{\"orgCode\":\"z\",\"orgName\":\"Z\",\"parentCode\":\"y\"}]}",
                 inst, tenant);
    assert_kit(a, "000002", "cycle");
    a = kit_call("allOrgSync",
                 "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgInfoList\":["
                 "{\"orgCode\":\"r\",\"orgName\":\"R\"},{\"orgCode\":\"r\",\"orgName\":\"R2\"}]}",
                 inst, tenant);
    assert_kit(a, "000002", "duplicate");
    assert_tenant_unchanged(tenant, before);

    /* an empty list empties the tree */
    kit_ok("allOrgSync", "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgInfoList\":[]}", inst,
           tenant);
    assert_int_equal(org_count(inst, tenant), 0);

    /* a large tree (2000 orgs, a deep chain) in one call */
    json_t *list = json_array();
    for (int i = 0; i < 2000; i++) {
        char code[16], parent_code[16];
        snprintf(code, sizeof code, "L%04d", i);
        snprintf(parent_code, sizeof parent_code, i ? "L%04d" : "", i - 1);
        json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "orgCode", code, "orgName", "Level",
                                              "parentCode", parent_code));
    }
    json_t *body =
        json_pack("{s:s,s:s,s:o}", "instanceId", inst, "tenantId", tenant, "orgInfoList", list);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    a = kit_call("allOrgSync", "%s", text);
    free(text);
    assert_kit(a, "000000", NULL);
    assert_int_equal(org_count(inst, tenant), 2000);
    /* moving the root under the deepest org is a cycle found through 2000 levels: accepted
     * and shown to operators with all 2000 orgs on it */
    org_add(inst, tenant, "L0000", "L1999", 2);
    tree_cycles(inst, tenant, 2000);
    free(inst);
    free(tenant);
}

/* ---- concurrent duplicates: one row, one event, every answer a success ---- */

static void test_concurrent_duplicates(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    const char *key[] = {inst, tenant};
    char *body = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"tenantCode\":\"c\","
                           "\"name\":\"N\",\"domainName\":\"d\",\"flag\":1}",
                           inst, tenant);
    kit_concurrent_duplicates("tenantSync", body);
    assert_int_equal(sql_long(TENANT_EXISTS, 2, key), 1);
    assert_int_equal(outbox_count("tenants", tenant, "tenantSync.add"), 1);
    free(body);

    body = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"o\","
                     "\"orgName\":\"O\",\"parentCode\":\"p\",\"flag\":1}",
                     inst, tenant);
    kit_concurrent_duplicates("singleOrgSync", body);
    assert_int_equal(org_count(inst, tenant), 1);
    assert_int_equal(outbox_count("tenants", tenant, "singleOrgSync.add"), 1);
    free(body);

    body = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgInfoList\":["
                     "{\"orgCode\":\"a\",\"orgName\":\"A\"},{\"orgCode\":\"b\",\"orgName\":\"B\","
                     "\"parentCode\":\"a\"}]}",
                     inst, tenant);
    kit_concurrent_duplicates("allOrgSync", body);
    assert_int_equal(org_count(inst, tenant), 2);
    assert_int_equal(outbox_count("tenants", tenant, "allOrgSync.replace"), 1);
    free(body);

    body = xasprintf("{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"flag\":0}", inst, tenant);
    kit_concurrent_duplicates("tenantSync", body);
    assert_int_equal(sql_long(TENANT_EXISTS, 2, key), 0);
    assert_int_equal(outbox_count("tenants", tenant, "tenantSync.delete"), 1);
    free(body);
    free(inst);
    free(tenant);
}

/* ---- isolation: the same ids in two tenants (and two instances) never mix ---- */

static void test_tenant_isolation(void **state)
{
    char *inst = uid("I"), *t1 = uid("T"), *t2 = uid("T");
    org_add(inst, t1, "dept", "", 1);
    org_add(inst, t2, "dept", "", 1);
    org_add(inst, t1, "team", "dept", 1);
    org_add("other-instance", t1, "dept", "", 1);
    /* modify and delete in t1 leave t2 alone */
    char *before = tenant_digest(t2);
    kit_ok("singleOrgSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgCode\":\"dept\","
           "\"orgName\":\"Renamed\",\"flag\":2}",
           inst, t1);
    kit_ok("allOrgSync", "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"orgInfoList\":[]}", inst,
           t1);
    char *after = tenant_digest(t2);
    assert_string_equal(before, after);
    assert_int_equal(org_count(inst, t1), 0);
    assert_int_equal(org_count(inst, t2), 1);
    assert_int_equal(org_count("other-instance", t1), 1);
    char *json = tree_view(inst, t2);
    assert_non_null(strstr(json, "\"orgName\":\"Org dept\""));
    assert_null(strstr(json, "Renamed"));
    assert_null(strstr(json, "team"));
    free(json);
    free(before);
    free(after);
    free(inst);
    free(t1);
    free(t2);
}

/* ---- bad input of every kind: a clear code and message, nothing changed ---- */

static const kit_refusal_t bad_inputs[] = {
    {"tenantSync", "not json", "000002", NULL},
    {"tenantSync", "[1,2]", "000002", NULL},
    {"tenantSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":\"1\",\"tenantCode\":\"c\",\"name\":"
     "\"n\"}",
     "000002", "flag"},
    {"tenantSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":7,\"tenantCode\":\"c\",\"name\":"
     "\"n\"}",
     "000002", "flag"},
    {"tenantSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"testFlag\":\"1\",\"tenantCode\":"
     "\"c\",\"name\":\"n\"}",
     "000002", "testFlag"},
    {"tenantSync", "{\"instanceId\":\"%1$s\",\"flag\":1,\"tenantCode\":\"c\",\"name\":\"n\"}",
     "000002", "tenantId"},
    {"tenantSync", "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"name\":\"n\"}",
     "000002", "tenantCode"},
    {"tenantSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"tenantCode\":\"c\",\"name\":"
     "\"n\",\"domainName\":5}",
     "000002", "domainName"},
    {"tenantSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"tenantCode\":\"c\",\"name\":"
     "\"n\",\"orderId\":"
     "\"O12345678901234567890123456789012345678901234567890123456789012345\"}",
     "000002", "orderId"},
    {"tenantSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"tenantCode\":\"c\",\"name\":"
     "\"n\",\"timeStamp\":\"yesterday\"}",
     "000002", "timeStamp"},
    {"singleOrgSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"orgName\":\"n\"}", "000002",
     "orgCode"},
    {"singleOrgSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"orgCode\":\"o\"}", "000002",
     "orgName"},
    {"singleOrgSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"orgCode\":\"o\",\"orgName\":["
     "\"n\"]}",
     "000002", "orgName"},
    {"singleOrgSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":3,\"orgCode\":\"o\",\"orgName\":"
     "\"n\"}",
     "000002", "flag"},
    {"singleOrgSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"flag\":1,\"orgCode\":\"o\",\"orgName\":"
     "\"n\",\"parentCode\":"
     "\"P12345678901234567890123456789012345678901234567890123456789012345\"}",
     "000002", "parentCode"},
    {"allOrgSync", "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\"}", "000002", "orgInfoList"},
    {"allOrgSync", "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"orgInfoList\":\"[oops\"}",
     "000002", "orgInfoList"},
    {"allOrgSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"orgInfoList\":[{\"orgCode\":\"a\"}]}",
     "000002", "orgInfoList[0].orgName"},
    {"allOrgSync",
     "{\"instanceId\":\"%1$s\",\"tenantId\":\"%2$s\",\"orgInfoList\":[{\"orgCode\":\"a\","
     "\"orgName\":\"A\"},7]}",
     "000002", "orgInfoList[1]"},
};

static void test_bad_input(void **state)
{
    char *inst = uid("I"), *tenant = uid("T");
    /* some state to be left alone */
    org_add(inst, tenant, "keep", "", 1);
    kit_ok("tenantSync",
           "{\"instanceId\":\"%s\",\"tenantId\":\"%s\",\"tenantCode\":\"c\","
           "\"name\":\"Keep\",\"flag\":1}",
           inst, tenant);
    kit_refusals_check(bad_inputs, sizeof bad_inputs / sizeof bad_inputs[0], inst, tenant);
    /* unknown sync name: no JSON contract, 404 */
    char *before = tenant_digest(tenant);
    kresp_t r;
    kc_kit("nosuchSync", "{}", &r);
    assert_int_equal(r.status, 404);
    kresp_free(&r);
    assert_tenant_unchanged(tenant, before);
    free(inst);
    free(tenant);
}

/* GET /v1/tenants/TENANT?instance=I as token: HTTP status want, the body parsed (caller frees). */
static json_t *tenant_via_admin(const char *tenant, const char *inst, const char *token, int want)
{
    char *path = xasprintf("/v1/tenants/%s?instance=%s", tenant, inst);
    kresp_t r;
    assert_int_equal(kc_admin("GET", path, token, NULL, &r), 0);
    if (r.status != want)
        fail_msg("%s: HTTP %d, wanted %d: %s", path, r.status, want, r.body ? r.body : "");
    json_t *doc = json_loads(r.body ? r.body : "", 0, NULL);
    kresp_free(&r);
    free(path);
    return doc;
}

/* tenant.get through the admin API: the tenant as synced, its org count; operators only; an
 * unknown tenant 404, a bad argument 400. */
static void test_admin_tenant_get(void **state)
{
    (void)state;
    char *inst = uid("I"), *tenant = uid("T");
    kit_ok("tenantSync",
           "{\"instanceId\":\"%s\",\"orderId\":\"CS%s\",\"tenantId\":\"%s\","
           "\"tenantCode\":\"code-9\",\"name\":\"<b>Acme</b>\",\"domainName\":\"acme.example.com\","
           "\"flag\":1,\"testFlag\":1,\"timeStamp\":\"20261128101500123\"}",
           inst, inst, tenant);
    org_add(inst, tenant, "o1", "", 1);
    const char *operator= suite_get("KOOISV_OPERATOR_ROLE_TOKEN");
    json_t *doc = tenant_via_admin(tenant, inst, operator, 200);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "tenantId")), tenant);
    assert_int_equal(json_integer_value(json_object_get(doc, "orgCount")), 1);
    json_t *t = json_object_get(doc, "tenant");
    assert_string_equal(json_string_value(json_object_get(t, "name")), "<b>Acme</b>");
    assert_string_equal(json_string_value(json_object_get(t, "tenantCode")), "code-9");
    assert_string_equal(json_string_value(json_object_get(t, "domainName")), "acme.example.com");
    assert_true(json_is_true(json_object_get(t, "testFlag")));
    json_decref(doc);
    json_decref(tenant_via_admin(tenant, inst, suite_get("KOOISV_AUDITOR_TOKEN"), 403));
    json_decref(tenant_via_admin(tenant, inst, NULL, 401));
    doc = tenant_via_admin("NO-SUCH-TENANT", inst, operator, 404);
    assert_string_equal(json_string_value(json_object_get(doc, "code")), "000003");
    json_decref(doc);
    char *long_id = xcalloc(1, 80);
    memset(long_id, 'x', 79);
    json_decref(tenant_via_admin(long_id, inst, operator, 400));
    free(long_id);
    /* the look-up is in the audit trail, naming the tenant */
    const char *p[] = {tenant};
    assert_true(sql_long("SELECT count(*) FROM audit.intents WHERE event_type = 'admin.tenant.get'"
                         " AND resources @> jsonb_build_array(jsonb_build_object('id', $1::text))",
                         1, p) >= 1);
    free(inst);
    free(tenant);
}

/* An admin action neither the service nor its outbox serves is refused by name. */
static void test_admin_unknown_action(void **state)
{
    assert_unknown_action_refused("tenant");
}

int main(void)
{
    synctest_require_suite();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kit_signature),        cmocka_unit_test(test_vector_bodies),
        cmocka_unit_test(test_tenant_flags),         cmocka_unit_test(test_org_order_and_cycles),
        cmocka_unit_test(test_org_moves_swapped),    cmocka_unit_test(test_org_concurrent_moves),
        cmocka_unit_test(test_all_org_sync),         cmocka_unit_test(test_concurrent_duplicates),
        cmocka_unit_test(test_tenant_isolation),     cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_admin_unknown_action), cmocka_unit_test(test_admin_tenant_get),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
