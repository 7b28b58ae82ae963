/* canonjson: the canonical form of spec §2 (sorting, null removal, raw UTF-8, Java-style numbers)
 * and the strict parser. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "canonjson.h"
#include "vectors.h"

/* Parse text strictly and return its canonical form (caller frees); fails the test if the
 * text does not parse. */
static char *canon_of(const char *text)
{
    json_error_t err;
    json_t *v = canonjson_parse(text, strlen(text), &err);
    if (!v)
        fail_msg("parse failed for %s: %s", text, err.text);
    char *out = canonjson_dump(v);
    json_decref(v);
    assert_non_null(out);
    return out;
}

static void assert_canon(const char *text, const char *expected)
{
    char *out = canon_of(text);
    assert_string_equal(out, expected);
    /* The canonical form is a fixed point. */
    char *again = canon_of(out);
    assert_string_equal(again, out);
    free(again);
    free(out);
}

static void assert_rejected(const char *text, size_t len)
{
    json_error_t err;
    memset(&err, 0, sizeof err);
    json_t *v = canonjson_parse(text, len, &err);
    if (v) {
        json_decref(v);
        fail_msg("accepted: %.*s", (int)len, text);
    }
    assert_true(err.text[0] != '\0');
}

/* assert_rejected on each of the n NUL-terminated documents. */
static void assert_each_rejected(const char *const *docs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_rejected(docs[i], strlen(docs[i]));
}

static void test_vectors_canonical_payloads(void **state)
{
    const char *sections[] = {"basicSignature", "kitSignature"};
    int checked = 0;
    for (size_t s = 0; s < 2; s++) {
        json_t *arr = vectors_section(sections[s]);
        size_t i;
        json_t *vec;
        json_array_foreach(arr, i, vec)
        {
            char *out = canon_of(vectors_str(vec, "rawBody"));
            assert_string_equal(out, vectors_str(vec, "canonicalPayload"));
            free(out);
            checked++;
        }
    }
    assert_true(checked >= 9);
}

static void test_sorting_nested(void **state)
{
    assert_canon("{\"b\":{\"z\":1,\"a\":[{\"y\":2,\"x\":1}]},\"a\":[3,{\"d\":1,\"c\":2}]}",
                 "{\"a\":[3,{\"c\":2,\"d\":1}],\"b\":{\"a\":[{\"x\":1,\"y\":2}],\"z\":1}}");
}

static void test_sorting_is_byte_order(void **state)
{
    /* Upper case before '_' before lower case before multi-byte UTF-8; a prefix sorts first. */
    assert_canon("{\"中\":1,\"é\":2,\"ab\":3,\"a\":4,\"_\":5,\"B\":6,\"aa\":7}",
                 "{\"B\":6,\"_\":5,\"a\":4,\"aa\":7,\"ab\":3,\"é\":2,\"中\":1}");
}

static void test_null_members_dropped_at_depth(void **state)
{
    assert_canon("{\"a\":null,\"b\":{\"c\":null,\"d\":{\"e\":null}},\"f\":[null,{\"g\":null},1]}",
                 "{\"b\":{\"d\":{}},\"f\":[null,{},1]}");
    assert_canon("{\"only\":null}", "{}");
    assert_canon("[null]", "[null]");
    assert_canon("null", "null");
}

static void test_empty_containers_and_literals(void **state)
{
    assert_canon("{}", "{}");
    assert_canon("[]", "[]");
    assert_canon(" { \"a\" : { } , \"b\" : [ ] } ", "{\"a\":{},\"b\":[]}");
    assert_canon("[true,false,null]", "[true,false,null]");
    assert_canon("\"text\"", "\"text\"");
    assert_canon("42", "42");
}

static void test_unicode_stays_raw(void **state)
{
    assert_canon("{\"orgName\":\"研发部\"}", "{\"orgName\":\"研发部\"}");
    /* Escaped input comes out as raw UTF-8. */
    assert_canon("{\"orgName\":\"\\u7814\\u53d1\\u90e8\"}", "{\"orgName\":\"研发部\"}");
    /* Emoji, raw and as a surrogate pair. */
    assert_canon("[\"\xf0\x9f\x98\x80\"]", "[\"\xf0\x9f\x98\x80\"]");
    assert_canon("[\"\\ud83d\\ude00\"]", "[\"\xf0\x9f\x98\x80\"]");
    /* U+2028 and DEL are not escaped. */
    assert_canon("[\"\\u2028\\u007f\"]", "[\"\xe2\x80\xa8\x7f\"]");
}

