/* canonjson: the marketplace's canonical JSON (spec §2): keys sorted by byte order at every level,
 * null members dropped (in objects; nulls inside arrays are kept as null), compact separators,
 * raw UTF-8, no "\/" escaping, numbers printed as the shortest text that round-trips
 * (integers as integers; reals Java-style: 12.78, 1.0, 1.0E10). */
#ifndef KOOISV_CANONJSON_H
#define KOOISV_CANONJSON_H
#include <jansson.h>
#include <stddef.h>

/* Canonical text of v. Caller owns the result; NULL if v holds NaN/Inf. */
char *canonjson_dump(const json_t *v);
/* Strictly parse body (valid UTF-8, no duplicate keys, one value, no trailing data); NULL with
 * err filled on failure. Caller owns the result (json_decref). */
json_t *canonjson_parse(const char *body, size_t len, json_error_t *err);
/* Shortest round-trip decimal text of d, Java Double.toString style, into buf (>= 32 bytes);
 * returns buf, or NULL if d is NaN/Inf or buf is too small. */
char *canonjson_format_real(double d, char *buf, size_t len);

#endif
