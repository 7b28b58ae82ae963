#include "jsonfield.h"
#include "resultcode.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "canonjson.h"
#include "timeutil.h"
#include "xmalloc.h"

const char *jsonfield_fail(jsonfield_err_t *e, const char *fmt, ...)
{
    if (!e->failed && e->msg && e->len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, e->len, fmt, ap);
        va_end(ap);
    }
    e->failed = true;
    return RC_INVALID;
}

jsonfield_status_t jsonfield_string(const json_t *obj, const char *key, const char **out)
{
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return JSONFIELD_ABSENT;
    if (!json_is_string(v))
        return JSONFIELD_WRONG_TYPE;
    const char *s = json_string_value(v);
    if (json_string_length(v) != strlen(s))
        return JSONFIELD_HAS_NUL;
    *out = s;
    return JSONFIELD_OK;
}

size_t jsonfield_chars(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

bool jsonfield_has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7F)
            return true;
    return false;
}

bool jsonfield_in(const char *s, const char *const *allowed)
{
    for (int i = 0; allowed[i]; i++)
        if (strcmp(s, allowed[i]) == 0)
            return true;
    return false;
}

void jsonfield_list(const char *const *allowed, char *buf, size_t len)
{
    if (!len)
        return;
    buf[0] = '\0';
    for (int i = 0; allowed[i]; i++) {
        if (i)
            strncat(buf, ", ", len - strlen(buf) - 1);
        strncat(buf, allowed[i], len - strlen(buf) - 1);
    }
}

jsonfield_status_t jsonfield_compact_time(const char *s, int forms)
{
    size_t len = strlen(s);
    bool shape_ok =
        ((forms & JSONFIELD_SECONDS) && len == 14) || ((forms & JSONFIELD_MILLIS) && len == 17);
    if (!shape_ok || strspn(s, "0123456789") != len)
        return JSONFIELD_BAD_SHAPE;
    /* the milliseconds need no check beyond being digits */
    char seconds[15];
    memcpy(seconds, s, 14);
    seconds[14] = '\0';
    int64_t ms;
    return time_parse_compact(NULL, seconds, &ms) ? JSONFIELD_OK : JSONFIELD_BAD_TIME;
}

char *jsonfield_copy(const char *s)
{
    return xstrdup(s ? s : "");
}

jsonfield_status_t jsonfield_embedded(const json_t *obj, const char *key, json_type type,
                                      const json_t **out, json_t **owned, json_error_t *jerr)
{
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    *owned = NULL;
    if (!v || json_is_null(v))
        return JSONFIELD_ABSENT;
    if (json_is_string(v)) {
        json_t *parsed = canonjson_parse(json_string_value(v), json_string_length(v), jerr);
        if (!parsed)
            return JSONFIELD_BAD_JSON;
        if (json_typeof(parsed) != type) {
            json_decref(parsed);
            return JSONFIELD_STRING_HOLDS;
        }
        *owned = parsed;
        v = parsed;
    } else if (json_typeof(v) != type) {
        return JSONFIELD_WRONG_TYPE;
    }
    *out = v;
    return JSONFIELD_OK;
}
