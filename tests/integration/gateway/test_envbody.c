/* Unit tests of envbody (no suite): bodies of the envelope made, filled, read and freed by field
 * name for a basic order request, kit syncs (with repeated entries) and an admin request; each
 * packs and unpacks with the values set; the resources an audit record names, in order. Run in
 * the ASan build, a leak (a string set twice, a body not freed) fails the test at exit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envbody.h"
#include "resref.h"

/* env packed and unpacked again; the caller frees it (kooisv__envelope__free_unpacked). */
static Kooisv__Envelope *round_trip(const Kooisv__Envelope *env)
{
    size_t len = kooisv__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    assert_int_equal(kooisv__envelope__pack(env, buf), len);
    Kooisv__Envelope *back = kooisv__envelope__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(back);
    assert_int_equal(back->body_case, env->body_case);
    assert_string_equal(back->request_id, env->request_id);
    assert_int_equal(envbody_get(back) != NULL, envbody_get(env) != NULL);
    return back;
}

/* envbody_free leaves env without a body, and a second call changes nothing. */
static void free_body(Kooisv__Envelope *env)
{
    char *rid = env->request_id;
    envbody_free(env);
    assert_int_equal(env->body_case, KOOISV__ENVELOPE__BODY__NOT_SET);
    assert_null(envbody_get(env));
    envbody_free(env);
    assert_int_equal(env->body_case, KOOISV__ENVELOPE__BODY__NOT_SET);
    assert_ptr_equal(env->request_id, rid);
}

/* A new body of body_case in env (a fresh envelope with request id rid), checked: of type
 * desc, set as env's body. */
static ProtobufCMessage *new_body(Kooisv__Envelope *env, char *rid,
                                  Kooisv__Envelope__BodyCase body_case,
                                  const ProtobufCMessageDescriptor *desc)
{
    kooisv__envelope__init(env);
    env->request_id = rid;
    assert_null(envbody_get(env));
    ProtobufCMessage *m = envbody_new(env, body_case);
    assert_non_null(m);
    assert_ptr_equal(m->descriptor, desc);
    assert_int_equal(env->body_case, body_case);
    assert_ptr_equal(envbody_get(env), m);
    return m;
}

/* The unpacked copy freed, then env's body (free_body). */
static void free_both(Kooisv__Envelope *back, Kooisv__Envelope *env)
{
    kooisv__envelope__free_unpacked(back, NULL);
    free_body(env);
}

/* A basic order request (newInstance): made in env, its strings set (NULL as "", a second set
 * replacing the first), read back, packed and unpacked. */
static void test_order_request(void **state)
{
    (void)state;
    Kooisv__Envelope env;
    ProtobufCMessage *m = new_body(&env, "rid-order-1", KOOISV__ENVELOPE__BODY_NEW_INSTANCE,
                                   &kooisv__new_instance__descriptor);
    assert_ptr_equal(env.new_instance, m);
    assert_string_equal(envbody_string(m, "order_id"), ""); /* initialised */

    envbody_set_string(m, "order_id", "CS1906666666ABCDE");
    envbody_set_string(m, "order_line_id", "CS1906666666ABCDE-000001");
    envbody_set_string(m, "order_line_id", "CS1906666666ABCDE-000002");
    envbody_set_string(m, "business_id", "B-1");
    envbody_set_string(m, "business_id", NULL);
    assert_string_equal(env.new_instance->order_id, "CS1906666666ABCDE");
    assert_string_equal(envbody_string(m, "order_id"), "CS1906666666ABCDE");
    assert_string_equal(envbody_string(m, "order_line_id"), "CS1906666666ABCDE-000002");
    assert_string_equal(env.new_instance->business_id, "");

    assert_true(envbody_has_field(m, "order_id"));
    assert_true(envbody_has_field(m, "business_id"));
    assert_false(envbody_has_field(m, "instance_id"));
    assert_false(envbody_has_field(m, "orderId")); /* .proto names, not the JSON ones */
    assert_false(envbody_has_field(m, ""));

    Kooisv__Envelope *back = round_trip(&env);
    assert_non_null(back->new_instance);
    assert_ptr_equal(envbody_get(back), back->new_instance);
    assert_string_equal(back->new_instance->order_id, "CS1906666666ABCDE");
    assert_string_equal(envbody_string(envbody_get(back), "order_line_id"),
                        "CS1906666666ABCDE-000002");
    assert_string_equal(back->new_instance->business_id, "");
    free_both(back, &env);
}

