/* Unit tests of the audit hash chain (services/audit/entry.c, verify.c): the canonical content
 * against vectors computed outside the project (Python hashlib over the documented encoding),
 * the cleaning of input text, intake refusals, and how verify_row classifies each kind of
 * tampering. No database, no suite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cryptoutil.h"
#include "entry.h"
#include "verify.h"
#include "xmalloc.h"

/* Computed with Python, independently of entry.c:
 *   s = lambda x: struct.pack('>I', len(x.encode())) + x.encode(); i = lambda v: struct.pack('>q', v)
 *   intent = b'I'+i(1)+s('r-1')+s('t-1')+i(1764288000000)+s('basic')+s('ab12cd34')
 *            +s('newInstance')+struct.pack('>I',2)+s('instance')+s('i-1')+s('order')+s('o-1')
 *            +s('10.0.0.1')+b'\0'+s('n-1')+i(1764288000000)+s('')+s('')
 *   h1 = sha256(b'\0'*32 + intent)
 *   outcome = b'O'+i(2)+s('r-1')+i(1764288000123)+s('000000')+s('success')+i(1500)+i(200)
 *   h2 = sha256(h1 + outcome) */
#define VECTOR_INTENT_LEN 142
#define VECTOR_INTENT_HASH "bd67321fee94615243a215d971d18ed82fc27df379d9fc84a41bcaa7a3059e37"
#define VECTOR_OUTCOME_LEN 61
#define VECTOR_OUTCOME_HASH "69d3c2a5539c202237d99a8d9aaa125da22eb7f42ed8e5743bc20350c6fd81b5"
/* The same two entries keyed, also with Python (hmac.new(k, ..., hashlib.sha256)):
 *   k = b'chain-key-For-tests-0001'
 *   keyed:  h1 = hmac(k, b'\0'*32 + intent), h2 = hmac(k, h1 + outcome)
 *   legacy up to seq 1 (keyed_from = 2): h2 = hmac(k, sha256(b'\0'*32 + intent) + outcome) */
#define VECTOR_KEY "chain-key-For-tests-0001"
#define VECTOR_KEYED_INTENT_HASH "5f86284a82e6a63858747c57194ccc3f0bca671edba81b71e7f698be0fcd88fd"
#define VECTOR_KEYED_OUTCOME_HASH "1d6c7f1bf98bb0278965212540c413b1c24b103ebb6eb8f4bdab537b29a23d39"
#define VECTOR_EPOCH2_OUTCOME_HASH                                                                 \
    "1882b107d7a7163f3fe37a14e4bc9092ea007c587aebf05699d3508b4bf436b1"

static const entry_chain_t keyed = {
    .key = (const uint8_t *)VECTOR_KEY, .key_len = sizeof VECTOR_KEY - 1, .keyed_from = 1};

static entry_resource_t vector_resources[] = {{"instance", "i-1"}, {"order", "o-1"}};

static entry_intent_t vector_intent(void)
{
    entry_intent_t e = {.seq = 1, .request_id = "r-1", .trace_id = "t-1",
                        .received_ms = 1764288000000, .caller_kind = "basic",
                        .caller_id = "ab12cd34", .event_type = "newInstance",
                        .resources = vector_resources, .nresources = 2,
                        .source_addr = "10.0.0.1", .test_flag = false, .nonce = "n-1",
                        .nonce_ts_ms = 1764288000000, .reject_reason = "", .reject_code = ""};
    return e;
}

static entry_outcome_t vector_outcome(void)
{
    entry_outcome_t o = {.seq = 2, .request_id = "r-1", .recorded_ms = 1764288000123,
                         .result_code = "000000", .result_msg = "success", .latency_us = 1500,
                         .http_status = 200};
    return o;
}

static void hex(const uint8_t h[32], char out[65])
{
    hex_encode(h, 32, out);
}

/* Hash the vector intent after the zero hash, then the vector outcome after it, with chain
 * (NULL: plain SHA-256); fail unless their hex is intent_hex and outcome_hex. */
