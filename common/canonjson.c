#include "canonjson.h"
#include "xmalloc.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Growable output buffer; always NUL-terminated. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} outbuf_t;

static void out_reserve(outbuf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static void out_append(outbuf_t *b, const char *s, size_t n)
{
    out_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void out_char(outbuf_t *b, char c)
{
    out_append(b, &c, 1);
}

/* Raw UTF-8 out; only what JSON requires is escaped (the quote, the backslash, controls). */
static void dump_string(outbuf_t *b, const char *s, size_t n)
{
    out_char(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (c < 0x20) {
                snprintf(ubuf, sizeof ubuf, "\\u%04x", c);
                esc = ubuf;
            }
        }
        if (esc) {
            out_append(b, s + run, i - run);
            out_append(b, esc, strlen(esc));
            run = i + 1;
        }
    }
    out_append(b, s + run, n - run);
    out_char(b, '"');
}

static int key_compare(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool dump_value(outbuf_t *b, const json_t *v);

static bool dump_object(outbuf_t *b, const json_t *v)
{
    size_t n = json_object_size(v);
    const char **keys = xmalloc((n ? n : 1) * sizeof *keys);
    size_t k = 0;
    const char *key;
    json_t *member;
    /* json_object_foreach wants a non-const object; it does not modify it. */
    json_object_foreach((json_t *)v, key, member)
    {
        if (!json_is_null(member))
            keys[k++] = key;
    }
    qsort(keys, k, sizeof *keys, key_compare);
    bool ok = true;
    out_char(b, '{');
    for (size_t i = 0; i < k && ok; i++) {
        if (i)
            out_char(b, ',');
        dump_string(b, keys[i], strlen(keys[i]));
        out_char(b, ':');
        ok = dump_value(b, json_object_get(v, keys[i]));
    }
    out_char(b, '}');
    free(keys);
    return ok;
}

static bool dump_value(outbuf_t *b, const json_t *v)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return dump_object(b, v);
    case JSON_ARRAY: {
        out_char(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                out_char(b, ',');
            if (!dump_value(b, json_array_get(v, i)))
                return false;
        }
        out_char(b, ']');
        return true;
    }
    case JSON_STRING:
        dump_string(b, json_string_value(v), json_string_length(v));
        return true;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        out_append(b, num, strlen(num));
        return true;
    case JSON_REAL:
        if (!canonjson_format_real(json_real_value(v), num, sizeof num))
            return false;
        out_append(b, num, strlen(num));
        return true;
    case JSON_TRUE:
        out_append(b, "true", 4);
        return true;
    case JSON_FALSE:
        out_append(b, "false", 5);
        return true;
    case JSON_NULL:
        out_append(b, "null", 4);
        return true;
    }
    return false;
}

char *canonjson_dump(const json_t *v)
{
    if (!v)
        return NULL;
    outbuf_t b = {0};
    out_reserve(&b, 0);
    b.data[0] = '\0';
    if (!dump_value(&b, v)) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

json_t *canonjson_parse(const char *body, size_t len, json_error_t *err)
{
    json_error_t local;
    if (!err)
        err = &local;
    if (!body) {
        memset(err, 0, sizeof *err);
        snprintf(err->text, sizeof err->text, "no body");
        return NULL;
    }
    /* No JSON_DISABLE_EOF_CHECK: trailing data is an error. jansson itself rejects invalid
     * UTF-8, \u0000 in strings and integers beyond int64. */
    return json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, err);
}

/* Shortest significant digits of |d| (no dot, no trailing zeros) and the decimal exponent of the
 * first digit, such that the text parses back to exactly d. */
static void shortest_digits(double d, char digits[24], int *exp10)
{
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* tmp is "D[.DDD]e[+-]XX" with no sign because d > 0. */
    size_t n = 0;
    const char *p = tmp;
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[n++] = *p;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    *exp10 = atoi(p + 1);
}

char *canonjson_format_real(double d, char *buf, size_t len)
{
    if (!isfinite(d) || len < 32)
        return NULL;
    char *o = buf;
    if (signbit(d)) {
        *o++ = '-';
        d = -d;
    }
    if (d == 0) {
        strcpy(o, "0.0");
        return buf;
    }
    char digits[24];
    int e;
    shortest_digits(d, digits, &e);
    int n = (int)strlen(digits);
    if (d >= 1e-3 && d < 1e7) {
        /* Plain notation with at least one digit on each side of the point, as Java prints. */
        if (e >= 0) {
            for (int i = 0; i <= e; i++)
                *o++ = i < n ? digits[i] : '0';
            *o++ = '.';
            if (e + 1 < n) {
                memcpy(o, digits + e + 1, (size_t)(n - e - 1));
                o += n - e - 1;
            } else {
                *o++ = '0';
            }
        } else {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -e - 1; i++)
                *o++ = '0';
            memcpy(o, digits, (size_t)n);
            o += n;
        }
        *o = '\0';
    } else {
        /* Java's computerized scientific notation: 1.0E10, 1.5E-7. */
        *o++ = digits[0];
        *o++ = '.';
        if (n > 1) {
            memcpy(o, digits + 1, (size_t)(n - 1));
            o += n - 1;
        } else {
            *o++ = '0';
        }
        snprintf(o, (size_t)(buf + len - o), "E%d", e);
    }
    return buf;
}
