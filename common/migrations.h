/* migrations: the schema history embedded into each service binary at build time
 * (services/<name>/migrations/NNN_name.sql, see common/embed_migrations.cmake). */
#ifndef KOOISV_MIGRATIONS_H
#define KOOISV_MIGRATIONS_H
#include "pgutil.h"

extern const pg_migration_t service_migrations[];
extern const unsigned long service_migrations_count;

#endif
