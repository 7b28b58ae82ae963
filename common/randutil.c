#include "randutil.h"

#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

static const char alnum_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/* Symbols that survive JSON, URLs, shells and spreadsheets without quoting surprises. */
static const char symbol_chars[] = "!#$%*+-.:=?@^_~";

void rand_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(p, chunk) != 1) {
            /* Continuing would hand out guessable keys, nonces and passwords. */
            fprintf(stderr, "level=error msg=\"CSPRNG failure: RAND_bytes\"\n");
            abort();
        }
        p += chunk;
        len -= (size_t)chunk;
    }
}

/* Uniform integer in [0, n) for 0 < n <= 256, by rejection sampling (no modulo bias). */
static unsigned rand_below(unsigned n)
{
    assert(n > 0 && n <= 256);
    unsigned limit = 256 - 256 % n;
    for (;;) {
        uint8_t b;
        rand_bytes(&b, 1);
        if (b < limit)
            return b % n;
    }
}

void rand_alnum(char *out, size_t len)
{
    const unsigned n = (unsigned)(sizeof alnum_chars - 1);
    const unsigned limit = 256 - 256 % n;
    uint8_t block[64];
    size_t o = 0;
    /* Draw bytes in blocks; a rejected byte is simply skipped. */
    while (o < len) {
        rand_bytes(block, sizeof block);
        for (size_t i = 0; i < sizeof block && o < len; i++)
            if (block[i] < limit)
                out[o++] = alnum_chars[block[i] % n];
    }
    out[len] = '\0';
    OPENSSL_cleanse(block, sizeof block);
}

/* The 36-character text of a UUID's 16 bytes. */
static void uuid_text(const uint8_t b[16], char out[37])
{
    static const char digits[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = digits[b[i] >> 4];
        out[o++] = digits[b[i] & 0x0f];
    }
    out[o] = '\0';
}

void rand_uuid(char out[37])
{
    uint8_t b[16];
    rand_bytes(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    uuid_text(b, out);
}

void rand_uuid7(char out[37])
{
    uint8_t b[16];
    rand_bytes(b, sizeof b);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i)); /* 48 bits of Unix time in ms, big-endian */
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x70); /* version 7 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 9562 variant */
    uuid_text(b, out);
}

void rand_password(char *out, size_t len)
{
    if (len < 12) {
        /* A caller bug; with NDEBUG an assert would vanish and short lengths could loop. */
        fprintf(stderr, "level=error msg=\"rand_password: length below 12\" len=%zu\n", len);
        abort();
    }
    char alphabet[sizeof alnum_chars - 1 + sizeof symbol_chars];
    memcpy(alphabet, alnum_chars, sizeof alnum_chars - 1);
    memcpy(alphabet + sizeof alnum_chars - 1, symbol_chars, sizeof symbol_chars);
    const unsigned n = (unsigned)strlen(alphabet);
    /* Redraw until every class is present: uniform over all acceptable passwords, and the
     * expected number of draws is below 1.5 at length 12. */
    for (;;) {
        int upper = 0, lower = 0, digit = 0, symbol = 0;
        for (size_t i = 0; i < len; i++) {
            char c = alphabet[rand_below(n)];
            out[i] = c;
            if (c >= 'A' && c <= 'Z')
                upper = 1;
            else if (c >= 'a' && c <= 'z')
                lower = 1;
            else if (c >= '0' && c <= '9')
                digit = 1;
            else
                symbol = 1;
        }
        out[len] = '\0';
        if (upper && lower && digit && symbol)
            return;
    }
}

long rand_backoff_ms(long first_ms, long max_ms, int attempts)
{
    long d = first_ms;
    for (int i = 1; i < attempts && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    unsigned int j;
    rand_bytes(&j, sizeof j);
    return d + (long)(j % (unsigned)(d / 5 + 1));
}
