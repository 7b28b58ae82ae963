/* kooisvctl: the operators' command line over the gateway's admin API (gateway/admin.h).
 *
 *   kooisvctl [--env-file PATH] <noun> <verb> [options]     (kooisvctl --help for the list)
 *
 * `kooisvctl market ...` is the marketplace client (market.h), not an admin API call.
 * Settings come from the environment, or from --env-file PATH (KEY=VALUE lines, e.g. the local
 * runner's client env file; its values win over the environment): KOOISV_ADMIN_URL,
 * KOOISV_OPERATOR_TOKEN or KOOISV_OPERATOR_TOKEN_FILE, KOOISV_CA_FILE. The token is sent as a
 * bearer token and never printed. Exit status: 0 success, 1 the call failed (or the audit chain
 * is broken), 2 usage. */
#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctlenv.h"
#include "httpc.h"
#include "licensesig.h"
#include "market.h"
#include "timeutil.h"
#include "xmalloc.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define FOLLOW_WAIT_S 25

/* ================================================================ HTTP */

typedef struct {
    char *buf;
    size_t len;
} strbuf_t;

static void sb_add(strbuf_t *b, const char *s)
{
    size_t n = strlen(s);
    b->buf = xrealloc(b->buf, b->len + n + 1);
    memcpy(b->buf + b->len, s, n + 1);
    b->len += n;
}

/* Append "&name=value" (URL-encoded; "?" for the first). */
static void add_param(strbuf_t *url, const char *name, const char *value)
{
    if (!value)
        return;
    sb_add(url, strchr(url->buf, '?') ? "&" : "?");
    sb_add(url, name);
    sb_add(url, "=");
    char *enc = evhttp_uriencode(value, -1, 0);
    sb_add(url, enc);
    free(enc);
}

/* Append "/" + the URL-encoded path segment. */
static void add_segment(strbuf_t *url, const char *seg)
{
    char *enc = evhttp_uriencode(seg, -1, 0);
    sb_add(url, "/");
    sb_add(url, enc);
    free(enc);
}

static strbuf_t url_start(const char *path)
{
    strbuf_t url = {0};
    const char *base = ctlenv_get("KOOISV_ADMIN_URL");
    sb_add(&url, base ? base : "https://127.0.0.1:8444");
    while (url.len > 0 && url.buf[url.len - 1] == '/')
        url.buf[--url.len] = '\0';
    sb_add(&url, path);
    return url;
}

/* One admin call; returns the HTTP status (0 when no answer; reason on stderr). A 2xx body goes
 * to sink as it arrives when sink is not NULL. */
static int admin_call_to(const char *method, const char *url, const char *body, int timeout_ms,
                         FILE *sink, httpc_response_t *out)
{
    memset(out, 0, sizeof *out);
    char *token = ctlenv_secret("KOOISV_OPERATOR_TOKEN");
    if (!token) {
        fprintf(stderr, "kooisvctl: no operator token: set KOOISV_OPERATOR_TOKEN or "
                        "KOOISV_OPERATOR_TOKEN_FILE (or use --env-file)\n");
        return 0;
    }
    char *auth = xasprintf("Authorization: Bearer %s", token);
    const char *headers[] = {auth, "Accept: application/json",
                             body ? "Content-Type: application/json" : NULL, NULL};
    httpc_options_t opt = {.ca_file = ctlenv_get("KOOISV_CA_FILE"),
                           .verify_peer = 1,
                           .timeout_ms = timeout_ms,
                           .body_sink = sink};
    int rc = httpc_request(method, url, headers, body, body ? strlen(body) : 0, &opt, out);
    xfree_secret(auth, strlen(auth));
    xfree_secret(token, strlen(token));
    if (rc != 0 || out->status == 0) {
        fprintf(stderr, "kooisvctl: %s: %s\n", url, out->error[0] ? out->error : "no answer");
        return 0;
    }
    return out->status;
}

static int admin_call(const char *method, const char *url, const char *body, int timeout_ms,
                      httpc_response_t *out)
{
    return admin_call_to(method, url, body, timeout_ms, NULL, out);
}

/* Report a failed answer on stderr: its JSON error, request id and status. */
static int report_failure(httpc_response_t *r)
{
    json_error_t err;
    json_t *doc = r->body ? json_loadb(r->body, r->body_len, 0, &err) : NULL;
    const char *msg = json_string_value(json_object_get(doc, "error"));
    const char *rid = httpc_header(r, "X-Request-Id");
    fprintf(stderr, "kooisvctl: HTTP %d: %s%s%s%s\n", r->status, msg ? msg : "error",
            rid ? " (request " : "", rid ? rid : "", rid ? ")" : "");
    json_decref(doc);
    return EXIT_FAILED;
}

static json_t *body_json(const httpc_response_t *r)
{
    json_error_t err;
    json_t *doc = json_loadb(r->body, r->body_len, 0, &err);
    if (!doc)
        fprintf(stderr, "kooisvctl: the answer is not JSON: %s\n", err.text);
    return doc;
}

static void print_json(const json_t *doc, size_t flags)
{
    char *text = json_dumps(doc, flags);
    printf("%s\n", text);
    free(text);
}

/* One admin call on url (freed here): 0 with the 200 answer in *r (the caller frees it), or
 * the exit status of a failure already reported on stderr. */
static int admin_call_ok(const char *method, strbuf_t *url, const char *body, int timeout_ms,
                         httpc_response_t *r)
{
    int status = admin_call(method, url->buf, body, timeout_ms, r);
    free(url->buf);
    *url = (strbuf_t){0};
    if (status == 200)
        return 0;
    int rc = status ? report_failure(r) : EXIT_FAILED;
    httpc_response_free(r);
    return rc;
}

