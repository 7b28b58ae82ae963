#include "console.h"
#include "resultcode.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "admincall.h"
#include "consoleassets.h"
#include "cryptoutil.h"
#include "log.h"
#include "randutil.h"
#include "timeutil.h"

#define SESSIONS_MAX 256 /* live sessions; a new one beyond replaces the oldest */
#define LOGIN_BODY_MAX 1024

/* Pages: their own scripts, styles and API only. JSON answers: nothing at all. */
#define PAGE_CSP                                                                                   \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "                    \
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
#define API_CSP "default-src 'none'; frame-ancestors 'none'"

typedef struct {
    char id[CONSOLE_SESSION_ID_LEN + 1]; /* "" = free slot */
    char csrf[CONSOLE_SESSION_ID_LEN + 1];
    uint8_t token_hash[32];
    int64_t expires_ms;
} session_t;

static struct {
    int lifetime_s;
    session_t sessions[SESSIONS_MAX];
} con;

void console_start(int lifetime_s)
{
    memset(&con, 0, sizeof con);
    con.lifetime_s = lifetime_s;
}

void console_stop(void)
{
    memset(&con, 0, sizeof con);
}

/* ================================================================ assets */

static void security_headers(struct evkeyvalq *h, const char *csp)
{
    evhttp_add_header(h, "Content-Security-Policy", csp);
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Cross-Origin-Opener-Policy", "same-origin");
}

void console_api_headers(struct evkeyvalq *h)
{
    security_headers(h, API_CSP);
}

static void redirect(struct evhttp_request *req, const char *to)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Location", to);
    security_headers(h, API_CSP);
    evhttp_send_reply(req, 302, "Found", NULL);
}

bool console_serve_asset(struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD)
        return false;
    if (strcmp(path, "/") == 0 || strcmp(path, "/console") == 0) {
        redirect(req, "/console/");
        return true;
    }
    if (strncmp(path, "/console/", 9) != 0)
        return false;
    const char *name = path + 9;
    if (!*name)
        name = "index.html";
    const consoleasset_t *a = NULL;
    for (size_t i = 0; i < consoleassets_count; i++)
        if (strcmp(consoleassets[i].name, name) == 0)
            a = &consoleassets[i];
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (!a) {
        security_headers(h, API_CSP);
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, "not found\n");
        evhttp_send_reply(req, 404, "Not Found", b);
        evbuffer_free(b);
        return true;
    }
    security_headers(h, PAGE_CSP);
    evhttp_add_header(h, "Content-Type", a->content_type);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    struct evbuffer *b = evbuffer_new();
    if (m == EVHTTP_REQ_GET)
        evbuffer_add_reference(b, a->data, a->len, NULL, NULL);
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    return true;
}

/* ================================================================ sessions */

/* The value of the session cookie in req's Cookie headers, or NULL; its length in *len. */
static const char *cookie_value(struct evhttp_request *req, size_t *len)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const size_t nlen = strlen(CONSOLE_COOKIE);
    for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
        if (strcasecmp(kv->key, "Cookie") != 0)
            continue;
        for (const char *p = kv->value; p && *p;) {
            while (*p == ' ' || *p == ';')
                p++;
            const char *end = strchr(p, ';');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            if (n > nlen && strncmp(p, CONSOLE_COOKIE, nlen) == 0 && p[nlen] == '=') {
                *len = n - nlen - 1;
                return p + nlen + 1;
            }
            p = end;
        }
    }
    return NULL;
}

bool console_has_cookie(struct evhttp_request *req)
{
    size_t len;
    return cookie_value(req, &len) != NULL;
}

static session_t *session_find(const char *id, size_t len)
{
    if (len != CONSOLE_SESSION_ID_LEN)
        return NULL;
    session_t *found = NULL;
    for (size_t i = 0; i < SESSIONS_MAX; i++)
        if (con.sessions[i].id[0] && bytes_equal(con.sessions[i].id, id, CONSOLE_SESSION_ID_LEN))
            found = &con.sessions[i];
    return found;
}

static void session_drop(session_t *s)
{
    memset(s, 0, sizeof *s);
}

const admintoken_t *console_session_auth(const admintoken_store_t *tokens,
                                         struct evhttp_request *req,
                                         char sid[CONSOLE_SESSION_ID_LEN + 1], int *status,
                                         const char **why)
{
    size_t len = 0;
    const char *v = cookie_value(req, &len);
    session_t *s = v ? session_find(v, len) : NULL;
    *status = 401;
    if (!s) {
        *why = "unknown or ended session: log in again";
        return NULL;
    }
    if (s->expires_ms <= time_now_ms()) {
        session_drop(s);
        *why = "session expired: log in again";
        return NULL;
    }
    const admintoken_t *tok = admintoken_store_find_hash(tokens, s->token_hash);
    if (!tok) {
        session_drop(s);
        *why = "the session's token is no longer valid: session ended";
        return NULL;
    }
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        const char *csrf =
            evhttp_find_header(evhttp_request_get_input_headers(req), "X-CSRF-Token");
        if (!csrf || strlen(csrf) != CONSOLE_SESSION_ID_LEN ||
            !bytes_equal(csrf, s->csrf, CONSOLE_SESSION_ID_LEN)) {
            *status = 403;
            *why = "missing or wrong CSRF token (X-CSRF-Token)";
            return NULL;
        }
    }
    memcpy(sid, s->id, sizeof s->id);
    return tok;
}