static void expect_vector_hashes(const entry_chain_t *chain, const char *intent_hex,
                                 const char *outcome_hex)
{
    entry_intent_t e = vector_intent();
    entry_outcome_t o = vector_outcome();
    uint8_t zero[32] = {0}, h1[32], h2[32];
    char text[65];
    entry_intent_hash(&e, chain, zero, h1);
    hex(h1, text);
    assert_string_equal(text, intent_hex);
    entry_outcome_hash(&o, chain, h1, h2);
    hex(h2, text);
    assert_string_equal(text, outcome_hex);
}

static void test_intent_vector(void **state)
{
    (void)state;
    entry_intent_t e = vector_intent();
    uint8_t *content = NULL;
    size_t len = entry_intent_content(&e, &content);
    assert_int_equal(len, VECTOR_INTENT_LEN);
    assert_int_equal(content[0], 'I');
    free(content);
    uint8_t zero[32] = {0}, h[32];
    char text[65];
    entry_intent_hash(&e, NULL, zero, h);
    hex(h, text);
    assert_string_equal(text, VECTOR_INTENT_HASH);
}

static void test_outcome_vector(void **state)
{
    (void)state;
    entry_outcome_t o = vector_outcome();
    uint8_t *content = NULL;
    assert_int_equal(entry_outcome_content(&o, &content), VECTOR_OUTCOME_LEN);
    free(content);
    expect_vector_hashes(NULL, VECTOR_INTENT_HASH, VECTOR_OUTCOME_HASH);
}

/* Keyed from the genesis, and keyed only from seq 2 on (an upgraded trail). */
static void test_keyed_vectors(void **state)
{
    (void)state;
    expect_vector_hashes(&keyed, VECTOR_KEYED_INTENT_HASH, VECTOR_KEYED_OUTCOME_HASH);
    entry_chain_t epoch2 = keyed;
    epoch2.keyed_from = 2;
    expect_vector_hashes(&epoch2, VECTOR_INTENT_HASH, VECTOR_EPOCH2_OUTCOME_HASH);

    /* Another key gives another hash. */
    entry_intent_t e = vector_intent();
    uint8_t zero[32] = {0}, h1[32];
    char text[65];
    entry_chain_t other = keyed;
    other.key = (const uint8_t *)"chain-key-For-tests-0002";
    entry_intent_hash(&e, &other, zero, h1);
    hex(h1, text);
    assert_string_not_equal(text, VECTOR_KEYED_INTENT_HASH);
}

/* Every field is covered by the hash, and the encoding has no ambiguous boundaries. */
static void test_every_field_counts(void **state)
{
    (void)state;
    uint8_t zero[32] = {0}, base[32], h[32];
    entry_intent_t e = vector_intent();
    entry_intent_hash(&e, NULL, zero, base);
    for (int field = 0; field < 15; field++) {
        entry_intent_t m = vector_intent();
        entry_resource_t res[2] = {{"instance", "i-1"}, {"order", "o-1"}};
        m.resources = res;
        switch (field) {
        case 0: m.seq = 2; break;
        case 1: m.request_id = "r-2"; break;
        case 2: m.trace_id = "t-2"; break;
        case 3: m.received_ms++; break;
        case 4: m.caller_kind = "kit"; break;
        case 5: m.caller_id = "ab12cd35"; break;
        case 6: m.event_type = "releaseInstance"; break;
        case 7: res[1].id = "o-2"; break;
        case 8: m.nresources = 1; break;
        case 9: m.source_addr = "10.0.0.2"; break;
        case 10: m.test_flag = true; break;
        case 11: m.nonce = "n-2"; break;
        case 12: m.nonce_ts_ms++; break;
        case 13: m.reject_reason = "x"; break;
        case 14: m.reject_code = "000001"; break;
        }
        entry_intent_hash(&m, NULL, zero, h);
        assert_false(bytes_equal(h, base, 32));
    }
    /* ("ab","c") and ("a","bc") must not encode alike. */
    entry_intent_t a = vector_intent(), b = vector_intent();
    entry_resource_t ra[1] = {{"ab", "c"}}, rb[1] = {{"a", "bc"}};
    a.resources = ra;
    a.nresources = 1;
    b.resources = rb;
    b.nresources = 1;
    uint8_t ha[32], hb[32];
    entry_intent_hash(&a, NULL, zero, ha);
    entry_intent_hash(&b, NULL, zero, hb);
    assert_false(bytes_equal(ha, hb, 32));
    /* The chain: the same entry after another predecessor hashes differently. */
    uint8_t other[32];
    memset(other, 1, sizeof other);
    entry_intent_hash(&e, NULL, other, h);
    assert_false(bytes_equal(h, base, 32));
}

