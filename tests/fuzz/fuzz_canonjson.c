/* Canonical JSON (spec §2) on any bytes: parsing never crashes, and the canonical form is a
 * fixed point (parsing and dumping it again gives the same bytes), which the signature check
 * relies on. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canonjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *v = canonjson_parse((const char *)data, size, &err);
    if (!v)
        return 0;
    char *once = canonjson_dump(v);
    json_decref(v);
    if (!once)
        return 0;
    json_t *again = canonjson_parse(once, strlen(once), &err);
    assert(again);
    char *twice = canonjson_dump(again);
    assert(twice && strcmp(once, twice) == 0);
    json_decref(again);
    free(once);
    free(twice);
    return 0;
}
