#include "resref.h"

#include <stdlib.h>

#include "xmalloc.h"

void resref_add(Kooisv__ResourceRef ***res, size_t *n, const char *kind, const char *id)
{
    if (!id || !*id)
        return;
    Kooisv__ResourceRef *r = xmalloc(sizeof *r);
    kooisv__resource_ref__init(r);
    r->kind = xstrdup(kind);
    r->id = xstrdup(id);
    *res = xrealloc(*res, (*n + 1) * sizeof **res);
    (*res)[(*n)++] = r;
}

void resref_free(Kooisv__ResourceRef **res, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!res[i])
            continue;
        if (res[i]->kind != protobuf_c_empty_string)
            free(res[i]->kind);
        if (res[i]->id != protobuf_c_empty_string)
            free(res[i]->id);
        free(res[i]);
    }
    free(res);
}
