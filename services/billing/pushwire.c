/* pushwire: the usage-data request and the reading of its answer (spec §6). */
#include "pushwire.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "canonjson.h"
#include "randutil.h"
#include "usagesign.h"
#include "xmalloc.h"

char *pushwire_time(int64_t ms, char out[17])
{
    time_t s = (time_t)(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
    struct tm tm;
    gmtime_r(&s, &tm);
    if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        snprintf(out, 17, "00000000T000000Z"); /* beyond year 9999: never a real usage time */
    return out;
}

char *pushwire_body(const pushwire_record_t *records, size_t n)
{
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        const pushwire_record_t *r = &records[i];
        char begin[17], end[17], at[17];
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "instance_id",
                                              r->instance_id, "metering_sn", r->metering_sn,
                                              "usage_value", r->usage_value, "begin_time",
                                              pushwire_time(r->begin_ms, begin), "end_time",
                                              pushwire_time(r->end_ms, end), "record_time",
                                              pushwire_time(r->record_ms, at)));
    }
    json_t *body = json_pack("{s:o}", "usage_records", list);
    char *text = canonjson_dump(body);
    json_decref(body);
    return text;
}

char **pushwire_headers(const char *key, const char *body, int64_t now_ms)
{
    char ts[24], nonce[37];
    snprintf(ts, sizeof ts, "%lld", (long long)now_ms);
    rand_uuid(nonce);
    char *signature = usagesign_signature(key, ts, nonce, body);
    char **h = xcalloc(5, sizeof *h);
    h[0] = xstrdup("Content-Type: application/json");
    h[1] = xasprintf("ts: %s", ts);
    h[2] = xasprintf("nonce: %s", nonce);
    h[3] = xasprintf("signature: %s", signature);
    free(signature);
    return h;
}

void pushwire_headers_free(char **headers)
{
    for (size_t i = 0; headers && headers[i]; i++)
        free(headers[i]);
    free(headers);
}

/* The record a refusal names: "usage_records[N]" in the message, N < batch_size; else -1. */
static long named_index(const char *msg, size_t batch_size)
{
    const char *p = msg ? strstr(msg, "usage_records[") : NULL;
    if (!p)
        return -1;
    p += strlen("usage_records[");
    if (!isdigit((unsigned char)*p))
        return -1;
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (*end != ']' || v >= batch_size)
        return -1;
    return (long)v;
}

static void set_message(pushwire_answer_t *out, const char *msg)
{
    snprintf(out->message, sizeof out->message, "%s", msg ? msg : "");
    for (char *c = out->message; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    }
}

void pushwire_read(int status, const char *body, size_t body_len, const char *transport_error,
                   size_t batch_size, pushwire_answer_t *out)
{
    memset(out, 0, sizeof *out);
    out->index = -1;
    out->verdict = PUSHWIRE_RETRY;
    if (status == 0) {
        snprintf(out->code, sizeof out->code, "NETWORK");
        set_message(out, transport_error ? transport_error : "no answer");
        return;
    }
    json_t *doc = body ? json_loadb(body, body_len, 0, NULL) : NULL;
    const char *code = json_string_value(json_object_get(doc, "error_code"));
    const char *msg = json_string_value(json_object_get(doc, "error_msg"));
    if (!code || !*code) {
        snprintf(out->code, sizeof out->code, "HTTP_%d", status);
        set_message(out, "answer without error_code");
        json_decref(doc);
        return;
    }
    snprintf(out->code, sizeof out->code, "%s", code);
    set_message(out, msg);
    long index = named_index(msg, batch_size);
    if (strcmp(code, "MKT.0000") == 0 && status >= 200 && status < 300) {
        out->verdict = PUSHWIRE_ACCEPTED;
    } else if (strcmp(code, "MKT.9001") == 0 || strcmp(code, "MKT.9002") == 0 ||
               strcmp(code, "MKT.9004") == 0) {
        out->verdict = PUSHWIRE_REFUSED;
        out->index = index;
    } else if (strcmp(code, "MKT.0101") == 0 && index >= 0) {
        /* a field of one record is malformed: that record is refused, not the batch */
        out->verdict = PUSHWIRE_REFUSED;
        out->index = index;
    } else if (strcmp(code, "MKT.9003") == 0 && batch_size > 1) {
        out->verdict = PUSHWIRE_SPLIT;
    }
    /* everything else (MKT.0250 rate limited, MKT.0999, 5xx, bad signature, not allowed) is
     * retried with backoff: the records are not at fault, or not known to be */
    json_decref(doc);
}
