/* Every protobuf decoder a process runs on bytes it received: the services decode envelopes
 * (every body kind is a oneof of it), the gateway decodes replies. Any bytes either fail to
 * decode or decode into a message that packs again without a crash. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#include "envelope.pb-c.h"

/* Decode data as a message of type desc; what decodes packs again to its announced size. */
static void round_trip(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, size, data);
    if (!m)
        return;
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    assert(protobuf_c_message_pack(m, buf) == len);
    free(buf);
    protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    round_trip(&kooisv__envelope__descriptor, data, size);
    round_trip(&kooisv__reply__descriptor, data, size);
    return 0;
}