static void test_clean_text(void **state)
{
    (void)state;
    char *s = entry_clean_text(NULL, 10);
    assert_string_equal(s, "");
    free(s);
    s = entry_clean_text("a\x01" "b\nc\x7f", 100);
    assert_string_equal(s, "a b c ");
    free(s);
    s = entry_clean_text("x\xff" "y\xc3", 100); /* stray byte, truncated sequence */
    assert_string_equal(s, "x\xef\xbf\xbdy\xef\xbf\xbd");
    free(s);
    s = entry_clean_text("\xed\xa0\x80", 100); /* a UTF-16 surrogate is not UTF-8 */
    assert_string_equal(s, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    free(s);
    s = entry_clean_text("\xc3\xa9\xc3\xa9\xc3\xa9", 5); /* cut on a character boundary */
    assert_string_equal(s, "\xc3\xa9\xc3\xa9");
    free(s);
    s = entry_clean_text("\xf0\x9f\x98\x80ok", 100);
    assert_string_equal(s, "\xf0\x9f\x98\x80ok");
    free(s);
}

static void test_intake_refusals(void **state)
{
    (void)state;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    Kooisv__AuditIntent in = KOOISV__AUDIT_INTENT__INIT;
    Kooisv__Caller caller = KOOISV__CALLER__INIT;
    Kooisv__ResourceRef ref = KOOISV__RESOURCE_REF__INIT, *refs[1] = {&ref};
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_INTENT;
    env.audit_intent = &in;
    env.caller = &caller;
    env.request_id = "rid-1";
    env.received_ms = 1764288000000;
    caller.kind = "basic";
    caller.id = "ab12cd34";
    in.event_type = "newInstance";
    in.resources = refs;
    in.n_resources = 1;
    ref.kind = "instance";
    ref.id = "i-1";
    in.nonce = "n-1";
    entry_intent_t e;
    assert_null(entry_intent_from_envelope(&e, &env));
    assert_string_equal(e.resources[0].id, "i-1");
    entry_intent_clear(&e);

    ref.kind = "secret"; /* nothing but ids of known kinds is filed */
    assert_non_null(entry_intent_from_envelope(&e, &env));
    entry_intent_clear(&e);
    ref.kind = "instance";

    caller.id = ""; /* a nonce needs the key it belongs to */
    assert_non_null(entry_intent_from_envelope(&e, &env));
    entry_intent_clear(&e);
    in.reject_code = "000001"; /* ...unless the gateway already rejected the call */
    assert_null(entry_intent_from_envelope(&e, &env));
    entry_intent_clear(&e);
    caller.id = "ab12cd34";

    char long_id[200];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    env.request_id = long_id; /* never cut the idempotency key: refuse it */
    assert_non_null(entry_intent_from_envelope(&e, &env));
    entry_intent_clear(&e);
    env.request_id = "";
    assert_non_null(entry_intent_from_envelope(&e, &env));
    entry_intent_clear(&e);
    env.request_id = "rid-1";
    env.received_ms = 0;
    assert_non_null(entry_intent_from_envelope(&e, &env));
    entry_intent_clear(&e);

    Kooisv__AuditOutcome out = KOOISV__AUDIT_OUTCOME__INIT;
    env.body_case = KOOISV__ENVELOPE__BODY_AUDIT_OUTCOME;
    env.audit_outcome = &out;
    entry_outcome_t o;
    assert_non_null(entry_outcome_from_envelope(&o, &env, 1)); /* result_code missing */
    entry_outcome_clear(&o);
    out.result_code = "000000";
    assert_null(entry_outcome_from_envelope(&o, &env, 1));
    entry_outcome_clear(&o);
}

/* ---------------------------------------------------------------- verify_row */

#define CHAIN_LEN 6

typedef struct {
    verify_row_t rows[CHAIN_LEN + 1];
    int n;
    char ids[CHAIN_LEN + 1][16];
} chain_t;

/* Re-hash r as a forger without the key would: keyed = NULL gives plain SHA-256. */
static void row_rehash_with(verify_row_t *r, const entry_chain_t *chain)
{
    if (r->is_intent)
        entry_intent_hash(&r->intent, chain, r->prev, r->hash);
    else
        entry_outcome_hash(&r->outcome, chain, r->prev, r->hash);
}

static void row_rehash(verify_row_t *r)
{
    if (r->is_intent)
        entry_intent_hash(&r->intent, &keyed, r->prev, r->hash);
    else
        entry_outcome_hash(&r->outcome, &keyed, r->prev, r->hash);
}

static int64_t *row_seq_p(verify_row_t *r)
{
    return r->is_intent ? &r->intent.seq : &r->outcome.seq;
}

/* A well-formed chain: intent, outcome, intent, outcome... */
static void chain_build(chain_t *c)
{
    memset(c, 0, sizeof *c);
    c->n = CHAIN_LEN;
    for (int i = 0; i < CHAIN_LEN; i++) {
        verify_row_t *r = &c->rows[i];
        snprintf(c->ids[i], sizeof c->ids[i], "req-%d", i / 2);
        r->is_intent = i % 2 == 0;
        if (r->is_intent) {
            r->intent = vector_intent();
            r->intent.request_id = c->ids[i];
            r->intent.nresources = 0;
        } else {
            r->outcome = vector_outcome();
            r->outcome.request_id = c->ids[i];
        }
        *row_seq_p(r) = i + 1;
        if (i > 0)
            memcpy(r->prev, c->rows[i - 1].hash, 32);
        row_rehash(r);
    }
}

/* Walk the chain as verify_handle does, with the key (and epoch) of chain; fail unless the
 * first bad row is reported as problem at bad_seq (problem NULL: unless no row is bad). */
static void expect_walk(chain_t *c, const entry_chain_t *chain, const char *problem,
                        int64_t bad_seq)
{
    verify_verdict_t v = {0};
    verify_expect_t ex = {.chain = chain, .seq = 1, .prev_known = true};
    int i = 0;
    while (i < c->n && verify_row(&c->rows[i], i + 1 < c->n ? &c->rows[i + 1] : NULL, &ex, &v))
        verify_expect_advance(&ex, &c->rows[i++]);
    if (!problem) {
        assert_int_equal(i, c->n);
        return;
    }
    assert_true(i < c->n);
    assert_string_equal(v.problem, problem);
    assert_int_equal(v.bad_seq, bad_seq);
}

static void chain_remove(chain_t *c, int i)
{
    memmove(&c->rows[i], &c->rows[i + 1], (size_t)(c->n - i - 1) * sizeof c->rows[0]);
    c->n--;
}

static void test_verify_intact(void **state)
{
    (void)state;
    chain_t c;
    chain_build(&c);
    expect_walk(&c, &keyed, NULL, 0);
}

static void test_verify_modified(void **state)
{
    (void)state;
    chain_t c;
    chain_build(&c);
    c.rows[2].intent.event_type = "forged"; /* seq 3 edited in place */
    expect_walk(&c, &keyed, "modified", 3);

    chain_build(&c);
    c.rows[3].outcome.result_code = "000001"; /* an outcome, seq 4 */
    expect_walk(&c, &keyed, "modified", 4);

    chain_build(&c);
    c.rows[2].intent.event_type = "forged"; /* edited and rehashed: seq 4 no longer links */
    row_rehash(&c.rows[2]);
    expect_walk(&c, &keyed, "modified", 3);
}

/* The review's forgery: an entry rewritten and the whole chain after it re-hashed, consistently,
 * with plain SHA-256 or with a wrong key. Without the chain key it is reported. */
static void test_verify_rehash_without_key(void **state)
{
    (void)state;
    entry_chain_t wrong = keyed;
    wrong.key = (const uint8_t *)"guessed-key-0000-Abc";
    wrong.key_len = strlen((const char *)wrong.key);
    const entry_chain_t *forgers[] = {NULL, &wrong};
    for (int f = 0; f < 2; f++) {
        chain_t c;
        chain_build(&c);
        c.rows[2].intent.event_type = "forged";
        for (int i = 2; i < c.n; i++) {
            memcpy(c.rows[i].prev, c.rows[i - 1].hash, 32);
            row_rehash_with(&c.rows[i], forgers[f]);
        }
        expect_walk(&c, &keyed, "modified", 3);
        /* The whole chain re-hashed from the genesis: the first entry already fails. */
        chain_build(&c);
        for (int i = 0; i < c.n; i++) {
            if (i > 0)
                memcpy(c.rows[i].prev, c.rows[i - 1].hash, 32);
            row_rehash_with(&c.rows[i], forgers[f]);
        }
        expect_walk(&c, &keyed, "modified", 1);
    }
}

/* An upgraded trail: entries 1-3 from before the key (plain SHA-256), keyed from 4 on. It
 * verifies as it is; legacy entries rewritten and re-hashed with SHA-256 are reported, because
 * the first keyed entry's HMAC covers the last legacy hash. */
static void test_verify_legacy_part(void **state)
{
    (void)state;
    entry_chain_t upgraded = keyed;
    upgraded.keyed_from = 4;
    chain_t c;
    chain_build(&c);
    for (int i = 0; i < c.n; i++) {
        if (i > 0)
            memcpy(c.rows[i].prev, c.rows[i - 1].hash, 32);
        row_rehash_with(&c.rows[i], i < 3 ? NULL : &upgraded);
    }
    expect_walk(&c, &upgraded, NULL, 0);
    /* Entry 2 rewritten, 2 and 3 re-hashed, 4's prev_hash pointed at the new 3. */
    c.rows[1].outcome.result_msg = "forged";
    for (int i = 1; i < 4; i++) {
        memcpy(c.rows[i].prev, c.rows[i - 1].hash, 32);
        if (i < 3)
            row_rehash_with(&c.rows[i], NULL);
    }
    expect_walk(&c, &upgraded, "modified", 4);
}

static void test_verify_removed(void **state)
{
    (void)state;
    chain_t c;
    chain_build(&c);
    chain_remove(&c, 2); /* seq 3 deleted: a gap */
    expect_walk(&c, &keyed, "removed", 3);

    chain_build(&c);
    chain_remove(&c, 2); /* deleted and the rest renumbered to hide the gap */
    for (int i = 2; i < c.n; i++)
        (*row_seq_p(&c.rows[i]))--;
    expect_walk(&c, &keyed, "removed", 3);
}

static void test_verify_inserted(void **state)
{
    (void)state;
    chain_t c;
    chain_build(&c);
    /* A forged entry slipped in at seq 3, chained properly after seq 2; the rest renumbered. */
    memmove(&c.rows[3], &c.rows[2], (size_t)(c.n - 2) * sizeof c.rows[0]);
    c.n++;
    for (int i = 3; i < c.n; i++)
        (*row_seq_p(&c.rows[i]))++;
    verify_row_t *x = &c.rows[2];
    memset(x, 0, sizeof *x);
    x->is_intent = true;
    x->intent = vector_intent();
    x->intent.request_id = "forged";
    x->intent.seq = 3;
    memcpy(x->prev, c.rows[1].hash, 32);
    row_rehash(x);
    expect_walk(&c, &keyed, "inserted", 3);

    /* Appended after the head without chaining to it. */
    chain_build(&c);
    verify_row_t *y = &c.rows[c.n];
    memset(y, 0, sizeof *y);
    y->is_intent = true;
    y->intent = vector_intent();
    y->intent.request_id = "appended";
    y->intent.seq = c.n + 1;
    memset(y->prev, 7, 32);
    row_rehash(y);
    c.n++;
    expect_walk(&c, &keyed, "inserted", CHAIN_LEN + 1);

    /* Two entries on one seq (an outcome forged onto an intent's position). */
    chain_build(&c);
    *row_seq_p(&c.rows[4]) = 4;
    expect_walk(&c, &keyed, "inserted", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intent_vector),
        cmocka_unit_test(test_outcome_vector),
        cmocka_unit_test(test_keyed_vectors),
        cmocka_unit_test(test_every_field_counts),
        cmocka_unit_test(test_clean_text),
        cmocka_unit_test(test_intake_refusals),
        cmocka_unit_test(test_verify_intact),
        cmocka_unit_test(test_verify_modified),
        cmocka_unit_test(test_verify_rehash_without_key),
        cmocka_unit_test(test_verify_legacy_part),
        cmocka_unit_test(test_verify_removed),
        cmocka_unit_test(test_verify_inserted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