static void test_escapes(void **state)
{
    assert_canon("[\"q\\\"b\\\\s\\/n\\nt\\tr\\rb\\bf\\f\"]",
                 "[\"q\\\"b\\\\s/n\\nt\\tr\\rb\\bf\\f\"]");
    assert_canon("[\"\\u0001\\u001f\\u001F\"]", "[\"\\u0001\\u001f\\u001f\"]");
    assert_canon("{\"url\":\"https:\\/\\/example.com\\/a\"}",
                 "{\"url\":\"https://example.com/a\"}");
    /* Escaped characters inside keys too. */
    assert_canon("{\"k\\\"\\n\":1}", "{\"k\\\"\\n\":1}");
}

static void test_integers(void **state)
{
    assert_canon("[0,-0,1,-5,1680508066618]", "[0,0,1,-5,1680508066618]");
    assert_canon("[9223372036854775807,-9223372036854775808]",
                 "[9223372036854775807,-9223372036854775808]");
    assert_rejected("[9223372036854775808]", 21);
    assert_rejected("[-9223372036854775809]", 22);
}

static void test_reals_in_documents(void **state)
{
    assert_canon("{\"amount\":12.78}", "{\"amount\":12.78}");
    assert_canon("[0.1,100.0,1e21,-0.0,1.5e-7,1E7,2.50]",
                 "[0.1,100.0,1.0E21,-0.0,1.5E-7,1.0E7,2.5]");
    assert_canon("[12.779999999999999]", "[12.78]");
    assert_canon("[0.30000000000000004]", "[0.30000000000000004]");
}

static void assert_real(double d, const char *expected)
{
    char buf[32];
    assert_ptr_equal(canonjson_format_real(d, buf, sizeof buf), buf);
    assert_string_equal(buf, expected);
}

static void test_format_real_java_style(void **state)
{
    assert_real(12.78, "12.78");
    assert_real(0.1, "0.1");
    assert_real(0.1 + 0.2, "0.30000000000000004");
    assert_real(1.0, "1.0");
    assert_real(100.0, "100.0");
    assert_real(-2.5, "-2.5");
    assert_real(0.0, "0.0");
    assert_real(-0.0, "-0.0");
    assert_real(1e21, "1.0E21");
    assert_real(1e10, "1.0E10");
    assert_real(1e7, "1.0E7");
    assert_real(9999999.0, "9999999.0");
    assert_real(1234567.125, "1234567.125");
    assert_real(123456.789, "123456.789");
    assert_real(0.001, "0.001");
    assert_real(0.00123, "0.00123");
    assert_real(0.0001, "1.0E-4");
    assert_real(1.5e-7, "1.5E-7");
    assert_real(-1.5e-7, "-1.5E-7");
    assert_real(1.7976931348623157e308, "1.7976931348623157E308");
    assert_real(2.2250738585072014e-308, "2.2250738585072014E-308");
    assert_real(123456789012.0, "1.23456789012E11");
}

static void test_format_real_round_trips(void **state)
{
    /* Whatever is printed parses back to the same double. */
    double samples[] = {1.0 / 3,   2.0 / 3, 12.78, 1e-300,  5e-324,
                        4.35,      0.07,    1e23,  8.41e21, 9007199254740993.0,
                        123.456e-5};
    char buf[32];
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        assert_non_null(canonjson_format_real(samples[i], buf, sizeof buf));
        assert_true(strtod(buf, NULL) == samples[i]);
    }
}

static void test_format_real_rejects(void **state)
{
    char buf[32], small[8];
    assert_null(canonjson_format_real(NAN, buf, sizeof buf));
    assert_null(canonjson_format_real(INFINITY, buf, sizeof buf));
    assert_null(canonjson_format_real(-INFINITY, buf, sizeof buf));
    assert_null(canonjson_format_real(1.0, small, sizeof small));
}

static void test_dump_built_values(void **state)
{
    json_t *v = json_pack("{s:i, s:f, s:n, s:[s,n,b], s:{s:s}}", "z", 1, "y", 0.5, "x", "w", "v", 1,
                          "u", "t", "s");
    assert_non_null(v);
    char *out = canonjson_dump(v);
    assert_string_equal(out, "{\"u\":{\"t\":\"s\"},\"w\":[\"v\",null,true],\"y\":0.5,\"z\":1}");
    free(out);
    json_decref(v);
    assert_null(canonjson_dump(NULL));
    /* A string with an embedded NUL (built, not parsed) is escaped, not truncated. */
    json_t *s = json_stringn("a\0b", 3);
    out = canonjson_dump(s);
    assert_string_equal(out, "\"a\\u0000b\"");
    free(out);
    json_decref(s);
}

