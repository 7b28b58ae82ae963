/* randutil: cryptographically secure random values (OpenSSL RAND_bytes). */
#ifndef KOOISV_RANDUTIL_H
#define KOOISV_RANDUTIL_H
#include <stddef.h>

/* Fill buf with len random bytes; aborts if the CSPRNG fails (never silently weak). */
void rand_bytes(void *buf, size_t len);
/* Write len random characters from [A-Za-z0-9] plus a terminator into out (size len + 1). */
void rand_alnum(char *out, size_t len);
/* Write a random UUID v4 (36 chars + terminator) into out[37]. */
void rand_uuid(char out[37]);
/* Write a UUID v7 (RFC 9562: Unix time in ms, then 74 random bits) into out[37]. Ids made later
 * sort later, so a unique index of them takes each insert near the previous one instead of at a
 * random page (request and event ids). Unique and unguessable, but not secret: it shows when it
 * was made. */
void rand_uuid7(char out[37]);
/* Write a random password of len >= 12 chars with upper, lower, digit and symbol into out. */
void rand_password(char *out, size_t len);

/* The delay before retry number attempts (1 = the first retry): first_ms doubled per earlier
 * attempt, capped at max_ms, plus up to 20 % random jitter so that replicas retrying the same
 * outage do not march in step. */
long rand_backoff_ms(long first_ms, long max_ms, int attempts);
#endif