/* A kit tenant sync: strings and its int32 flag. */
static void test_tenant_sync(void **state)
{
    (void)state;
    Kooisv__Envelope env;
    ProtobufCMessage *m = new_body(&env, "rid-tenant-1", KOOISV__ENVELOPE__BODY_TENANT_SYNC,
                                   &kooisv__tenant_sync__descriptor);
    assert_ptr_equal(env.tenant_sync, m);
    assert_true(envbody_has_field(m, "flag"));
    assert_false(envbody_has_field(m, "users"));
    envbody_set_string(m, "tenant_id", "68cbc86abc2018ab880d92f36422fa0e");
    envbody_set_string(m, "name", "Kooi \xe6\xb5\x8b\xe8\xaf\x95"); /* UTF-8 kept as is */
    envbody_set_string(m, "time_stamp", "20261206233000123");
    envbody_set_int32(m, "flag", 2);
    assert_int_equal(env.tenant_sync->flag, 2);
    envbody_set_int32(m, "flag", 0);
    assert_int_equal(env.tenant_sync->flag, 0);
    envbody_set_int32(m, "flag", -7);

    Kooisv__Envelope *back = round_trip(&env);
    assert_string_equal(back->tenant_sync->tenant_id, "68cbc86abc2018ab880d92f36422fa0e");
    assert_string_equal(back->tenant_sync->name, "Kooi \xe6\xb5\x8b\xe8\xaf\x95");
    assert_string_equal(back->tenant_sync->time_stamp, "20261206233000123");
    assert_string_equal(back->tenant_sync->instance_id, "");
    assert_int_equal(back->tenant_sync->flag, -7);
    free_both(back, &env);
}

/* A kit auth sync: users appended one by one as entries of the repeated field, in order. */
static void test_auth_sync_entries(void **state)
{
    (void)state;
    Kooisv__Envelope env;
    ProtobufCMessage *m = new_body(&env, "rid-auth-1", KOOISV__ENVELOPE__BODY_AUTH_SYNC,
                                   &kooisv__auth_sync__descriptor);
    Kooisv__AuthSync *as = env.auth_sync;
    assert_ptr_equal((ProtobufCMessage *)as, m);
    envbody_set_string(m, "tenant_id", "T-1");
    envbody_set_int32(m, "flag", 1);
    ProtobufCMessage *u1 = envbody_add_entry(m, "users");
    ProtobufCMessage *u2 = envbody_add_entry(m, "users");
    assert_int_equal(as->n_users, 2);
    assert_ptr_equal(as->users[0], u1);
    assert_ptr_equal(as->users[1], u2);
    assert_ptr_equal(u1->descriptor, &kooisv__sync_user__descriptor);
    assert_string_equal(envbody_string(u2, "user_name"), ""); /* initialised */
    envbody_set_string(u1, "user_name", "alice");
    envbody_set_string(u1, "role", "admin");
    envbody_set_int32(u1, "employee_type", 3);
    envbody_set_string(u2, "user_name", "bob");
    envbody_set_string(u2, "email", "bob@example.com");
    assert_string_equal(as->users[0]->user_name, "alice");
    assert_string_equal(as->users[1]->email, "bob@example.com");

    Kooisv__Envelope *back = round_trip(&env);
    assert_string_equal(back->auth_sync->tenant_id, "T-1");
    assert_int_equal(back->auth_sync->flag, 1);
    assert_int_equal(back->auth_sync->n_users, 2);
    assert_string_equal(back->auth_sync->users[0]->user_name, "alice");
    assert_string_equal(back->auth_sync->users[0]->role, "admin");
    assert_int_equal(back->auth_sync->users[0]->employee_type, 3);
    assert_string_equal(back->auth_sync->users[1]->user_name, "bob");
    assert_string_equal(back->auth_sync->users[1]->email, "bob@example.com");
    assert_int_equal(back->auth_sync->users[1]->employee_type, 0);
    free_both(back, &env);
}

/* A kit all-org sync built as kitsync builds it: a message made alone, its orgs appended and
 * read back by name, then attached to the envelope. */