/* One admin call on url (freed here) answered with JSON: the document (caller owns it), or
 * NULL with *rc the exit status of a failure already reported on stderr. */
static json_t *admin_call_json(const char *method, strbuf_t *url, const char *body, int timeout_ms,
                               int *rc)
{
    httpc_response_t r;
    if ((*rc = admin_call_ok(method, url, body, timeout_ms, &r)) != 0)
        return NULL;
    json_t *doc = body_json(&r);
    httpc_response_free(&r);
    if (!doc)
        *rc = EXIT_FAILED;
    return doc;
}

/* ================================================================ options */

typedef struct {
    const char *flag;  /* "--from" */
    const char *param; /* query parameter it sets, or NULL for a local switch */
    bool has_arg;
    const char *help;
} opt_t;

typedef struct {
    const char *values[16]; /* by option index */
    bool set[16];
    const char *pos[2];
    int npos;
} args_t;

typedef struct cmd {
    const char *noun, *verb;
    const char *usage; /* positional part, e.g. "ID" */
    int npos;          /* positional arguments; -N: up to N, the command checks them */
    const char *summary;
    const opt_t *opts;
    int (*run)(const struct cmd *cmd, args_t *a);
    const char *method; /* generic commands */
    const char *path;   /* with %s for the positional arguments, in order */
} cmd_t;

static int opt_index(const cmd_t *c, const char *flag)
{
    for (int i = 0; c->opts && c->opts[i].flag; i++)
        if (strcmp(c->opts[i].flag, flag) == 0)
            return i;
    return -1;
}

static const char *opt_value(const cmd_t *c, const args_t *a, const char *flag)
{
    int i = opt_index(c, flag);
    return i >= 0 && a->set[i] ? (a->values[i] ? a->values[i] : "") : NULL;
}

static void cmd_help(const cmd_t *c, FILE *f)
{
    fprintf(f, "usage: kooisvctl %s %s%s%s [options]\n\n%s\n", c->noun, c->verb,
            c->usage ? " " : "", c->usage ? c->usage : "", c->summary);
    if (c->opts && c->opts[0].flag) {
        fprintf(f, "\noptions:\n");
        for (int i = 0; c->opts[i].flag; i++)
            fprintf(f, "  %-14s %s\n", c->opts[i].flag, c->opts[i].help);
    }
}

/* ================================================================ audit output */

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void print_entry_header(void)
{
    printf("%-8s %-24s %-10s %-22s %-30s %-16s %-7s %s\n", "SEQ", "TIME (UTC)", "CALLER", "EVENT",
           "RESOURCES", "SOURCE", "RESULT", "MS");
}

static void print_entry(json_t *e)
{
    char caller[64], resources[256] = "";
    json_t *c = json_object_get(e, "caller");
    snprintf(caller, sizeof caller, "%s:%s", str(c, "kind"), str(c, "id"));
    size_t i;
    json_t *r;
    size_t off = 0;
    json_array_foreach(json_object_get(e, "resources"), i, r)
    {
        int n = snprintf(resources + off, sizeof resources - off, "%s%s:%s", i ? "," : "",
                         str(r, "kind"), str(r, "id"));
        if (n < 0 || (size_t)n >= sizeof resources - off)
            break;
        off += (size_t)n;
    }
    json_t *o = json_object_get(e, "outcome");
    char result[32] = "pending", ms[32] = "";
    if (json_is_object(o)) {
        snprintf(result, sizeof result, "%s", str(o, "result_code"));
        snprintf(ms, sizeof ms, "%.1f",
                 (double)json_integer_value(json_object_get(o, "latency_us")) / 1000.0);
    }
    const char *reject = str(e, "reject_reason");
    printf("%-8lld %-24s %-10s %-22s %-30s %-16s %-7s %s%s%s\n",
           (long long)json_integer_value(json_object_get(e, "seq")), str(e, "time"), caller,
           str(e, "event"), *resources ? resources : "-", str(e, "source"), result, ms,
           *reject ? "  rejected: " : "", reject);
}

static const opt_t filter_opts[] = {
    {"--from", "from", true, "from this time (ISO-8601 or epoch ms), inclusive"},
    {"--to", "to", true, "up to this time, exclusive"},
    {"--event", "event", true, "event type (trailing * = prefix, e.g. admin.*)"},
    {"--resource", "resource", true, "resource id (instance, tenant, app, ...)"},
    {"--caller", "caller", true, "caller id (key id or operator name)"},
    {"--source", "source", true, "source address (trailing * = prefix)"},
    {"--result", "result", true, "result code, e.g. 000001"},
    {"--request-id", "request_id", true, "one request"},
    {"--limit", "limit", true, "entries per page, 1..1000"},
    {"--before", "before", true, "page cursor: entries older than this seq"},
    {"--csv", NULL, false, "print CSV"},
    {"--json", NULL, false, "print the JSON answer"},
    {NULL, NULL, false, NULL},
};

static void add_opt_params(const cmd_t *c, const args_t *a, strbuf_t *url)
{
    for (int i = 0; c->opts && c->opts[i].flag; i++)
        if (c->opts[i].param && a->set[i])
            add_param(url, c->opts[i].param, a->values[i]);
}

