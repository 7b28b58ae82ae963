/* usage: the marketplace's usage push API (spec §6). Checks the signature headers, then the
 * body rules; a batch with any bad record is refused whole and stores nothing. Accepted records
 * are kept for tests (GET /_emulator/usage). */
#include "emulator.h"

#include "canonjson.h"
#include "cryptoutil.h"
#include "usagesign.h"
#include "xmalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE_MAX_RECORDS 1000
#define USAGE_MAX_AGE_MS (21LL * 24 * 3600 * 1000)

static bool ts_parse(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 15)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Constant-time equality of two NUL-terminated signatures. */
static bool sig_equal(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t n = strlen(a);
    return n == strlen(b) && bytes_equal(a, b, n);
}

static bool signature_ok(emu_exchange_t *ex, const char *ts, const char *nonce,
                         const char *signature, const json_t *body)
{
    const char *key = ex->emu->basic_key;
    char *canon = canonjson_dump(body);
    char *want = canon ? usagesign_signature(key, ts, nonce, canon) : NULL;
    bool ok = want && sig_equal(want, signature);
    free(want);
    free(canon);
    if (!ok && strlen(ex->body) == ex->body_len) {
        /* A sender that signs the exact bytes it sends is as authentic (cf. spec §2). */
        want = usagesign_signature(key, ts, nonce, ex->body);
        ok = sig_equal(want, signature);
        free(want);
    }
    return ok;
}

/* Remember nonce; false when it was already used inside the window. */
static bool nonce_fresh(emu_t *emu, const char *nonce, int64_t now)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(emu->usage_nonces, tmp, k, v)
    {
        if (now - json_integer_value(v) > 2 * EMU_CLOCK_SKEW_MS)
            json_object_del(emu->usage_nonces, k);
    }
    if (json_object_get(emu->usage_nonces, nonce))
        return false;
    json_object_set_new(emu->usage_nonces, nonce, json_integer(now));
    return true;
}

/* usage_value: a decimal string > 0 with at most 4 decimals. */
static bool usage_value_ok(const char *s)
{
    if (!s || !*s)
        return false;
    const char *p = s;
    bool nonzero = false;
    while (isdigit((unsigned char)*p)) {
        nonzero |= *p != '0';
        p++;
    }
    if (p == s)
        return false;
    if (*p == '.') {
        const char *frac = ++p;
        while (isdigit((unsigned char)*p)) {
            nonzero |= *p != '0';
            p++;
        }
        if (p == frac || p - frac > 4)
            return false;
    }
    return *p == '\0' && nonzero;
}

static const char *str_field(const json_t *rec, const char *name)
{
    return json_string_value(json_object_get(rec, name));
}

/* Check one record; on failure fill code/msg and return false. */
static bool record_ok(const json_t *rec, size_t i, json_t *batch_sns, int64_t now,
                      const char **code, char *msg, size_t msg_len)
{
    if (!json_is_object(rec)) {
        *code = "MKT.0101";
        snprintf(msg, msg_len, "usage_records[%zu] is not an object", i);
        return false;
    }
    static const char *const required[] = {"instance_id", "record_time", "begin_time",
                                           "end_time",    "usage_value", "metering_sn"};
    for (size_t f = 0; f < sizeof required / sizeof required[0]; f++) {
        const char *v = str_field(rec, required[f]);
        if (!v || !*v || strlen(v) > 128) {
            *code = "MKT.0101";
            snprintf(msg, msg_len, "usage_records[%zu].%s is missing or not a string", i,
                     required[f]);
            return false;
        }
    }
    json_t *pkg = json_object_get(rec, "relate_pkg_instance");
    if (pkg && !json_is_string(pkg) && !json_is_null(pkg)) {
        *code = "MKT.0101";
        snprintf(msg, msg_len, "usage_records[%zu].relate_pkg_instance is not a string", i);
        return false;
    }
    int64_t record_ms, begin_ms, end_ms;
    static const char *const times[] = {"record_time", "begin_time", "end_time"};
    int64_t *dest[] = {&record_ms, &begin_ms, &end_ms};
    for (size_t t = 0; t < 3; t++) {
        if (!emu_parse_utc_compact(str_field(rec, times[t]), dest[t])) {
            *code = "MKT.0101";
            snprintf(msg, msg_len, "usage_records[%zu].%s is not yyyyMMdd'T'HHmmss'Z'", i,
                     times[t]);
            return false;
        }
    }
    if (end_ms <= begin_ms) {
        *code = "MKT.9002";
        snprintf(msg, msg_len, "usage_records[%zu]: end_time is not after begin_time", i);
        return false;
    }
    if (!usage_value_ok(str_field(rec, "usage_value"))) {
        *code = "MKT.9002";
        snprintf(msg, msg_len, "usage_records[%zu].usage_value must be > 0 with at most 4 decimals",
                 i);
        return false;
    }
    if (now - begin_ms > USAGE_MAX_AGE_MS) {
        *code = "MKT.9004";
        snprintf(msg, msg_len, "usage_records[%zu].begin_time is older than 21 days", i);
        return false;
    }
    const char *sn = str_field(rec, "metering_sn");
    if (json_object_get(batch_sns, sn)) {
        *code = "MKT.0101";
        snprintf(msg, msg_len, "usage_records[%zu].metering_sn repeats an earlier record", i);
        return false;
    }
    json_object_set_new(batch_sns, sn, json_true());
    return true;
}

