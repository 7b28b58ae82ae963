/* vectors: access to tests/data/vectors.json (the spec's reference values) for unit tests. */
#ifndef KOOISV_TEST_VECTORS_H
#define KOOISV_TEST_VECTORS_H
#include <jansson.h>

/* The whole vectors.json document, loaded once per process; fails the test if unreadable. */
json_t *vectors_get(void);
/* The array or object named name at the top level; fails the test if absent or empty. */
json_t *vectors_section(const char *name);
/* String member name of obj; fails the test if absent or not a string. */
const char *vectors_str(const json_t *obj, const char *name);
/* Decode lowercase/uppercase hex into out (len bytes); fails the test on bad input. */
void vectors_unhex(const char *hex, unsigned char *out, size_t len);

#endif
