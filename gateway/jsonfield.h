/* jsonfield: the checks a request body field goes through (presence, JSON type, NUL and control
 * characters, length in characters, enums, the marketplace's compact times, values sent either
 * as JSON or as a string holding JSON), shared by basicreq (spec §3) and kitsync (spec §4).
 * The checks report what they found; each interface words its own messages, naming the field. */
#ifndef KOOISV_JSONFIELD_H
#define KOOISV_JSONFIELD_H
#include <jansson.h>
#include "resultcode.h"
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    JSONFIELD_OK = 0,
    JSONFIELD_ABSENT,       /* absent or JSON null (canonical JSON drops nulls: the same) */
    JSONFIELD_WRONG_TYPE,   /* present, of another JSON type */
    JSONFIELD_HAS_NUL,      /* a string with a NUL character inside */
    JSONFIELD_BAD_JSON,     /* a string that does not parse as JSON */
    JSONFIELD_STRING_HOLDS, /* a string holding JSON of another type */
    JSONFIELD_BAD_SHAPE,    /* a time not written in the expected digits */
    JSONFIELD_BAD_TIME,     /* the right digits, not a real calendar time */
} jsonfield_status_t;

/* Compact time forms for jsonfield_compact_time (combine with |). */
enum {
    JSONFIELD_SECONDS = 1, /* yyyyMMddHHmmss */
    JSONFIELD_MILLIS = 2,  /* yyyyMMddHHmmssSSS */
};

/* Where the first problem of one validation pass is written; later ones are dropped. */
typedef struct {
    char *msg;
    size_t len;
    bool failed;
} jsonfield_err_t;

/* Record a problem in e (printf format) unless one is already there; returns RC_INVALID, the
 * spec §5 invalid-parameter code, so that a check can end with return jsonfield_fail(...). */
const char *jsonfield_fail(jsonfield_err_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Member key of obj as a string without NUL: JSONFIELD_OK with *out (owned by obj), else
 * *out = NULL and ABSENT, WRONG_TYPE or HAS_NUL. */
jsonfield_status_t jsonfield_string(const json_t *obj, const char *key, const char **out);
/* Characters (code points) in s, which the JSON parser guaranteed to be valid UTF-8. */
size_t jsonfield_chars(const char *s);
/* True when s holds a control character (below 0x20, or DEL). */
bool jsonfield_has_control(const char *s);
/* True when s is one of the NULL-terminated allowed values. */
bool jsonfield_in(const char *s, const char *const *allowed);
/* The allowed values as "a, b, c" into buf (cut to len), for a message. */
void jsonfield_list(const char *const *allowed, char *buf, size_t len);
/* s as a compact marketplace time in one of forms: JSONFIELD_OK, BAD_SHAPE (length or
 * digits) or BAD_TIME (not a real calendar time). */
jsonfield_status_t jsonfield_compact_time(const char *s, int forms);
/* A copy of a checked string for a message: "" for NULL (an absent optional field); the
 * caller owns it. */
char *jsonfield_copy(const char *s);
/* Member key of obj as a JSON value of type, or a JSON string holding one (the marketplace
 * sends both): JSONFIELD_OK with *out, borrowed from obj or from *owned (the caller drops
 * *owned with json_decref; NULL when nothing was parsed); else *out = *owned = NULL and
 * ABSENT, WRONG_TYPE, BAD_JSON (with jerr filled) or STRING_HOLDS. */
jsonfield_status_t jsonfield_embedded(const json_t *obj, const char *key, json_type type,
                                      const json_t **out, json_t **owned, json_error_t *jerr);

#endif
