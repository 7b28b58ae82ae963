/* consoleassets: the web console's files (gateway/console/), generated into consoleassets.c at
 * build time by gateway/console/embed.cmake. */
#ifndef KOOISV_CONSOLEASSETS_H
#define KOOISV_CONSOLEASSETS_H
#include <stddef.h>

typedef struct {
    const char *name;         /* file name, e.g. "console.js" */
    const char *content_type; /* from its extension */
    const unsigned char *data;
    size_t len;
} consoleasset_t;

extern const consoleasset_t consoleassets[];
extern const size_t consoleassets_count;

#endif
