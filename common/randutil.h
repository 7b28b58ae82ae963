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
/* Write a random password of len >= 12 chars with upper, lower, digit and symbol into out. */
void rand_password(char *out, size_t len);

#endif
