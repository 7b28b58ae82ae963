#include "adminexport.h"
#include "resultcode.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "admincall.h"
#include "adminsvc.h"
#include "resref.h"

static const char *const no_params[] = {NULL};

static const char *prepare_download(admincall_t *c)
{
    resref_add(&c->res, &c->n_res, "export", c->seg[0]);
    c->chunk_seq = 0;
    c->chunk_count = -1;
    return NULL;
}

static void on_chunk(Kooisv__Reply *reply, void *arg);

static void chunk_request(admincall_t *c)
{
    char rid[64], seq[24];
    snprintf(rid, sizeof rid, "%s/%d", c->rid, ++c->subcalls);
    snprintf(seq, sizeof seq, "%lld", (long long)c->chunk_seq);
    const char *keys[] = {"id", "seq"};
    const char *values[] = {c->seg[0], seq};
    if (adminsvc_request(c, SVC_BILLING, rid, "export.chunk", keys, values, 2, on_chunk, c) != 0)
        admincall_finish_error(c, 503, RC_INTERNAL, "the billing service is not configured");
}

static void on_chunk_written(admincall_t *c)
{
    if (c->chunk_seq < c->chunk_count) {
        chunk_request(c);
        return;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "%lld chunks downloaded", (long long)c->chunk_count);
    admincall_finish(c, 200, RC_OK, msg, NULL, NULL, NULL);
}

/* Refuse the download: the export is not (or no longer) a file to give. */
static void refuse(admincall_t *c, json_t *doc)
{
    const char *status = json_string_value(json_object_get(doc, "status"));
    const char *id = c->seg[0];
    if (!status)
        admincall_finish_error(c, 502, RC_INTERNAL, "the billing service answered no status");
    else if (strcmp(status, "expired") == 0)
        admincall_finish_error(c, 410, RC_INVALID,
                               "export %s expired at %s: files are kept 3 days; request a new "
                               "export",
                               id, json_string_value(json_object_get(doc, "expires_at")));
    else if (strcmp(status, "failed") == 0)
        admincall_finish_error(c, 409, RC_INVALID, "export %s failed: %s", id,
                               json_string_value(json_object_get(doc, "error")));
    else if (strcmp(status, "ready") == 0)
        admincall_finish_error(c, 502, RC_INTERNAL, "export %s: chunk %lld is missing", id,
                               (long long)c->chunk_seq);
    else
        admincall_finish_error(c, 409, RC_BUSY, "export %s is not ready yet (status %s)", id,
                               status);
}

static void on_chunk(Kooisv__Reply *reply, void *arg)
{
    admincall_t *c = arg;
    if (!admincall_expect(c, reply, KOOISV__REPLY__RESULT_ADMIN, "the billing service"))
        return;
    json_error_t err;
    json_t *doc = json_loads(reply->admin->json, 0, &err);
    const ProtobufCBinaryData *data = &reply->admin->data;
    bool has_data = json_is_object(doc) && data->len > 0 &&
                    strcmp(json_string_value(json_object_get(doc, "status")) ?: "", "ready") == 0;
    if (!has_data) {
        refuse(c, doc);
        json_decref(doc);
        kooisv__reply__free_unpacked(reply, NULL);
        return;
    }
    if (!c->streaming) {
        c->chunk_count = json_integer_value(json_object_get(doc, "chunks"));
        const char *kind = json_string_value(json_object_get(doc, "kind"));
        const char *format = json_string_value(json_object_get(doc, "format"));
        const char *sha = json_string_value(json_object_get(doc, "sha256"));
        bool csv = format && strcmp(format, "csv") == 0;
        char disposition[160];
        snprintf(disposition, sizeof disposition, "attachment; filename=\"kooisv-%s-%.36s.%s\"",
                 kind && strcmp(kind, "bill") == 0 ? "bill" : "detail", c->seg[0],
                 csv ? "csv" : "json");
        if (sha && c->req)
            evhttp_add_header(evhttp_request_get_output_headers(c->req), "X-Content-SHA256", sha);
        admincall_stream_start(
            c, csv ? "text/csv; charset=utf-8" : "application/json; charset=utf-8", disposition);
    }
    json_decref(doc);
    if (!c->out)
        c->out = evbuffer_new();
    evbuffer_add(c->out, data->data, data->len);
    kooisv__reply__free_unpacked(reply, NULL);
    c->chunk_seq++;
    admincall_stream_write(c, c->out, on_chunk_written);
}

static void run_download(admincall_t *c)
{
    chunk_request(c);
}

/* clang-format off */
static const adminroute_t routes[] = {
    {EVHTTP_REQ_GET, "/v1/billing/exports/*/download", "export.download", ROLE_OPERATOR,
     no_params, prepare_download, run_download, SVC_BILLING, {0}, {0}},
};
/* clang-format on */

const adminroute_t *adminexport_routes(size_t *n)
{
    *n = sizeof routes / sizeof *routes;
    return routes;
}
