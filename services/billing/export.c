/* export.c: the export.* admin actions (export.h). A request is checked here, whole, before
 * anything is stored: a bad one leaves no row. */
#include "export.h"
#include "resultcode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exportfmt.h"
#include "svcadmin.h"
#include "timeutil.h"
#include "xmalloc.h"

#define FILTER_MAX 256
#define LIST_DEFAULT 50
#define LIST_MAX 500

const pg_stmt_t export_stmts[] = {
    /* The NOTIFY wakes an idle export thread of any replica at commit. */
    {"export_insert",
     "WITH e AS (INSERT INTO exports (kind, format, range_from, range_to, tenant_id, instance_id,"
     " product_id, requested_by, request_id) VALUES ($1, $2, to_timestamp($3::bigint / 1000.0),"
     " to_timestamp($4::bigint / 1000.0), $5, $6, $7, $8, $9) RETURNING *)"
     " SELECT export_doc(e)::text, pg_notify('billing_exports', '') IS NULL FROM e",
     9},
    {"export_get", "SELECT export_doc(e)::text FROM exports e WHERE e.id = $1::uuid", 1},
    {"export_list",
     "SELECT json_build_object('exports', coalesce(jsonb_agg(export_doc(e)"
     " ORDER BY e.requested_at DESC, e.id), '[]'))::text"
     " FROM (SELECT * FROM exports ORDER BY requested_at DESC, id LIMIT $1::int) e",
     1},
    /* The chunk only while the file is ready and not expired: the janitor may not have run. */
    {"export_chunk",
     "SELECT export_doc(e)::text, c.data FROM exports e LEFT JOIN export_chunks c"
     " ON c.export_id = e.id AND c.seq = $2::int AND e.status = 'ready' AND e.expires_at > now()"
     " WHERE e.id = $1::uuid",
     2},
};
const size_t export_stmts_count = sizeof export_stmts / sizeof *export_stmts;

/* A canonical UUID (what exports.id holds), so that a malformed id is a 400, not a database
 * error. */
static bool is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    }
    return true;
}