const admintoken_t *console_login_token(const admintoken_store_t *tokens,
                                        struct evhttp_request *req, const char **why)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    /* application/json only: a cross-site form cannot send it without a preflight. */
    if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
        *why = "log in with a JSON body {\"token\":\"...\"} (Content-Type: application/json)";
        return NULL;
    }
    if (n == 0 || n > LOGIN_BODY_MAX) {
        *why = "log in with a JSON body {\"token\":\"...\"}";
        return NULL;
    }
    json_error_t err;
    json_t *doc = json_loadb((const char *)evbuffer_pullup(in, -1), n, 0, &err);
    const char *tok = json_string_value(json_object_get(doc, "token"));
    const admintoken_t *found = NULL;
    if (!tok)
        *why = "log in with a JSON body {\"token\":\"...\"}";
    else
        found = admintoken_store_find_token(tokens, tok, why);
    json_decref(doc);
    return found;
}

/* ================================================================ routes */

static const char *const no_params[] = {NULL};

static const char *prepare_nothing(admincall_t *c)
{
    (void)c;
    return NULL;
}

static void set_cookie(admincall_t *c, const char *value, int max_age)
{
    char cookie[256];
    snprintf(cookie, sizeof cookie, "%s=%s; Path=/; Max-Age=%d; Secure; HttpOnly; SameSite=Strict",
             CONSOLE_COOKIE, value, max_age);
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Set-Cookie", cookie);
}

static json_t *session_doc(const admincall_t *c, const session_t *s)
{
    json_t *doc =
        json_pack("{s:s, s:s}", "name", c->token.name, "role", admintoken_role_name(c->token.role));
    if (s) {
        char at[40];
        time_format_iso(s->expires_ms, at, sizeof at);
        json_object_set_new(doc, "csrf", json_string(s->csrf));
        json_object_set_new(doc, "expiresAt", json_string(at));
    }
    return doc;
}

/* A free slot, else the session that ends first. */
static session_t *session_slot(void)
{
    int64_t now = time_now_ms();
    session_t *pick = &con.sessions[0];
    for (size_t i = 0; i < SESSIONS_MAX; i++) {
        session_t *s = &con.sessions[i];
        if (!s->id[0] || s->expires_ms <= now)
            return s;
        if (s->expires_ms < pick->expires_ms)
            pick = s;
    }
    log_info(NULL, "console: %d sessions live, the oldest is ended", SESSIONS_MAX);
    return pick;
}

static void run_login(admincall_t *c)
{
    session_t *s = session_slot();
    session_drop(s);
    uint8_t raw[32];
    rand_bytes(raw, sizeof raw);
    hex_encode(raw, sizeof raw, s->id);
    rand_bytes(raw, sizeof raw);
    hex_encode(raw, sizeof raw, s->csrf);
    memcpy(s->token_hash, c->token.hash, sizeof s->token_hash);
    s->expires_ms = time_now_ms() + (int64_t)con.lifetime_s * 1000;
    set_cookie(c, s->id, con.lifetime_s);
    admincall_finish_json(c, 200, RC_OK, "session started", session_doc(c, s));
}

static void run_session(admincall_t *c)
{
    session_t *s = c->session[0] ? session_find(c->session, strlen(c->session)) : NULL;
    admincall_finish_json(c, 200, RC_OK, "ok", session_doc(c, s));
}

static void run_logout(admincall_t *c)
{
    session_t *s = c->session[0] ? session_find(c->session, strlen(c->session)) : NULL;
    if (!s) {
        admincall_finish_error(c, 400, RC_INVALID, "no session to end (bearer token)");
        return;
    }
    session_drop(s);
    set_cookie(c, "", 0);
    admincall_finish_json(c, 200, RC_OK, "session ended", json_pack("{s:b}", "loggedOut", 1));
}

/* clang-format off */
static const adminroute_t routes[] = {
    {EVHTTP_REQ_POST, "/v1/session", "session.login", ROLE_AUDITOR, no_params, prepare_nothing,
     run_login, SVC_AUDIT, {0}, {0}},
    {EVHTTP_REQ_GET, "/v1/session", "session.get", ROLE_AUDITOR, no_params, prepare_nothing,
     run_session, SVC_AUDIT, {0}, {0}},
    {EVHTTP_REQ_DELETE, "/v1/session", "session.logout", ROLE_AUDITOR, no_params,
     prepare_nothing, run_logout, SVC_AUDIT, {0}, {0}},
};
/* clang-format on */

bool console_is_login(const adminroute_t *route)
{
    return route && strcmp(route->action, routes[0].action) == 0;
}

const adminroute_t *console_routes(size_t *n)
{
    *n = sizeof routes / sizeof *routes;
    return routes;
}
