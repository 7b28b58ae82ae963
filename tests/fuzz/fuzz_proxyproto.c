/* The gateway's PROXY protocol v2 parser (gateway/proxyproto) on any bytes, as a peer sends them
 * before TLS, and the trust list's parser on any text. Checks: no crash; OK means a header of at
 * least 16 bytes and at most the input, that parses the same alone; NEED_MORE asks for more than
 * it got; every prefix of a header that parses is NEED_MORE; an address is NUL-terminated. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t need = 0;
    proxyproto_header_t h;
    proxyproto_status_t s = proxyproto_parse(data, size, &need, &h);
    if (s == PROXYPROTO_NEED_MORE)
        assert(need > size && need >= 16);
    if (s == PROXYPROTO_OK) {
        assert(need >= 16 && need <= size && need <= PROXYPROTO_HEADER_MAX);
        assert(memchr(h.addr, '\0', sizeof h.addr));
        proxyproto_header_t again;
        size_t need2 = 0;
        assert(proxyproto_parse(data, need, &need2, &again) == PROXYPROTO_OK && need2 == need);
        assert(again.local == h.local && strcmp(again.addr, h.addr) == 0);
        for (size_t i = 0; i < need; i += 7)
            assert(proxyproto_parse(data, i, &need2, &again) == PROXYPROTO_NEED_MORE || i == 0);
    }
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char err[128];
    proxyproto_trust_t *t = proxyproto_trust_new(text, err, sizeof err);
    if (t) {
        (void)proxyproto_trust_has(t, "203.0.113.9");
        (void)proxyproto_trust_has(t, "2001:db8::1");
        proxyproto_trust_destroy(&t);
    }
    free(text);
    return 0;
}
