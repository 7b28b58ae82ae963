#include "bodysign.h"
#include "cryptoutil.h"
#include "xmalloc.h"

#include <stdlib.h>
#include <string.h>

char *bodysign_header(const char *key, const char *body, size_t len)
{
    uint8_t mac[32];
    hmac_sha256(key, strlen(key), body, len, mac);
    char *sig = b64_encode(mac, sizeof mac);
    char *header = xasprintf("sign_type=\"HMAC-SHA256\", signature=\"%s\"", sig);
    free(sig);
    return header;
}

bool bodysign_verify(const char *key, const char *body, size_t len, const char *header)
{
    if (!header)
        return false;
    char *expected = bodysign_header(key, body, len);
    size_t n = strlen(expected);
    bool ok = strlen(header) == n && bytes_equal(expected, header, n);
    free(expected);
    return ok;
}
