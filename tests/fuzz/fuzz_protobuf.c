/* Every protobuf decoder a process runs on bytes it received: the services decode envelopes
 * (every body kind is a oneof of it), the gateway decodes replies. Any bytes either fail to
 * decode or decode into a message that packs again without a crash. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#include "envelope.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Kooisv__Envelope *env = kooisv__envelope__unpack(NULL, size, data);
    if (env) {
        size_t len = kooisv__envelope__get_packed_size(env);
        uint8_t *buf = malloc(len ? len : 1);
        assert(kooisv__envelope__pack(env, buf) == len);
        free(buf);
        kooisv__envelope__free_unpacked(env, NULL);
    }
    Kooisv__Reply *reply = kooisv__reply__unpack(NULL, size, data);
    if (reply) {
        size_t len = kooisv__reply__get_packed_size(reply);
        uint8_t *buf = malloc(len ? len : 1);
        assert(kooisv__reply__pack(reply, buf) == len);
        free(buf);
        kooisv__reply__free_unpacked(reply, NULL);
    }
    return 0;
}