static void test_attach_all_orgs(void **state)
{
    (void)state;
    static const char *codes[] = {"root", "sales", "sales-north"};
    static const char *parents[] = {"", "root", "sales"};
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    env.request_id = "rid-orgs-1";
    ProtobufCMessage *m = envbody_message_new(KOOISV__ENVELOPE__BODY_ALL_ORG_SYNC);
    assert_non_null(m);
    assert_ptr_equal(m->descriptor, &kooisv__all_org_sync__descriptor);
    assert_int_equal(env.body_case, KOOISV__ENVELOPE__BODY__NOT_SET); /* not attached yet */
    envbody_set_string(m, "tenant_id", "T-2");
    for (size_t i = 0; i < 3; i++) {
        ProtobufCMessage *org = envbody_add_entry(m, "orgs");
        assert_ptr_equal(org->descriptor, &kooisv__sync_org__descriptor);
        envbody_set_string(org, "org_code", codes[i]);
        envbody_set_string(org, "parent_code", parents[i]);
        assert_string_equal(envbody_string(org, "org_code"), codes[i]);
    }
    envbody_attach(&env, KOOISV__ENVELOPE__BODY_ALL_ORG_SYNC, m);
    assert_int_equal(env.body_case, KOOISV__ENVELOPE__BODY_ALL_ORG_SYNC);
    assert_ptr_equal(env.all_org_sync, m);
    assert_ptr_equal(envbody_get(&env), m);

    Kooisv__Envelope *back = round_trip(&env);
    assert_string_equal(back->all_org_sync->tenant_id, "T-2");
    assert_int_equal(back->all_org_sync->n_orgs, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(back->all_org_sync->orgs[i]->org_code, codes[i]);
        assert_string_equal(back->all_org_sync->orgs[i]->parent_code, parents[i]);
    }
    free_both(back, &env);
}

/* An admin request: its action, and its map of arguments filled as entries (key, value). */
static void test_admin_request(void **state)
{
    (void)state;
    Kooisv__Envelope env;
    ProtobufCMessage *m = new_body(&env, "rid-admin-1", KOOISV__ENVELOPE__BODY_ADMIN,
                                   &kooisv__admin_request__descriptor);
    assert_true(envbody_has_field(m, "args"));
    envbody_set_string(m, "action", "instance.list");
    ProtobufCMessage *a = envbody_add_entry(m, "args");
    envbody_set_string(a, "key", "limit");
    envbody_set_string(a, "value", "100");
    a = envbody_add_entry(m, "args");
    envbody_set_string(a, "key", "status");
    envbody_set_string(a, "value", "active");

    Kooisv__Envelope *back = round_trip(&env);
    assert_string_equal(back->admin->action, "instance.list");
    assert_int_equal(back->admin->n_args, 2);
    assert_string_equal(back->admin->args[0]->key, "limit");
    assert_string_equal(back->admin->args[0]->value, "100");
    assert_string_equal(back->admin->args[1]->key, "status");
    assert_string_equal(back->admin->args[1]->value, "active");
    free_both(back, &env);
}

/* A body without fields (ping) still sets the case and travels. */
static void test_ping(void **state)
{
    (void)state;
    Kooisv__Envelope env;
    ProtobufCMessage *m =
        new_body(&env, "rid-ping-1", KOOISV__ENVELOPE__BODY_PING, &kooisv__ping__descriptor);
    assert_false(envbody_has_field(m, "request_id"));
    Kooisv__Envelope *back = round_trip(&env);
    assert_non_null(back->ping);
    free_both(back, &env);
}

static void test_free_without_body(void **state)
{
    (void)state;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    env.request_id = "rid-none";
    env.deadline_ms = 1234;
    free_body(&env);
    assert_string_equal(env.request_id, "rid-none");
    assert_int_equal(env.deadline_ms, 1234);
    Kooisv__Envelope *back = round_trip(&env); /* no body: still packs */
    assert_null(envbody_get(back));
    kooisv__envelope__free_unpacked(back, NULL);
}

/* res[0..n) as "kind=id kind=id". */
static void refs_text(Kooisv__ResourceRef **res, size_t n, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w =
            snprintf(out + used, outlen - used, "%s%s=%s", i ? " " : "", res[i]->kind, res[i]->id);
        assert_true(w > 0 && (size_t)w < outlen - used);
        used += (size_t)w;
    }
}

