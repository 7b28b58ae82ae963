/* fuzz_support: checks the request-parser harnesses share. */
#ifndef KOOISV_FUZZ_SUPPORT_H
#define KOOISV_FUZZ_SUPPORT_H
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#include "envelope.pb-c.h"
#include "transport.h"

/* An accepted envelope packs (as the gateway sends it) and unpacks into the same body kind. */
static inline void fuzz_envelope_round_trip(const Kooisv__Envelope *env)
{
    uint8_t *buf = NULL;
    size_t len = transport_pack_envelope(env, &buf);
    Kooisv__Envelope *back = kooisv__envelope__unpack(NULL, len, buf);
    assert(back && back->body_case == env->body_case);
    kooisv__envelope__free_unpacked(back, NULL);
    free(buf);
}

#endif
