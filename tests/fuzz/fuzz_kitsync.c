/* The kit sync request parser (spec §4) on any body. The first byte picks the interface, the
 * rest is the body. Refused with a code and a message, or accepted with an owning service and
 * an envelope that packs and unpacks. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canonjson.h"
#include "fuzz_support.h"
#include "resultcode.h"
#include "resref.h"
#include "kitsync.h"

static const char *const names[] = {"tenantSync", "applicationSync", "authSync", "singleOrgSync",
                                     "allOrgSync"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *name = names[data[0] % 5];
    assert(kitsync_known(name));
    json_error_t err;
    json_t *body = canonjson_parse((const char *)data + 1, size - 1, &err);
    if (!body)
        return 0;
    Kooisv__Envelope env = KOOISV__ENVELOPE__INIT;
    service_id_t svc;
    char msg[512];
    msg[0] = '\0';
    const char *code = json_is_object(body) ? kitsync_build(name, body, &env, &svc, msg, sizeof msg)
                                            : NULL;
    if (code && strcmp(code, RC_OK) == 0) {
        Kooisv__ResourceRef **res = NULL;
        size_t n = 0;
        kitsync_resources(&env, &res, &n);
        resref_free(res, n);
        fuzz_envelope_round_trip(&env);
    } else if (code) {
        assert(msg[0]);
    }
    kitsync_free_body(&env);
    json_decref(body);
    return 0;
}
