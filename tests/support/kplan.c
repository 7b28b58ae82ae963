#include "kplan.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

void kplan_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

char *kplan_rename(const char *text, const char *from, const char *to)
{
    char *pat = xasprintf("%s.", from), *rep = xasprintf("%s.", to);
    char *out = xstrdup(text);
    size_t skip = 0;
    for (char *at; (at = strstr(out + skip, pat));) {
        size_t head = (size_t)(at - out);
        char *next = xasprintf("%.*s%s%s", (int)head, out, rep, at + strlen(pat));
        free(out);
        out = next;
        skip = head + strlen(rep);
    }
    free(pat);
    free(rep);
    return out;
}

json_t *kplan_generic(PGconn *c, const char *name, const char *sql, int nparams)
{
    kplan_exec(c, "SET plan_cache_mode = force_generic_plan");
    PGresult *r = PQprepare(c, name, sql, nparams, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("prepare %s: %s", name, PQerrorMessage(c));
    PQclear(r);
    char *args = xstrdup("");
    for (int i = 0; i < nparams; i++) {
        char *more = xasprintf("%s%sNULL", args, i ? ", " : "");
        free(args);
        args = more;
    }
    char *explain = xasprintf("EXPLAIN (FORMAT JSON) EXECUTE %s%s%s%s", name, nparams ? "(" : "",
                              args, nparams ? ")" : "");
    r = PQexec(c, explain);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", explain, PQerrorMessage(c));
    json_t *doc = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    PQclear(r);
    free(explain);
    free(args);
    if (!doc)
        fail_msg("%s: EXPLAIN gave no JSON", name);
    json_t *top = json_incref(json_object_get(json_array_get(doc, 0), "Plan"));
    json_decref(doc);
    if (!top)
        fail_msg("%s: EXPLAIN gave no plan", name);
    return top;
}

/* Whether word is one of the space-separated words of list. */
static bool word_in(const char *word, const char *list)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

const char *kplan_other_read(json_t *plan, const char *table, const char *want)
{
    const char *type = json_string_value(json_object_get(plan, "Node Type"));
    const char *rel = json_string_value(json_object_get(plan, "Relation Name"));
    const char *index = json_string_value(json_object_get(plan, "Index Name"));
    if (type && strcmp(type, "Seq Scan") == 0 && rel && strcmp(rel, table) == 0)
        return type;
    size_t n = strlen(table);
    if (index && strncmp(index, table, n) == 0 && index[n] == '_' && !word_in(index, want))
        return index;
    size_t i;
    json_t *child;
    json_array_foreach(json_object_get(plan, "Plans"), i, child)
    {
        const char *other = kplan_other_read(child, table, want);
        if (other)
            return other;
    }
    return NULL;
}

void kplan_expect(PGconn *c, const pg_stmt_t *st, const char *from, const char *to,
                  const char *table, const char *want, char **wrong)
{
    char *text = from ? kplan_rename(st->sql, from, to) : xstrdup(st->sql);
    json_t *plan = kplan_generic(c, st->name, text, st->nparams);
    const char *other = kplan_other_read(plan, table, want);
    if (other) {
        char *more = xasprintf("%s %s (%s)", *wrong, st->name, other);
        free(*wrong);
        *wrong = more;
    }
    json_decref(plan);
    free(text);
}

void kplan_done(PGconn *c, char *schema)
{
    char *sql = xasprintf("DROP SCHEMA %s CASCADE", schema);
    kplan_exec(c, sql);
    free(sql);
    free(schema);
    PQfinish(c);
}