static int run_audit_query(const cmd_t *c, args_t *a)
{
    strbuf_t url = url_start("/v1/audit");
    add_opt_params(c, a, &url);
    bool csv = opt_value(c, a, "--csv") != NULL;
    if (csv)
        add_param(&url, "format", "csv");
    httpc_response_t r;
    int rc = admin_call_ok("GET", &url, NULL, 15000, &r);
    if (rc != 0)
        return rc;
    if (csv || opt_value(c, a, "--json")) {
        fwrite(r.body, 1, r.body_len, stdout);
    } else {
        json_t *doc = body_json(&r);
        if (!doc) {
            rc = EXIT_FAILED;
        } else {
            print_entry_header();
            size_t i;
            json_t *e;
            json_array_foreach(json_object_get(doc, "entries"), i, e) print_entry(e);
            json_t *next = json_object_get(doc, "next_before");
            if (json_is_integer(next))
                printf("(more: --before %lld)\n", (long long)json_integer_value(next));
            json_decref(doc);
        }
    }
    httpc_response_free(&r);
    return rc;
}

/* The filters tail passes on, first page and follow alike. */
static void add_tail_filters(const cmd_t *c, const args_t *a, strbuf_t *url)
{
    static const char *const filters[] = {"--event", "--resource", "--caller", "--source",
                                          "--result"};
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
        add_param(url, c->opts[opt_index(c, filters[i])].param, opt_value(c, a, filters[i]));
}

static int run_audit_tail(const cmd_t *c, args_t *a)
{
    strbuf_t url = url_start("/v1/audit");
    const char *limit = opt_value(c, a, "--limit");
    add_param(&url, "limit", limit ? limit : "20");
    add_tail_filters(c, a, &url);
    int rc;
    json_t *doc = admin_call_json("GET", &url, NULL, 15000, &rc);
    if (!doc)
        return rc;
    print_entry_header();
    json_t *entries = json_object_get(doc, "entries");
    for (size_t i = json_array_size(entries); i > 0; i--) /* oldest first, like tail */
        print_entry(json_array_get(entries, i - 1));
    json_int_t cursor = json_integer_value(json_object_get(doc, "head_seq"));
    json_decref(doc);
    fflush(stdout);
    if (!opt_value(c, a, "--follow"))
        return 0;
    for (;;) {
        url = url_start("/v1/audit/follow");
        char after[24], wait[8];
        snprintf(after, sizeof after, "%lld", (long long)cursor);
        snprintf(wait, sizeof wait, "%d", FOLLOW_WAIT_S);
        add_param(&url, "after", after);
        add_param(&url, "wait", wait);
        add_tail_filters(c, a, &url);
        if (!(doc = admin_call_json("GET", &url, NULL, (FOLLOW_WAIT_S + 15) * 1000, &rc)))
            return rc;
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(doc, "entries"), i, e) print_entry(e);
        fflush(stdout);
        json_int_t next = json_integer_value(json_object_get(doc, "next_after"));
        if (next > cursor)
            cursor = next;
        json_decref(doc);
    }
}

/* Verify from `from` (NULL: the genesis) against a kept head (NULL: none), following next_seq.
 * On success the verified head goes to reached (SEQ:HASH, when not NULL). */
static int audit_verify_walk(const cmd_t *c, args_t *a, const char *from, const char *head,
                             char reached[90])
{
    long long checked = 0;
    char next[24];
    snprintf(next, sizeof next, "%s", from ? from : "1");
    for (;;) {
        strbuf_t url = url_start("/v1/audit/verify");
        add_param(&url, "from_seq", next);
        if (head)
            add_param(&url, "head", head);
        int rc;
        json_t *doc = admin_call_json("POST", &url, "{}", 70000, &rc);
        if (!doc)
            return rc;
        checked += json_integer_value(json_object_get(doc, "checked"));
        bool ok = json_is_true(json_object_get(doc, "ok"));
        if (opt_value(c, a, "--json"))
            print_json(doc, JSON_INDENT(2));
        if (!ok) {
            printf("BROKEN at seq %lld: %s: %s\n",
                   (long long)json_integer_value(json_object_get(doc, "first_bad_seq")),
                   str(doc, "problem"), str(doc, "detail"));
            json_decref(doc);
            return EXIT_FAILED;
        }
        if (json_is_true(json_object_get(doc, "complete"))) {
            printf("OK: %lld entries verified; head seq %lld hash %s\n", checked,
                   (long long)json_integer_value(json_object_get(doc, "head_seq")),
                   str(doc, "head_hash"));
            if (reached)
                snprintf(reached, 90, "%lld:%s",
                         (long long)json_integer_value(json_object_get(doc, "head_seq")),
                         str(doc, "head_hash"));
            json_decref(doc);
            return 0;
        }
        snprintf(next, sizeof next, "%lld",
                 (long long)json_integer_value(json_object_get(doc, "next_seq")));
        json_decref(doc);
    }
}

/* --checkpoint FILE: verify only what was appended since the head FILE holds (SEQ:HASH, written
 * by the last successful run), checking that entry still has that hash; then move FILE on to the
 * new head. Without FILE (the first run) the whole chain is walked. */
