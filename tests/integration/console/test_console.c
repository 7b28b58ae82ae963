/* The web console's server side through the suite's real gateway: its files and their
 * Content-Security-Policy, the token-for-cookie login (cookie flags, refusals), CSRF on every
 * state-changing call (refused before anything runs), server-side role checks (an auditor's
 * re-drive is 403 however it is sent), logout and token removal ending a session, and the
 * overview's routes (calls per minute from the trail, the services' series), audited. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cryptoutil.h"
#include "kclient.h"
#include "timeutil.h"
#include "xmalloc.h"

/* ---------------------------------------------------------------- helpers */

typedef struct {
    char cookie[160]; /* "Cookie: __Host-kooisv_session=<id>" */
    char csrf[65];
    char role[16];
} sess_t;

/* method to the admin API with optional cookie (s) and CSRF header (csrf, may be NULL). */
static int call(const char *method, const char *path, const sess_t *s, const char *csrf,
                const char *ctype, const char *body, kresp_t *out)
{
    char *url = xasprintf("%s%s", suite_get("KOOISV_ADMIN_URL"), path);
    char csrf_h[128] = "", ctype_h[128] = "";
    const char *headers[4] = {NULL};
    int n = 0;
    if (s)
        headers[n++] = s->cookie;
    if (csrf) {
        snprintf(csrf_h, sizeof csrf_h, "X-CSRF-Token: %s", csrf);
        headers[n++] = csrf_h;
    }
    if (ctype) {
        snprintf(ctype_h, sizeof ctype_h, "Content-Type: %s", ctype);
        headers[n++] = ctype_h;
    }
    int rc = kc_raw(method, url, headers, body, body ? strlen(body) : 0, out);
    free(url);
    return rc;
}

static bool is_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

/* Log in with token: 0 and *s filled, or the HTTP status. The cookie's flags are checked. */
static int login(const char *token, sess_t *s)
{
    memset(s, 0, sizeof *s);
    char *body = xasprintf("{\"token\":\"%s\"}", token);
    kresp_t r;
    call("POST", "/v1/session", NULL, NULL, "application/json", body, &r);
    free(body);
    int status = r.status;
    if (status != 200) {
        assert_null(kresp_header(&r, "Set-Cookie"));
        kresp_free(&r);
        return status;
    }
    const char *sc = kresp_header(&r, "Set-Cookie");
    assert_non_null(sc);
    assert_int_equal(strncmp(sc, "__Host-kooisv_session=", 22), 0);
    char id[65] = "";
    snprintf(id, sizeof id, "%.64s", sc + 22);
    assert_true(is_hex(id, 64));
    assert_int_equal(sc[22 + 64], ';');
    assert_non_null(strstr(sc, "; Path=/"));
    assert_non_null(strstr(sc, "; Secure"));
    assert_non_null(strstr(sc, "; HttpOnly"));
    assert_non_null(strstr(sc, "; SameSite=Strict"));
    assert_non_null(strstr(sc, "; Max-Age=1800")); /* KOOISV_ADMIN_SESSION_S's default */
    assert_null(strstr(sc, "Domain"));
    snprintf(s->cookie, sizeof s->cookie, "Cookie: theme=dark; __Host-kooisv_session=%s", id);
    const char *csrf = json_string_value(json_object_get(r.json, "csrf"));
    assert_true(is_hex(csrf, 64));
    assert_string_not_equal(csrf, id);
    snprintf(s->csrf, sizeof s->csrf, "%s", csrf);
    snprintf(s->role, sizeof s->role, "%s", json_string_value(json_object_get(r.json, "role")));
    /* the token itself never comes back */
    assert_null(strstr(r.body, token));
    kresp_free(&r);
    return 0;
}

/* call(), for the HTTP status of its answer alone. */
static int call_status(const char *method, const char *path, const sess_t *s, const char *csrf,
                       const char *ctype, const char *body)
{
    kresp_t r;
    call(method, path, s, csrf, ctype, body, &r);
    int status = r.status;
    kresp_free(&r);
    return status;
}

