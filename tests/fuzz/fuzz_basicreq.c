/* The basic-interface request parser (spec §3) on any body: canonical parse, activity lookup,
 * validation into an envelope, the audit resources, and the envelope's wire form. A body is
 * either refused with 000002 and a message, or accepted and then packs and unpacks. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basicreq.h"
#include "canonjson.h"
#include "fuzz_support.h"
#include "resultcode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *body = canonjson_parse((const char *)data, size, &err);
    if (!body)
        return 0;
    (void)basicreq_activity(body);
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    char msg[512];
    msg[0] = '\0';
    const char *code = basicreq_build(body, &env, msg, sizeof msg);
    assert(code);
    if (strcmp(code, RC_OK) == 0) {
        Kooisv__ResourceRef **res = NULL;
        size_t n = 0;
        basicreq_resources(&env, &res, &n);
        resref_free(res, n);
        fuzz_envelope_round_trip(&env);
    } else {
        assert(strcmp(code, RC_INVALID) == 0 && msg[0]);
    }
    basicreq_free_body(&env);
    json_decref(body);
    return 0;
}
