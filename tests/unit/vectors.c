#include "vectors.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#ifndef KOOISV_VECTORS_FILE
#error "KOOISV_VECTORS_FILE must name tests/data/vectors.json"
#endif

static json_t *doc;

static void vectors_release(void)
{
    json_decref(doc);
    doc = NULL;
}

json_t *vectors_get(void)
{
    if (!doc) {
        json_error_t err;
        doc = json_load_file(KOOISV_VECTORS_FILE, JSON_REJECT_DUPLICATES, &err);
        if (!doc)
            fail_msg("cannot load %s: %s (line %d)", KOOISV_VECTORS_FILE, err.text, err.line);
        atexit(vectors_release);
    }
    return doc;
}

json_t *vectors_section(const char *name)
{
    json_t *s = json_object_get(vectors_get(), name);
    if (!s || (json_is_array(s) && json_array_size(s) == 0) ||
        (json_is_object(s) && json_object_size(s) == 0))
        fail_msg("vectors.json has no section %s", name);
    return s;
}

const char *vectors_str(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    if (!json_is_string(v))
        fail_msg("vector member %s missing or not a string", name);
    return json_string_value(v);
}

void vectors_unhex(const char *hex, unsigned char *out, size_t len)
{
    if (strlen(hex) != 2 * len)
        fail_msg("hex %s is not %zu bytes", hex, len);
    for (size_t i = 0; i < len; i++) {
        unsigned int b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1)
            fail_msg("bad hex %s", hex);
        out[i] = (unsigned char)b;
    }
}
