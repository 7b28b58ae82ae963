/* resref: the resources an audit record names (Kooisv__ResourceRef {kind, id}), collected into a
 * growing array by the request modules (basicreq, kitsync, produce, admin). */
#ifndef KOOISV_RESREF_H
#define KOOISV_RESREF_H
#include <stddef.h>
#include "envelope.pb-c.h"

/* Append one ResourceRef {kind, id} to *res (copies both strings; skips an empty id). */
void resref_add(Kooisv__ResourceRef ***res, size_t *n, const char *kind, const char *id);
/* Free n ResourceRefs made by resref_add (or by a module's *_resources), and the array. */
void resref_free(Kooisv__ResourceRef **res, size_t n);

#endif