/* The first row's first column as the admin answer; 000003 "no export <what>" without a row. */
static void answer_doc(svcrt_worker_t *w, svc_call_t *call, const char *stmt, int n,
                       const char *const *p, const char *what)
{
    PGresult *r = svcrt_admin_query(w, call, stmt, n, p);
    if (!r)
        return;
    if (PQntuples(r) == 0)
        svc_call_result(call, RC_NO_INSTANCE, "no export %s", what);
    else
        svcadmin_reply_text(call, PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* An optional filter: absent/empty is NULL; otherwise printable text of at most FILTER_MAX. */
static bool filter_arg(svc_call_t *call, const Kooisv__AdminRequest *req, const char *name,
                       const char **out)
{
    const char *v = svcadmin_arg(req, name);
    *out = *v ? v : NULL;
    if (*out && !svcrt_text_ok(*out, FILTER_MAX, true)) {
        svc_call_result(call, RC_INVALID, "%s: at most %d printable characters", name, FILTER_MAX);
        return false;
    }
    return true;
}

static void export_request(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const Kooisv__Envelope *env = svc_call_request(call);
    export_kind_t kind;
    export_format_t format = EXPORT_CSV;
    const char *fmt = svcadmin_arg(req, "format");
    int64_t from_ms, to_ms;
    if (!exportfmt_kind_parse(svcadmin_arg(req, "kind"), &kind)) {
        svc_call_result(call, RC_INVALID, "kind: bill or detail");
        return;
    }
    if (*fmt && !exportfmt_format_parse(fmt, &format)) {
        svc_call_result(call, RC_INVALID, "format: csv or json");
        return;
    }
    if (!time_parse_any(svcadmin_arg(req, "from"), &from_ms)) {
        svc_call_result(
            call, RC_INVALID,
            "from: required, ISO-8601 (2026-11-01 or 2026-11-01T00:00:00Z) or epoch ms");
        return;
    }
    if (!time_parse_any(svcadmin_arg(req, "to"), &to_ms)) {
        svc_call_result(call, RC_INVALID,
                        "to: required, ISO-8601 (2026-12-01 or 2026-12-01T00:00:00Z) or epoch ms");
        return;
    }
    if (to_ms <= from_ms) {
        svc_call_result(call, RC_INVALID, "to must be after from (the range is [from, to))");
        return;
    }
    if (to_ms - from_ms > (int64_t)EXPORT_RANGE_MAX_DAYS * 86400000) {
        svc_call_result(call, RC_INVALID, "the range is at most %d days", EXPORT_RANGE_MAX_DAYS);
        return;
    }
    const char *tenant, *instance, *product;
    if (!filter_arg(call, req, "tenant", &tenant) ||
        !filter_arg(call, req, "instance", &instance) ||
        !filter_arg(call, req, "product", &product))
        return;
    char from[24], to[24];
    snprintf(from, sizeof from, "%lld", (long long)from_ms);
    snprintf(to, sizeof to, "%lld", (long long)to_ms);
    const char *who = env->caller && env->caller->id && *env->caller->id ? env->caller->id : "-";
    const char *p[] = {exportfmt_kind_name(kind),
                       exportfmt_format_name(format),
                       from,
                       to,
                       tenant,
                       instance,
                       product,
                       who,
                       svc_call_rid(call)};
    PGresult *r = pg_session_exec(w->db, svc_call_rid(call), "export_insert", 9, p, NULL);
    if (!r) {
        svc_call_result(call, RC_INTERNAL, "database error");
        return;
    }
    svcadmin_reply_text(call, PQgetvalue(r, 0, 0));
    PQclear(r);
}

static void export_chunk(svcrt_worker_t *w, svc_call_t *call, const char *id, const char *seq)
{
    const char *p[] = {id, seq};
    PGresult *r = svcrt_admin_query(w, call, "export_chunk", 2, p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        svc_call_result(call, RC_NO_INSTANCE, "no export %s", id);
        PQclear(r);
        return;
    }
    svcadmin_reply_text(call, PQgetvalue(r, 0, 0));
    if (!PQgetisnull(r, 0, 1)) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &len);
        if (!raw) {
            svc_call_result(call, RC_INTERNAL, "cannot decode chunk %s of export %s", seq, id);
            PQclear(r);
            return;
        }
        Kooisv__AdminResult *res = svc_call_reply(call)->admin;
        res->data.data = svc_call_alloc(call, len ? len : 1);
        memcpy(res->data.data, raw, len);
        res->data.len = len;
        PQfreemem(raw);
    }
    PQclear(r);
}

bool export_admin(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req)
{
    const char *action = req->action ? req->action : "";
    if (strncmp(action, "export.", 7) != 0)
        return false;
    const char *id = svcadmin_arg(req, "id");
    int64_t v;
    if (strcmp(action, "export.request") == 0) {
        export_request(w, call, req);
    } else if (strcmp(action, "export.list") == 0) {
        char lim[16];
        if (!svcadmin_limit(call, req, LIST_DEFAULT, LIST_MAX, lim))
            return true;
        const char *p[] = {lim};
        answer_doc(w, call, "export_list", 1, p, "");
    } else if (!is_uuid(id)) {
        svc_call_result(call, RC_INVALID, "id: an export id (UUID) is required");
    } else if (strcmp(action, "export.get") == 0) {
        const char *p[] = {id};
        answer_doc(w, call, "export_get", 1, p, id);
    } else if (strcmp(action, "export.chunk") == 0) {
        const char *seq = svcadmin_arg(req, "seq");
        if (!svcadmin_count(seq, 0, 100000000, &v)) {
            svc_call_result(call, RC_INVALID, "seq: a chunk number");
            return true;
        }
        export_chunk(w, call, id, seq);
    } else {
        svc_call_result(call, RC_INVALID,
                        "unknown action; exports: export.request, export.get, export.list, "
                        "export.chunk");
    }
    return true;
}
