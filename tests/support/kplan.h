/* kplan: checks of the plans PostgreSQL makes for the services' own statements, for tests that
 * a statement keeps to its index whatever the statistics say. A test copies the tables into a
 * scratch schema (CREATE TABLE ... (LIKE ... INCLUDING ALL): the indexes are copied, the primary
 * key keeps the name "<table>_pkey", the others get names that start with "<table>_"), gives
 * them the statistics that misled the planner, and looks at the generic plans. */
#ifndef KOOISV_TEST_KPLAN_H
#define KOOISV_TEST_KPLAN_H
#include <jansson.h>
#include <libpq-fe.h>

#include "pgutil.h"

/* Run sql on c; fails the test with the server's message unless it succeeds. */
void kplan_exec(PGconn *c, const char *sql);
/* text with every "<from>." replaced by "<to>." (a statement's schema by the scratch one);
 * caller frees. */
char *kplan_rename(const char *text, const char *from, const char *to);
/* The generic plan of the statement sql (nparams parameters) prepared on c as name, as EXPLAIN
 * (FORMAT JSON) gives its top node with every parameter NULL; fails the test when it cannot be
 * made. Caller json_decrefs. */
json_t *kplan_generic(PGconn *c, const char *name, const char *sql, int nparams);
/* The first read of table in plan that does not go through one of the indexes named in want
 * (space-separated): "Seq Scan", or the name of another index of the table (one whose name
 * starts with "<table>_"); NULL when every read of it uses those. Points into plan. */
const char *kplan_other_read(json_t *plan, const char *table, const char *want);

/* Check the generic plan of st on c, with "<from>." renamed "<to>." in it (from NULL: as it
 * is): append " <name> (<the other read>)" to *wrong (a heap string) when a read of table goes
 * through none of the indexes named in want (kplan_other_read). */
void kplan_expect(PGconn *c, const pg_stmt_t *st, const char *from, const char *to,
                  const char *table, const char *want, char **wrong);
/* Drop the scratch schema (and free its name), close c. */
void kplan_done(PGconn *c, char *schema);

#endif