static void test_add_refs(void **state)
{
    (void)state;
    static const envbody_ref_t order_refs[] = {{"order", "order_id"},
                                               {"order_line", "order_line_id"},
                                               {"business", "business_id"},
                                               {NULL, NULL}};
    static const envbody_ref_t none[] = {{NULL, NULL}};
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    env.request_id = "rid-refs-1";
    Kooisv__ResourceRef **res = NULL;
    size_t n = 0;
    char text[256];

    envbody_add_refs(&env, order_refs, &res, &n); /* no body: nothing */
    assert_int_equal(n, 0);
    assert_null(res);

    ProtobufCMessage *m = envbody_new(&env, KOOISV__ENVELOPE__BODY_NEW_INSTANCE);
    envbody_set_string(m, "order_id", "O-1");
    envbody_set_string(m, "business_id", "B-1"); /* order_line_id left empty: skipped */
    envbody_add_refs(&env, NULL, &res, &n);
    envbody_add_refs(&env, none, &res, &n);
    assert_int_equal(n, 0);
    assert_null(res);

    resref_add(&res, &n, "tenant", "T-1"); /* appended after what is there */
    envbody_add_refs(&env, order_refs, &res, &n);
    refs_text(res, n, text, sizeof text);
    assert_string_equal(text, "tenant=T-1 order=O-1 business=B-1");

    envbody_set_string(m, "order_line_id", "OL-1");
    envbody_add_refs(&env, order_refs, &res, &n);
    refs_text(res, n, text, sizeof text);
    assert_string_equal(text, "tenant=T-1 order=O-1 business=B-1 order=O-1 order_line=OL-1 "
                              "business=B-1");
    resref_free(res, n);
    free_body(&env);
}

/* A field name the message does not have (or not of that type) is a programmer error: asserted
 * in a debug build; in a release build (NDEBUG, as the tests are built) nothing is changed,
 * envbody_string and envbody_add_entry give NULL, and envbody_add_refs skips the ref. */
static void test_wrong_names(void **state)
{
    (void)state;
#ifndef NDEBUG
    print_message("assertions are on in this build: wrong names not tried\n");
    skip();
#else
    static const envbody_ref_t refs[] = {
        {"tenant", "tenant_id"}, {"ghost", "no_such"}, {"flag", "flag"}, {NULL, NULL}};
    Kooisv__Envelope env;
    ProtobufCMessage *m = new_body(&env, "rid-wrong-1", KOOISV__ENVELOPE__BODY_TENANT_SYNC,
                                   &kooisv__tenant_sync__descriptor);
    envbody_set_string(m, "tenant_id", "T-3");
    envbody_set_int32(m, "flag", 1);
    uint8_t before[256], after[256];
    size_t len = kooisv__envelope__get_packed_size(&env);
    assert_true(len <= sizeof before);
    kooisv__envelope__pack(&env, before);

    envbody_set_string(m, "no_such", "x");
    envbody_set_string(m, "flag", "x");   /* an int32 */
    envbody_set_int32(m, "tenant_id", 5); /* a string */
    envbody_set_int32(m, "no_such", 5);
    assert_null(envbody_string(m, "no_such"));
    assert_null(envbody_string(m, "flag"));
    assert_null(envbody_add_entry(m, "tenant_id")); /* not repeated */
    assert_null(envbody_add_entry(m, "users"));     /* AuthSync's, not TenantSync's */
    assert_int_equal(kooisv__envelope__get_packed_size(&env), len);
    kooisv__envelope__pack(&env, after);
    assert_memory_equal(before, after, len);

    Kooisv__ResourceRef **res = NULL;
    size_t n = 0;
    char text[128];
    envbody_add_refs(&env, refs, &res, &n);
    refs_text(res, n, text, sizeof text);
    assert_string_equal(text, "tenant=T-3");
    resref_free(res, n);
    free_body(&env);

    ProtobufCMessage *auth = envbody_message_new(KOOISV__ENVELOPE__BODY_AUTH_SYNC);
    assert_non_null(envbody_add_entry(auth, "users"));
    assert_null(envbody_string(auth, "users")); /* a repeated message, not a string */
    assert_null(envbody_add_entry(auth, "tenant_id"));
    assert_int_equal(((Kooisv__AuthSync *)auth)->n_users, 1);
    protobuf_c_message_free_unpacked(auth, NULL);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_request),     cmocka_unit_test(test_tenant_sync),
        cmocka_unit_test(test_auth_sync_entries), cmocka_unit_test(test_attach_all_orgs),
        cmocka_unit_test(test_admin_request),     cmocka_unit_test(test_ping),
        cmocka_unit_test(test_free_without_body), cmocka_unit_test(test_add_refs),
        cmocka_unit_test(test_wrong_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
