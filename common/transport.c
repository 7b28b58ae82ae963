#include "transport.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <zmq.h>

#include "log.h"
#include "xmalloc.h"

static void *zmq_context;
static pthread_once_t context_once = PTHREAD_ONCE_INIT;

static void context_create(void)
{
    zmq_context = zmq_ctx_new();
    if (!zmq_context) {
        log_error(NULL, "cannot create the ZeroMQ context: %s", zmq_strerror(errno));
        abort();
    }
}

void *transport_context(void)
{
    pthread_once(&context_once, context_create);
    return zmq_context;
}

size_t transport_pack_envelope(const Kooisv__Envelope *env, uint8_t **buf)
{
    size_t len = kooisv__envelope__get_packed_size(env);
    *buf = xmalloc(len ? len : 1);
    kooisv__envelope__pack(env, *buf);
    return len;
}