static bool instance_known(const emu_t *emu, const char *id)
{
    if (!json_is_array(emu->usage_instances))
        return true;
    size_t i;
    json_t *v;
    json_array_foreach(emu->usage_instances, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), id) == 0)
            return true;
    }
    return false;
}

void emu_usage_push(emu_exchange_t *ex)
{
    emu_t *emu = ex->emu;
    if (!emu_method_allowed(ex, EMU_STYLE_ERROR, "POST"))
        return;
    const char *ts = emu_header(ex, "ts");
    const char *nonce = emu_header(ex, "nonce");
    const char *signature = emu_header(ex, "signature");
    int64_t ts_ms, now = emu_now_ms();
    if (!ts || !nonce || !*nonce || !signature) {
        emu_reply_error(ex, EMU_STYLE_ERROR, 401, "MKT.0102",
                        "missing ts, nonce or signature header");
        return;
    }
    if (!ts_parse(ts, &ts_ms) || llabs(now - ts_ms) > EMU_CLOCK_SKEW_MS) {
        emu_reply_error(ex, EMU_STYLE_ERROR, 401, "MKT.0102",
                        "ts malformed or more than 15 minutes away");
        return;
    }
    json_error_t jerr;
    json_t *body = canonjson_parse(ex->body, ex->body_len, &jerr);
    if (!body) {
        emu_reply_error(ex, EMU_STYLE_ERROR, 400, "MKT.0100", "body is not valid JSON");
        return;
    }
    if (!signature_ok(ex, ts, nonce, signature, body)) {
        json_decref(body);
        emu_reply_error(ex, EMU_STYLE_ERROR, 401, "MKT.0102", "signature verification failed");
        return;
    }
    if (!nonce_fresh(emu, nonce, now)) {
        json_decref(body);
        emu_reply_error(ex, EMU_STYLE_ERROR, 401, "MKT.0102", "nonce already used");
        return;
    }
    json_t *records = json_object_get(body, "usage_records");
    if (!json_is_array(records) || json_array_size(records) == 0) {
        json_decref(body);
        emu_reply_error(ex, EMU_STYLE_ERROR, 400, "MKT.0100",
                        "usage_records must be a non-empty array");
        return;
    }
    if (json_array_size(records) > USAGE_MAX_RECORDS) {
        json_decref(body);
        emu_reply_error(ex, EMU_STYLE_ERROR, 400, "MKT.9003", "more than 1000 usage records");
        return;
    }
    json_t *batch_sns = json_object();
    size_t i;
    json_t *rec;
    const char *code = NULL;
    char msg[160];
    json_array_foreach(records, i, rec)
    {
        if (!record_ok(rec, i, batch_sns, now, &code, msg, sizeof msg))
            break;
        if (!instance_known(emu, str_field(rec, "instance_id"))) {
            code = "MKT.9001";
            snprintf(msg, sizeof msg, "usage_records[%zu].instance_id does not exist", i);
            break;
        }
    }
    json_decref(batch_sns);
    if (code) {
        json_decref(body);
        emu_reply_error(ex, EMU_STYLE_ERROR, 400, code, msg);
        return;
    }
    json_int_t push = json_integer_value(emu->usage_pushes) + 1;
    json_integer_set(emu->usage_pushes, push);
    json_int_t duplicates = 0;
    json_array_foreach(records, i, rec)
    {
        char *key = xasprintf("%s|%s|%s", str_field(rec, "instance_id"),
                              str_field(rec, "begin_time"), str_field(rec, "end_time"));
        /* The marketplace ignores a repeat of the same instance and period. */
        if (!json_object_get(emu->usage_seen, key)) {
            json_object_set_new(emu->usage_seen, key, json_true());
            json_t *stored = json_deep_copy(rec);
            json_object_set_new(stored, "push", json_integer(push));
            json_object_set_new(stored, "received_ms", json_integer(now));
            json_array_append_new(emu->usage, stored);
        } else {
            duplicates++;
        }
        free(key);
    }
    if (ex->call)
        json_object_set_new(ex->call, "duplicates", json_integer(duplicates));
    json_decref(body);
    emu_reply(ex, 200, json_pack("{s:s, s:s}", "error_code", "MKT.0000", "error_msg", "success"));
}