static int session_status(const sess_t *s)
{
    return call_status("GET", "/v1/session", s, NULL, NULL, NULL);
}

/* The audit entry of request rid, as the admin sees it (fails the test when absent after 5 s). A
 * refused call is answered before its record is stored (the gateway queues it), so this waits for
 * it. Caller decrefs. */
static json_t *audit_entry(const char *rid)
{
    char *path = xasprintf("/v1/audit?request_id=%s", rid);
    json_t *e = NULL;
    int64_t until = time_mono_us() + 5000000;
    for (;;) {
        kresp_t r;
        kc_admin("GET", path, suite_get("KOOISV_OPERATOR_TOKEN"), NULL, &r);
        assert_int_equal(r.status, 200);
        e = json_incref(json_array_get(json_object_get(r.json, "entries"), 0));
        kresp_free(&r);
        if (e || time_mono_us() > until)
            break;
        usleep(50000);
    }
    free(path);
    assert_non_null(e);
    return e;
}

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

/* ---------------------------------------------------------------- tests */

static void test_assets_and_csp(void **state)
{
    (void)state;
    kresp_t r;
    call("GET", "/console/", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    const char *csp = kresp_header(&r, "Content-Security-Policy");
    assert_non_null(csp);
    assert_non_null(strstr(csp, "default-src 'none'"));
    assert_non_null(strstr(csp, "script-src 'self'"));
    assert_non_null(strstr(csp, "style-src 'self'"));
    assert_non_null(strstr(csp, "frame-ancestors 'none'"));
    assert_null(strstr(csp, "unsafe"));
    assert_string_equal(kresp_header(&r, "X-Frame-Options"), "DENY");
    assert_non_null(strstr(kresp_header(&r, "Content-Type"), "text/html"));
    /* no inline script or style in the page itself */
    assert_non_null(strstr(r.body, "<script src=\"/console/console.js\""));
    assert_null(strstr(r.body, "<script>"));
    assert_null(strstr(r.body, "style="));
    assert_null(strstr(r.body, "<style"));
    kresp_free(&r);

    call("GET", "/console/console.js", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(kresp_header(&r, "Content-Type"), "text/javascript"));
    assert_null(strstr(r.body, "innerHTML"));
    kresp_free(&r);
    assert_int_equal(call_status("GET", "/console/console.css", NULL, NULL, NULL, NULL), 200);
    assert_int_equal(call_status("GET", "/console/nope.js", NULL, NULL, NULL, NULL), 404);
    call("GET", "/", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 302);
    assert_string_equal(kresp_header(&r, "Location"), "/console/");
    kresp_free(&r);
    /* a POST to the files is no asset: a 401 from the API, with the API's own strict policy */
    assert_int_equal(call_status("POST", "/console/", NULL, NULL, NULL, NULL), 401);
    call("GET", "/v1/session", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(kresp_header(&r, "Content-Security-Policy"), "default-src 'none'"));
    kresp_free(&r);
}

static void test_login(void **state)
{
    (void)state;
    sess_t s;
    assert_int_equal(login(suite_get("KOOISV_OPERATOR_ROLE_TOKEN"), &s), 0);
    assert_string_equal(s.role, "operator");
    kresp_t r;
    call("GET", "/v1/session", &s, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "name"), "operator");
    assert_string_equal(str(r.json, "csrf"), s.csrf);
    /* the session works for the routes of its role */
    kresp_free(&r);
    call("GET", "/v1/jobs/failed", &s, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *e = audit_entry(r.request_id);
    assert_string_equal(str(e, "event"), "admin.jobs.failed");
    assert_string_equal(str(json_object_get(e, "caller"), "id"), "operator");
    json_decref(e);
    kresp_free(&r);
    /* but not above it */
    assert_int_equal(call_status("GET", "/v1/apps/a1/secret", &s, NULL, NULL, NULL), 403);

    /* refusals: unknown token, no body, not JSON, a form post, a token in the wrong field */
    assert_int_equal(login("not-a-token-of-anyone", &s), 401);
    kresp_t bad;
    call("POST", "/v1/session", NULL, NULL, "application/json", NULL, &bad);
    assert_int_equal(bad.status, 401);
    json_t *rej = audit_entry(bad.request_id);
    assert_string_equal(str(rej, "event"), "admin.session.login");
    assert_string_not_equal(str(rej, "reject_reason"), "");
    json_decref(rej);
    kresp_free(&bad);
    char *form = xasprintf("token=%s", suite_get("KOOISV_OPERATOR_ROLE_TOKEN"));
    call("POST", "/v1/session", NULL, NULL, "application/x-www-form-urlencoded", form, &bad);
    assert_int_equal(bad.status, 401);
    assert_null(kresp_header(&bad, "Set-Cookie"));
    kresp_free(&bad);
    free(form);
    assert_int_equal(
        call_status("POST", "/v1/session", NULL, NULL, "application/json", "{\"token\":"), 401);
    assert_int_equal(
        call_status("POST", "/v1/session", NULL, NULL, "application/json", "{\"tok\":\"x\"}"), 401);
    /* forged or malformed cookies */
    sess_t forged = {0};
    snprintf(forged.cookie, sizeof forged.cookie, "Cookie: __Host-kooisv_session=%064d", 7);
    assert_int_equal(session_status(&forged), 401);
    snprintf(forged.cookie, sizeof forged.cookie, "Cookie: __Host-kooisv_session=abc");
    assert_int_equal(session_status(&forged), 401);
    snprintf(forged.cookie, sizeof forged.cookie, "Cookie: __Host-kooisv_session=");
    assert_int_equal(session_status(&forged), 401);
}

static void test_csrf(void **state)
{
    (void)state;
    sess_t s;
    assert_int_equal(login(suite_get("KOOISV_OPERATOR_ROLE_TOKEN"), &s), 0);
    /* none, empty, short, the session id itself, one character off */
    char off[65];
    snprintf(off, sizeof off, "%s", s.csrf);
    off[0] = off[0] == 'a' ? 'b' : 'a';
    const char *bad_tokens[] = {NULL, "", "00", s.cookie + 42, off};
    for (size_t i = 0; i < sizeof bad_tokens / sizeof *bad_tokens; i++) {
        kresp_t r;
        call("POST", "/v1/jobs/999999999/redrive", &s, bad_tokens[i], NULL, NULL, &r);
        assert_int_equal(r.status, 403);
        assert_non_null(strstr(str(r.json, "error"), "CSRF"));
        /* refused before its intent: a rejection in the trail, never sent to the service */
        json_t *e = audit_entry(r.request_id);
        assert_string_equal(str(e, "event"), "admin.jobs.redrive");
        assert_non_null(strstr(str(e, "reject_reason"), "CSRF"));
        json_decref(e);
        kresp_free(&r);
    }
    /* a logout without the token does nothing: the session lives on */
    kresp_t r;
    call("DELETE", "/v1/session", &s, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 403);
    assert_null(kresp_header(&r, "Set-Cookie"));
    kresp_free(&r);
    assert_int_equal(session_status(&s), 200);
    /* another session's token is no good either */
    sess_t other;
    assert_int_equal(login(suite_get("KOOISV_OPERATOR_ROLE_TOKEN"), &other), 0);
    assert_int_equal(call_status("DELETE", "/v1/session", &s, other.csrf, NULL, NULL), 403);
    assert_int_equal(session_status(&s), 200);
    /* with it, the call runs: the order service answers (no such job) */
    call("POST", "/v1/jobs/999999999/redrive", &s, s.csrf, NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(str(r.json, "error"), "does not exist"));
    kresp_free(&r);
    /* bearer calls carry no ambient credential and need no CSRF token */
    kc_admin("POST", "/v1/jobs/999999999/redrive", suite_get("KOOISV_OPERATOR_ROLE_TOKEN"), NULL,
             &r);
    assert_int_equal(r.status, 400);
    kresp_free(&r);
}

static void test_auditor_refused(void **state)
{
    (void)state;
    sess_t s;
    assert_int_equal(login(suite_get("KOOISV_AUDITOR_TOKEN"), &s), 0);
    assert_string_equal(s.role, "auditor");
    const char *paths[] = {"/v1/jobs/1/redrive", "/v1/outbox/order/1/redrive"};
    for (size_t i = 0; i < 2; i++) {
        kresp_t r;
        call("POST", paths[i], &s, s.csrf, NULL, NULL, &r);
        assert_int_equal(r.status, 403);
        assert_non_null(strstr(str(r.json, "error"), "role auditor"));
        json_t *e = audit_entry(r.request_id);
        assert_string_not_equal(str(e, "reject_reason"), "");
        assert_string_equal(str(json_object_get(e, "caller"), "id"), "auditor");
        json_decref(e);
        kresp_free(&r);
        kc_admin("POST", paths[i], suite_get("KOOISV_AUDITOR_TOKEN"), NULL, &r);
        assert_int_equal(r.status, 403);
        kresp_free(&r);
    }
    assert_int_equal(call_status("GET", "/v1/jobs/failed", &s, NULL, NULL, NULL), 403);
    /* what an auditor may see */
    assert_int_equal(call_status("GET", "/v1/stats/calls", &s, NULL, NULL, NULL), 200);
    assert_int_equal(call_status("GET", "/v1/audit?limit=1", &s, NULL, NULL, NULL), 200);
}

static void test_logout(void **state)
{
    (void)state;
    sess_t s;
    assert_int_equal(login(suite_get("KOOISV_OPERATOR_ROLE_TOKEN"), &s), 0);
    kresp_t r;
    call("DELETE", "/v1/session", &s, s.csrf, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    const char *sc = kresp_header(&r, "Set-Cookie");
    assert_non_null(sc);
    assert_non_null(strstr(sc, "__Host-kooisv_session=;"));
    assert_non_null(strstr(sc, "Max-Age=0"));
    kresp_free(&r);
    /* revoked on the server: the old cookie (a client may keep it) is worth nothing */
    assert_int_equal(session_status(&s), 401);
    assert_int_equal(call_status("POST", "/v1/jobs/999999999/redrive", &s, s.csrf, NULL, NULL),
                     401);
    assert_int_equal(call_status("DELETE", "/v1/session", &s, s.csrf, NULL, NULL), 401);
    /* a bearer caller has no session to end */
    kc_admin("DELETE", "/v1/session", suite_get("KOOISV_AUDITOR_TOKEN"), NULL, &r);
    assert_int_equal(r.status, 400);
    kresp_free(&r);
}

/* Write the tokens file atomically, as the runner does, with the old file's owner and mode. */
static void tokens_write(const char *path, const char *text)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    char *tmp = xasprintf("%s.console-test", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fchown(fd, st.st_uid, st.st_gid) == 0 || getuid() != 0, 1);
    assert_int_equal(fchmod(fd, st.st_mode & 07777), 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
    free(tmp);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = xcalloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void test_token_removed(void **state)
{
    (void)state;
    char *path = xasprintf("%s/secrets/admin-tokens", suite_get("KOOISV_SUITE_DIR"));
    char *orig = slurp(path);
    char *token = kc_uid("console-temp-token");
    uint8_t h[32];
    char hex[65];
    sha256(token, strlen(token), h);
    hex_encode(h, 32, hex);
    char *with = xasprintf("%sconsole-temp operator %s\n", orig, hex);
    tokens_write(path, with);
    sess_t s;
    int rc = 401;
    for (int i = 0; i < 50 && rc != 0; i++) { /* the gateway re-reads the file within a second */
        rc = login(token, &s);
        if (rc != 0)
            usleep(100000);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(session_status(&s), 200);
    tokens_write(path, orig);
    int status = 200;
    for (int i = 0; i < 50 && status == 200; i++) {
        usleep(100000);
        status = session_status(&s);
    }
    assert_int_equal(status, 401);
    /* and stays ended even if the same token comes back: a new login is needed */
    tokens_write(path, with);
    usleep(1500000);
    assert_int_equal(session_status(&s), 401);
    tokens_write(path, orig);
    free(with);
    free(token);
    free(orig);
    free(path);
}

/* Calls per minute from the trail, and the services' series, for the overview. */
static void test_overview_routes(void **state)
{
    (void)state;
    char *iid = kc_uid("console-stats");
    char *body = xasprintf("{\"activity\":\"queryInstance\",\"instanceId\":\"%s\"}", iid);
    kresp_t r;
    for (int i = 0; i < 3; i++) {
        kc_basic(body, &r);
        kresp_free(&r);
    }
    free(body);
    free(iid);
    kc_admin("GET", "/v1/stats/calls?hours=1", suite_get("KOOISV_AUDITOR_TOKEN"), NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *minutes = json_object_get(r.json, "minutes");
    assert_true(json_is_array(minutes));
    json_int_t qi = 0;
    size_t i;
    json_t *m;
    json_array_foreach(minutes, i, m)
    {
        assert_int_equal(json_array_size(m), 4);
        assert_true(json_integer_value(json_array_get(m, 0)) % 60000 == 0);
        assert_string_not_equal(json_string_value(json_array_get(m, 1)), "admin.stats");
        assert_int_equal(strncmp(json_string_value(json_array_get(m, 1)), "admin.", 6) != 0, 1);
        if (strcmp(json_string_value(json_array_get(m, 1)), "queryInstance") == 0)
            qi += json_integer_value(json_array_get(m, 3));
    }
    assert_true(qi >= 3);
    assert_true(json_integer_value(json_object_get(r.json, "calls")) >= 3);
    json_t *lat = json_object_get(r.json, "latencyMs");
    assert_true(json_integer_value(json_object_get(lat, "count")) >= 3);
    assert_true(json_number_value(json_object_get(lat, "p99")) >=
                json_number_value(json_object_get(lat, "p50")));
    json_t *e = audit_entry(r.request_id);
    assert_string_equal(str(e, "event"), "admin.audit.stats");
    json_decref(e);
    kresp_free(&r);
    const char *bad[] = {"/v1/stats/calls?hours=0", "/v1/stats/calls?hours=169",
                         "/v1/stats/calls?hours=x", "/v1/stats/calls?hours=1&x=2"};
    for (size_t k = 0; k < 4; k++) {
        kc_admin("GET", bad[k], suite_get("KOOISV_AUDITOR_TOKEN"), NULL, &r);
        assert_int_equal(r.status, 400);
        kresp_free(&r);
    }
    kc_admin("GET", "/v1/stats/services", suite_get("KOOISV_AUDITOR_TOKEN"), NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *order = json_object_get(json_object_get(r.json, "services"), "order");
    bool backlog = false, dead = false;
    json_array_foreach(json_object_get(order, "series"), i, m)
    {
        backlog |= strcmp(str(m, "name"), "kooisv_provisioning_jobs") == 0;
        dead |= strcmp(str(m, "name"), "kooisv_outbox_failed") == 0;
    }
    assert_true(backlog && dead);
    kresp_free(&r);
    /* the same figure on /metrics */
    assert_true(kc_metric("kooisv_provisioning_jobs{service=\"order\",state=\"pending\"}") >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assets_and_csp),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_csrf),
        cmocka_unit_test(test_auditor_refused),
        cmocka_unit_test(test_logout),
        cmocka_unit_test(test_token_removed),
        cmocka_unit_test(test_overview_routes),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