static void test_large_document(void **state)
{
    json_t *arr = json_array();
    for (int i = 0; i < 2000; i++)
        json_array_append_new(arr, json_pack("{s:i,s:s,s:n}", "n", i, "s", "值", "x"));
    char *out = canonjson_dump(arr);
    assert_non_null(out);
    const char *head = "[{\"n\":0,\"s\":\"值\"},{\"n\":1,";
    assert_int_equal(strncmp(out, head, strlen(head)), 0);
    free(out);
    json_decref(arr);
}

static void test_parse_rejects_duplicates(void **state)
{
    const char *const dups[] = {
        "{\"a\":1,\"a\":2}", "{\"x\":{\"a\":1,\"b\":2,\"a\":1}}",
        "{\"a\":1,\"\\u0061\":2}", /* the same key once escaped is still a duplicate */
    };
    assert_each_rejected(dups, sizeof dups / sizeof dups[0]);
}

static void test_parse_rejects_trailing_data(void **state)
{
    const char *const trailing[] = {"{\"a\":1}x", "{\"a\":1} {}"};
    assert_each_rejected(trailing, sizeof trailing / sizeof trailing[0]);
    assert_rejected("{\"a\":1}\0", 8);
    /* Trailing whitespace is not data. */
    json_t *v = canonjson_parse("{\"a\":1}\r\n \t", 11, NULL);
    assert_non_null(v);
    json_decref(v);
}

static void test_parse_rejects_invalid_utf8(void **state)
{
    const char *bad[] = {
        "{\"a\":\"\xff\"}",         /* never valid */
        "{\"a\":\"\xc0\xaf\"}",     /* overlong '/' */
        "{\"a\":\"\xe7\xa0\"}",     /* truncated sequence */
        "{\"a\":\"\xed\xa0\x80\"}", /* encoded surrogate */
        "{\"\xfe\":1}",             /* in a key */
        "{\"a\":\"\\ud800\"}",      /* lone surrogate escape */
        "{\"a\":\"x\\u0000y\"}",    /* NUL would truncate C strings */
    };
    assert_each_rejected(bad, sizeof bad / sizeof bad[0]);
}

static void test_parse_rejects_malformed(void **state)
{
    const char *bad[] = {"",           "   ", "{",          "{\"a\":}", "{'a':1}", "[1,]",
                         "{\"a\":1,}", "NaN", "[Infinity]", "[01]",     "[1.]",    "{\"a\" 1}"};
    assert_each_rejected(bad, sizeof bad / sizeof bad[0]);
    json_error_t err;
    assert_null(canonjson_parse(NULL, 0, &err));
    assert_null(canonjson_parse(NULL, 0, NULL));
}

static void test_parse_uses_length_not_nul(void **state)
{
    /* Only the first len bytes count. */
    json_t *v = canonjson_parse("{\"a\":1}garbage", 7, NULL);
    assert_non_null(v);
    json_decref(v);
}

static void test_parse_any_top_level(void **state)
{
    json_t *v = canonjson_parse("\"s\"", 3, NULL);
    assert_true(json_is_string(v));
    json_decref(v);
    v = canonjson_parse("[1]", 3, NULL);
    assert_true(json_is_array(v));
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_canonical_payloads),
        cmocka_unit_test(test_sorting_nested),
        cmocka_unit_test(test_sorting_is_byte_order),
        cmocka_unit_test(test_null_members_dropped_at_depth),
        cmocka_unit_test(test_empty_containers_and_literals),
        cmocka_unit_test(test_unicode_stays_raw),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_reals_in_documents),
        cmocka_unit_test(test_format_real_java_style),
        cmocka_unit_test(test_format_real_round_trips),
        cmocka_unit_test(test_format_real_rejects),
        cmocka_unit_test(test_dump_built_values),
        cmocka_unit_test(test_large_document),
        cmocka_unit_test(test_parse_rejects_duplicates),
        cmocka_unit_test(test_parse_rejects_trailing_data),
        cmocka_unit_test(test_parse_rejects_invalid_utf8),
        cmocka_unit_test(test_parse_rejects_malformed),
        cmocka_unit_test(test_parse_uses_length_not_nul),
        cmocka_unit_test(test_parse_any_top_level),
    };
    return cmocka_run_group_tests_name("canonjson", tests, NULL, NULL);
}