static int audit_verify_checkpoint(const cmd_t *c, args_t *a, const char *file)
{
    char *kept = access(file, F_OK) == 0 ? config_read_file(file, NULL) : NULL;
    if (access(file, F_OK) == 0 && !kept) {
        fprintf(stderr, "kooisvctl: cannot read %s\n", file);
        return EXIT_USAGE;
    }
    char from[24] = "1", reached[90] = "";
    if (kept) {
        kept[strcspn(kept, "\r\n")] = '\0';
        char *end;
        long long seq = strtoll(kept, &end, 10);
        if (seq < 1 || *end != ':') {
            fprintf(stderr, "kooisvctl: %s holds no SEQ:HASH\n", file);
            free(kept);
            return EXIT_USAGE;
        }
        snprintf(from, sizeof from, "%lld", seq + 1);
    }
    int rc = audit_verify_walk(c, a, from, kept, reached);
    free(kept);
    /* An empty chain has no head to keep yet. */
    if (rc != 0 || !*reached || reached[strlen(reached) - 1] == ':')
        return rc;
    char *tmp = xasprintf("%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fprintf(f, "%s\n", reached) > 0;
    ok = f && fclose(f) == 0 && ok && rename(tmp, file) == 0;
    if (!ok) {
        fprintf(stderr, "kooisvctl: cannot write %s\n", file);
        unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : EXIT_FAILED;
}

static int run_audit_verify(const cmd_t *c, args_t *a)
{
    const char *from = opt_value(c, a, "--from-seq");
    const char *head = opt_value(c, a, "--head"), *head_file = opt_value(c, a, "--head-file");
    const char *checkpoint = opt_value(c, a, "--checkpoint");
    char *head_text = NULL;
    if (head && head_file) {
        fprintf(stderr, "kooisvctl: --head and --head-file exclude each other\n");
        return EXIT_USAGE;
    }
    if (checkpoint && (from || head || head_file)) {
        fprintf(stderr, "kooisvctl: --checkpoint excludes --from-seq, --head and --head-file\n");
        return EXIT_USAGE;
    }
    if (checkpoint)
        return audit_verify_checkpoint(c, a, checkpoint);
    if (head_file) {
        head_text = config_read_file(head_file, NULL);
        if (!head_text) {
            fprintf(stderr, "kooisvctl: cannot read %s\n", head_file);
            return EXIT_USAGE;
        }
        head_text[strcspn(head_text, "\r\n")] = '\0';
        head = head_text;
    }
    int rc = audit_verify_walk(c, a, from, head, NULL);
    free(head_text);
    return rc;
}

static int run_audit_export(const cmd_t *c, args_t *a)
{
    const char *from = opt_value(c, a, "--from"), *to = opt_value(c, a, "--to");
    if (!from || !to) {
        fprintf(stderr, "kooisvctl: audit export needs --from and --to\n");
        return EXIT_USAGE;
    }
    strbuf_t url = url_start("/v1/audit/export");
    add_param(&url, "from", from);
    add_param(&url, "to", to);
    add_param(&url, "format", opt_value(c, a, "--json") ? "json" : "csv");
    httpc_response_t r;
    int rc = admin_call_ok("GET", &url, NULL, 300000, &r);
    if (rc != 0)
        return rc;
    const char *path = opt_value(c, a, "-o");
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (!f || fwrite(r.body, 1, r.body_len, f) != r.body_len || (path && fclose(f) != 0)) {
        fprintf(stderr, "kooisvctl: cannot write %s\n", path ? path : "stdout");
        rc = EXIT_FAILED;
    }
    httpc_response_free(&r);
    return rc;
}

/* Service look-ups and actions: the path with the positional arguments, options as query
 * parameters, the answer's JSON pretty-printed. */
static int run_generic(const cmd_t *c, args_t *a)
{
    strbuf_t url = url_start("");
    const char *p = c->path;
    int next_pos = 0;
    while (*p) {
        const char *slash = strchr(p + 1, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 3 && strncmp(p, "/%s", 3) == 0) {
            add_segment(&url, a->pos[next_pos++]);
        } else {
            char *part = xstrndup(p, n);
            sb_add(&url, part);
            free(part);
        }
        p += n;
    }
    add_opt_params(c, a, &url);
    int rc;
    json_t *doc =
        admin_call_json(c->method, &url, strcmp(c->method, "POST") == 0 ? "{}" : NULL, 15000, &rc);
    if (!doc)
        return rc;
    print_json(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(doc);
    return 0;
}

/* ================================================================ billing */

static long long num(const json_t *o, const char *name)
{
    return (long long)json_integer_value(json_object_get(o, name));
}

/* One line of billing status: a bucket's (or the overall) usage rows by push state. */
static void print_usage_counts(const char *label, const char *granularity, json_t *o)
{
    printf("%-21s %-4s %9lld %8lld %8lld %8lld %8lld %7lld %6lld %7lld %14s %8lld\n", label,
           granularity, num(o, "received"), num(o, "excluded"), num(o, "unsealed"),
           num(o, "pushed"), num(o, "accepted"), num(o, "refused"), num(o, "dead"),
           num(o, "waiting"), str(o, "acceptedQuantity"), num(o, "oldestUnacceptedAgeSeconds"));
}

/* billing status: a table of usage rows per hour (or day) and overall; --json the answer. */
static int run_billing_status(const cmd_t *c, args_t *a)
{
    strbuf_t url = url_start("/v1/billing/status");
    add_opt_params(c, a, &url);
    int rc;
    json_t *doc = admin_call_json("GET", &url, NULL, 15000, &rc);
    if (!doc)
        return rc;
    if (opt_value(c, a, "--json")) {
        print_json(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(doc);
        return 0;
    }
    printf("%-21s %-4s %9s %8s %8s %8s %8s %7s %6s %7s %14s %8s\n", "BUCKET (UTC)", "PER",
           "RECEIVED", "EXCLUDED", "UNSEALED", "PUSHED", "ACCEPTED", "REFUSED", "DEAD", "WAITING",
           "ACCEPTED QTY", "OLDEST S");
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(doc, "hours"), i, h)
        print_usage_counts(str(h, "bucketStart"), str(h, "granularity"), h);
    json_t *all = json_object_get(doc, "overall");
    print_usage_counts("overall", "", all);
    json_t *recs = json_object_get(all, "pushRecords");
    printf("push records: %lld pending, %lld accepted, %lld refused, %lld dead (billing's clock: "
           "%s)\n",
           num(recs, "pending"), num(recs, "accepted"), num(recs, "refused"), num(recs, "dead"),
           str(doc, "now"));
    json_decref(doc);
    return 0;
}

/* ================================================================ billing exports */

#define EXPORT_WAIT_S 600

/* Print an export document; with --wait, first poll until it is ready or failed (exit 1 when
 * it failed). Takes doc. */
static int export_show(json_t *doc, bool wait)
{
    int rc = 0;
    while (wait && doc) {
        const char *status = json_string_value(json_object_get(doc, "status"));
        if (!status || (strcmp(status, "queued") != 0 && strcmp(status, "running") != 0))
            break;
        static int waited_ms;
        if (waited_ms > EXPORT_WAIT_S * 1000) {
            fprintf(stderr, "kooisvctl: export still %s after %d s\n", status, EXPORT_WAIT_S);
            rc = EXIT_FAILED;
            break;
        }
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
        waited_ms += 250;
        strbuf_t url = url_start("/v1/billing/exports");
        add_segment(&url, str(doc, "id"));
        json_decref(doc);
        if (!(doc = admin_call_json("GET", &url, NULL, 15000, &rc)))
            return rc;
    }
    print_json(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (rc == 0 && wait && strcmp(str(doc, "status"), "failed") == 0)
        rc = EXIT_FAILED;
    json_decref(doc);
    return rc;
}

/* billing export bill|detail (request one) or billing export status ID. */
static int run_billing_export(const cmd_t *c, args_t *a)
{
    const char *what = a->pos[0];
    int rc;
    json_t *doc;
    if (strcmp(what, "status") == 0) {
        if (a->npos != 2) {
            fprintf(stderr, "kooisvctl: billing export status needs the export's ID\n");
            return EXIT_USAGE;
        }
        strbuf_t url = url_start("/v1/billing/exports");
        add_segment(&url, a->pos[1]);
        if (!(doc = admin_call_json("GET", &url, NULL, 15000, &rc)))
            return rc;
        return export_show(doc, opt_value(c, a, "--wait") != NULL);
    }
    if (a->npos != 1) {
        fprintf(stderr, "kooisvctl: billing export %s takes no ID\n", what);
        return EXIT_USAGE;
    }
    if (opt_value(c, a, "--csv") && opt_value(c, a, "--json")) {
        fprintf(stderr, "kooisvctl: --csv or --json, not both\n");
        return EXIT_USAGE;
    }
    /* The kind is checked by the service, like every other argument: one place decides. */
    strbuf_t url = url_start("/v1/billing/exports");
    add_param(&url, "kind", what);
    add_opt_params(c, a, &url);
    add_param(&url, "format", opt_value(c, a, "--json") ? "json" : "csv");
    if (!(doc = admin_call_json("POST", &url, "{}", 15000, &rc)))
        return rc;
    return export_show(doc, opt_value(c, a, "--wait") != NULL);
}

/* The file is written as it arrives (an export may be hundreds of MB); a failed or cut off
 * download leaves no file behind. */
static int run_billing_download(const cmd_t *c, args_t *a)
{
    strbuf_t url = url_start("/v1/billing/exports");
    add_segment(&url, a->pos[0]);
    sb_add(&url, "/download");
    const char *path = opt_value(c, a, "-o");
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (!f) {
        fprintf(stderr, "kooisvctl: cannot write %s\n", path);
        free(url.buf);
        return EXIT_FAILED;
    }
    httpc_response_t r;
    int status = admin_call_to("GET", url.buf, NULL, 600000, f, &r);
    free(url.buf);
    int rc = 0;
    if (status != 200)
        rc = status ? report_failure(&r) : EXIT_FAILED;
    if ((path ? fclose(f) : fflush(f)) != 0 && rc == 0) {
        fprintf(stderr, "kooisvctl: cannot write %s\n", path ? path : "stdout");
        rc = EXIT_FAILED;
    }
    if (rc != 0 && path)
        unlink(path);
    httpc_response_free(&r);
    return rc;
}

/* ================================================================ licenses */

/* The license public key document (GET /v1/license/pubkey): caller owns it, or NULL with *rc. */
static json_t *license_pubkey_fetch(int *rc)
{
    strbuf_t url = url_start("/v1/license/pubkey");
    json_t *doc = admin_call_json("GET", &url, NULL, 15000, rc);
    if (doc && !json_is_string(json_object_get(doc, "publicKey"))) {
        fprintf(stderr, "kooisvctl: the answer holds no publicKey\n");
        json_decref(doc);
        *rc = EXIT_FAILED;
        return NULL;
    }
    return doc;
}

static int run_license_pubkey(const cmd_t *c, args_t *a)
{
    int rc;
    json_t *doc = license_pubkey_fetch(&rc);
    if (!doc)
        return rc;
    if (a->set[opt_index(c, "--json")])
        print_json(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    else
        fputs(json_string_value(json_object_get(doc, "publicKey")), stdout);
    json_decref(doc);
    return 0;
}

/* The license text: the argument, or standard input for "-" (surrounding whitespace dropped). */
static char *license_text(const char *arg)
{
    if (strcmp(arg, "-") != 0)
        return xstrdup(arg);
    size_t cap = 4096, len = 0, got;
    char *buf = xmalloc(cap);
    while ((got = fread(buf + len, 1, cap - len - 1, stdin)) > 0)
        if ((len += got) == cap - 1)
            buf = xrealloc(buf, cap *= 2);
    buf[len] = '\0';
    while (len > 0 && strchr(" \t\r\n", buf[len - 1]))
        buf[--len] = '\0';
    size_t lead = strspn(buf, " \t\r\n");
    memmove(buf, buf + lead, len - lead + 1);
    return buf;
}

static int run_license_verify(const cmd_t *c, args_t *a)
{
    const char *file = opt_value(c, a, "--pubkey");
    char *pem = NULL;
    int rc = EXIT_FAILED;
    if (file) {
        if (!(pem = config_read_file(file, NULL))) {
            fprintf(stderr, "kooisvctl: cannot read %s\n", file);
            return EXIT_FAILED;
        }
    } else {
        json_t *doc = license_pubkey_fetch(&rc);
        if (!doc)
            return rc;
        pem = xstrdup(json_string_value(json_object_get(doc, "publicKey")));
        json_decref(doc);
    }
    char *license = license_text(a->pos[0]);
    json_t *payload = NULL;
    char why[256];
    if (licensesig_verify(pem, license, &payload, why, sizeof why) == 0) {
        print_json(payload, JSON_INDENT(2) | JSON_SORT_KEYS);
        fprintf(stderr, "kooisvctl: license valid\n");
        rc = 0;
    } else {
        fprintf(stderr, "kooisvctl: license invalid: %s\n", why);
        rc = EXIT_FAILED;
    }
    json_decref(payload);
    free(license);
    free(pem);
    return rc;
}

/* ================================================================ usage intake */

/* usage add FILE|-: the records (a JSON array, or {"records":[...]}) from the file or standard
 * input to POST /v1/usage (the meter role's route; admins may use it too). */
static int run_usage_add(const cmd_t *c, args_t *a)
{
    (void)c;
    char *text = strcmp(a->pos[0], "-") == 0 ? license_text("-")
                                             : config_read_file(a->pos[0], NULL);
    if (!text) {
        fprintf(stderr, "kooisvctl: cannot read %s\n", a->pos[0]);
        return EXIT_FAILED;
    }
    json_error_t err;
    json_t *doc = json_loads(text, 0, &err);
    free(text);
    if (json_is_array(doc))
        doc = json_pack("{s:o}", "records", doc);
    if (!json_is_array(json_object_get(doc, "records"))) {
        fprintf(stderr, "kooisvctl: expected a JSON array of records or {\"records\":[...]}\n");
        json_decref(doc);
        return EXIT_USAGE;
    }
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    strbuf_t url = url_start("/v1/usage");
    int rc;
    json_t *answer = admin_call_json("POST", &url, body, 30000, &rc);
    free(body);
    if (!answer)
        return rc;
    print_json(answer, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(answer);
    return 0;
}

/* ================================================================ commands */

static const opt_t tail_opts[] = {
    {"--follow", NULL, false, "keep printing new entries as they are recorded"},
    {"--limit", "limit", true, "entries shown first (default 20)"},
    {"--event", "event", true, "event type (trailing * = prefix)"},
    {"--resource", "resource", true, "resource id"},
    {"--caller", "caller", true, "caller id"},
    {"--source", "source", true, "source address"},
    {"--result", "result", true, "result code"},
    {NULL, NULL, false, NULL},
};
static const opt_t verify_opts[] = {
    {"--from-seq", NULL, true, "start at this seq (default 1: the whole chain)"},
    {"--head", NULL, true,
     "SEQ:HASH, a chain head kept outside the database: missing = truncated, other = rewritten"},
    {"--head-file", NULL, true, "read SEQ:HASH from this file (a copy of the audit head file)"},
    {"--checkpoint", NULL, true,
     "FILE: verify only what follows the head FILE holds (checking its hash), then move FILE to "
     "the new head (no FILE yet: the whole chain)"},
    {"--json", NULL, false, "also print each JSON answer"},
    {NULL, NULL, false, NULL},
};
static const opt_t export_opts[] = {
    {"--from", NULL, true, "from this time (ISO-8601 or epoch ms) [required]"},
    {"--to", NULL, true, "up to this time, exclusive [required]"},
    {"--csv", NULL, false, "CSV (the default)"},
    {"--json", NULL, false, "a JSON array instead of CSV"},
    {"-o", NULL, true, "write to this file instead of stdout"},
    {NULL, NULL, false, NULL},
};
static const opt_t list_opts[] = {
    {"--state", "state", true, "provisioning | active | frozen | released"},
    {"--limit", "limit", true, "instances per page"},
    {"--before", "before", true, "page cursor (nextBefore of the previous page)"},
    {NULL, NULL, false, NULL},
};
static const opt_t limit_opts[] = {
    {"--limit", "limit", true, "at most this many"},
    {NULL, NULL, false, NULL},
};
static const opt_t orgs_opts[] = {
    {"--instance", "instance", true, "instance id (empty for seller-console tests)"},
    {NULL, NULL, false, NULL},
};
static const opt_t users_opts[] = {
    {"--instance", "instance", true, "instance id"},
    {"--app", "app", true, "application id"},
    {"--limit", "limit", true, "users per page (1..10000, default 1000)"},
    {"--after", "after", true, "page cursor: the userName given as next by the previous page"},
    {NULL, NULL, false, NULL},
};
static const opt_t secret_opts[] = {
    {"--instance", "instance", true, "instance id"},
    {"--tenant", "tenant", true, "tenant id"},
    {NULL, NULL, false, NULL},
};
static const opt_t no_opts[] = {{NULL, NULL, false, NULL}};
static const opt_t billing_export_opts[] = {
    {"--from", "from", true, "from this time (ISO-8601 or epoch ms), inclusive [required]"},
    {"--to", "to", true, "up to this time, exclusive [required]"},
    {"--tenant", "tenant", true, "only this tenant"},
    {"--instance", "instance", true, "only this instance"},
    {"--product", "product", true, "only this product"},
    {"--csv", NULL, false, "CSV, RFC 4180 with a header row (the default)"},
    {"--json", NULL, false, "JSON: an array of objects"},
    {"--wait", NULL, false, "wait until the export is ready or failed, then print it"},
    {NULL, NULL, false, NULL},
};
static const opt_t billing_download_opts[] = {
    {"-o", NULL, true, "write to this file instead of stdout"},
    {NULL, NULL, false, NULL},
};
static const opt_t usage_failed_opts[] = {
    {"--limit", "limit", true, "at most this many (1..1000, default 100)"},
    {"--state", "state", true,
     "refused (the marketplace refused the record) | dead (kept failing)"},
    {NULL, NULL, false, NULL},
};
static const opt_t usage_redrive_opts[] = {
    {"--state", "state", true, "with ID all: only refused or only dead records"},
    {NULL, NULL, false, NULL},
};
static const opt_t billing_status_opts[] = {
    {"--from", "from", true, "first hour shown (default: 48 hours ago, billing's clock)"},
    {"--to", "to", true, "up to this time, exclusive (default: the next hour)"},
    {"--json", NULL, false, "the whole answer (with the Prometheus series) as JSON"},
    {NULL, NULL, false, NULL},
};
static const opt_t pubkey_opts[] = {
    {"--json", NULL, false, "the whole answer (algorithm, format, keyId, publicKey) as JSON"},
    {NULL, NULL, false, NULL},
};
static const opt_t license_verify_opts[] = {
    {"--pubkey", NULL, true, "PEM public key file (default: fetched from the admin API)"},
    {NULL, NULL, false, NULL},
};

static const cmd_t commands[] = {
    {"audit", "query", NULL, 0, "Audit entries, newest first (intent and outcome merged).",
     filter_opts, run_audit_query, NULL, NULL},
    {"audit", "tail", NULL, 0, "The latest audit entries, oldest first; --follow keeps going.",
     tail_opts, run_audit_tail, NULL, NULL},
    {"audit", "verify", NULL, 0,
     "Walk the hash chain; exit 1 and name the first modified, removed or inserted entry.",
     verify_opts, run_audit_verify, NULL, NULL},
    {"audit", "export", NULL, 0, "Every entry of a time range as CSV (or JSON).", export_opts,
     run_audit_export, NULL, NULL},
    {"instance", "get", "ID", 1, "One instance with its history, orders, jobs and licenses.",
     no_opts, run_generic, "GET", "/v1/instances/%s"},
    {"instance", "list", NULL, 0, "Instances, newest first.", list_opts, run_generic, "GET",
     "/v1/instances"},
    {"jobs", "failed", NULL, 0, "Provisioning jobs that failed or keep failing.", limit_opts,
     run_generic, "GET", "/v1/jobs/failed"},
    {"jobs", "redrive", "ID", 1, "Run a failed job again.", no_opts, run_generic, "POST",
     "/v1/jobs/%s/redrive"},
    {"tenant", "get", "TENANT", 1, "A tenant as the marketplace synced it, with its org count.",
     orgs_opts, run_generic, "GET", "/v1/tenants/%s"},
    {"tenant", "orgs", "TENANT", 1, "A tenant's organisation tree.", orgs_opts, run_generic, "GET",
     "/v1/tenants/%s/orgs"},
    {"tenant", "users", "TENANT", 1, "A tenant's application users and roles.", users_opts,
     run_generic, "GET", "/v1/tenants/%s/users"},
    {"app", "secret", "APP", 1, "An application's client secret (admin role only).", secret_opts,
     run_generic, "GET", "/v1/apps/%s/secret"},
    {"license", "pubkey", NULL, 0, "The PEM public key that verifies licenses (Ed25519).",
     pubkey_opts, run_license_pubkey, NULL, NULL},
    {"license", "verify", "LICENSE|-", 1,
     "Check a license's signature (- reads it from stdin); exit 1 when it does not hold.",
     license_verify_opts, run_license_verify, NULL, NULL},
    {"outbox", "failed", NULL, 0,
     "Undelivered webhook events of the order, tenant and app services.", limit_opts, run_generic,
     "GET", "/v1/outbox/failed"},
    {"outbox", "redrive", "SERVICE ID", 2,
     "Deliver a failed webhook event again (SERVICE: order, tenant or app).", no_opts, run_generic,
     "POST", "/v1/outbox/%s/%s/redrive"},
    {"usage", "add", "FILE|-", 1,
     "Report usage: a JSON array of records (or {\"records\":[...]}) from FILE or stdin "
     "(meter or admin token).",
     no_opts, run_usage_add, NULL, NULL},
    {"billing", "ping", NULL, 0, "The billing service and its database answer (with counts).",
     no_opts, run_generic, "GET", "/v1/billing/ping"},
    {"billing", "status", NULL, 0,
     "Usage per hour and overall: received, pushed, accepted, refused, waiting, dead letter.",
     billing_status_opts, run_billing_status, NULL, NULL},
    {"usage", "failed", NULL, 0,
     "Usage push records in the dead letter (refused or kept failing), with the last error.",
     usage_failed_opts, run_generic, "GET", "/v1/usage/failed"},
    {"usage", "redrive", "ID|all", 1,
     "Push a refused or dead usage record again (all: every one), same metering_sn.",
     usage_redrive_opts, run_generic, "POST", "/v1/usage/%s/redrive"},
    {"billing", "instance", "ID", 1, "An instance as billing knows it, with its ledger lines.",
     no_opts, run_generic, "GET", "/v1/billing/instances/%s"},
    {"billing", "export", "bill|detail | status ID", -2,
     "Ask for a bill or detail export of a time range (made asynchronously; prints its id), "
     "or show one export's status.",
     billing_export_opts, run_billing_export, NULL, NULL},
    {"billing", "exports", NULL, 0, "Recent exports with their status, newest first.", limit_opts,
     run_generic, "GET", "/v1/billing/exports"},
    {"billing", "download", "ID", 1, "Download a ready export's file (kept 3 days).",
     billing_download_opts, run_billing_download, NULL, NULL},
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

static void usage(FILE *f)
{
    fprintf(f, "usage: kooisvctl [--env-file PATH] <noun> <verb> [arguments] [options]\n"
               "       kooisvctl <noun> <verb> --help\n\n"
               "The operators' command line over the kooisv admin API.\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s %s%s%s", commands[i].noun, commands[i].verb,
                 commands[i].usage ? " " : "", commands[i].usage ? commands[i].usage : "");
        fprintf(f, "  %-26s %s\n", head, commands[i].summary);
    }
    market_usage_summary(f);
    fprintf(f,
            "\nsettings (environment, or --env-file PATH with KEY=VALUE lines that win):\n"
            "  KOOISV_ADMIN_URL            admin API base URL [default: https://127.0.0.1:8444]\n"
            "  KOOISV_OPERATOR_TOKEN       bearer token (or KOOISV_OPERATOR_TOKEN_FILE)\n"
            "  KOOISV_CA_FILE              CA bundle to verify the admin API's (and market's) "
            "certificate\n"
            "  KOOISV_URL, KOOISV_BASIC_KEY(_FILE), KOOISV_KIT_KEY(_FILE), "
            "KOOISV_RSA_PUBLIC_KEY_FILE\n"
            "                              market: production URL and keys (kooisvctl market "
            "--help)\n"
            "\nTimes are ISO-8601 (2026-11-28, 2026-11-28T10:00:00Z, ...+08:00) or epoch ms.\n"
            "Exit status: 0 success, 1 failure (or a broken audit chain), 2 usage.\n");
}

int main(int argc, char **argv)
{
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--env-file") == 0 && i + 1 < argc) {
            if (ctlenv_load(argv[i + 1]) != 0)
                return EXIT_USAGE;
            i += 2;
            continue;
        }
        fprintf(stderr, "kooisvctl: unknown option %s (try --help)\n", argv[i]);
        return EXIT_USAGE;
    }
    if (argc - i < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *noun = argv[i], *verb = argc - i >= 2 ? argv[i + 1] : NULL;
    if (strcmp(noun, "market") == 0)
        return market_main(argc - i - 1, argv + i + 1);
    const cmd_t *cmd = NULL;
    bool noun_known = false;
    for (size_t k = 0; k < N_COMMANDS; k++) {
        if (strcmp(commands[k].noun, noun) != 0)
            continue;
        noun_known = true;
        if (verb && strcmp(commands[k].verb, verb) == 0)
            cmd = &commands[k];
    }
    if (!cmd) {
        if (noun_known && (!verb || strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0)) {
            FILE *f = verb ? stdout : stderr;
            fprintf(f, "kooisvctl %s verbs:\n", noun);
            for (size_t k = 0; k < N_COMMANDS; k++)
                if (strcmp(commands[k].noun, noun) == 0)
                    fprintf(f, "  %-8s %s\n", commands[k].verb, commands[k].summary);
            return verb ? 0 : EXIT_USAGE;
        }
        fprintf(stderr, "kooisvctl: unknown command '%s%s%s' (try --help)\n", noun, verb ? " " : "",
                verb ? verb : "");
        return EXIT_USAGE;
    }
    args_t a = {0};
    for (i += 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cmd_help(cmd, stdout);
            return 0;
        }
        if (arg[0] == '-' && arg[1]) {
            int k = opt_index(cmd, arg);
            if (k < 0) {
                fprintf(stderr, "kooisvctl: %s %s: unknown option %s\n", cmd->noun, cmd->verb, arg);
                cmd_help(cmd, stderr);
                return EXIT_USAGE;
            }
            if (cmd->opts[k].has_arg) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "kooisvctl: %s needs a value\n", arg);
                    return EXIT_USAGE;
                }
                a.values[k] = argv[++i];
            }
            a.set[k] = true;
            continue;
        }
        if (a.npos >= (cmd->npos >= 0 ? cmd->npos : -cmd->npos)) {
            fprintf(stderr, "kooisvctl: %s %s: unexpected argument '%s'\n", cmd->noun, cmd->verb,
                    arg);
            return EXIT_USAGE;
        }
        a.pos[a.npos++] = arg;
    }
    if (cmd->npos >= 0 ? a.npos != cmd->npos : a.npos < 1) {
        fprintf(stderr, "kooisvctl: %s %s needs %s\n", cmd->noun, cmd->verb, cmd->usage);
        return EXIT_USAGE;
    }
    return cmd->run(cmd, &a);
}
