#include "admin.h"
#include "resultcode.h"

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adminaudit.h"
#include "adminexport.h"
#include "admincall.h"
#include "adminroute.h"
#include "adminsvc.h"
#include "admintoken.h"
#include "auditq.h"
#include "console.h"
#include "config.h"
#include "dispatch.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "timeutil.h"
#include "xmalloc.h"

#define AUDIT_QUEUE_TIMEOUT_MS 2000 /* each attempt to store a queued audit record */
#define MAX_BODY (1024 * 1024) /* a usage intake call: 1000 records */
#define HTTP_TIMEOUT_S 75 /* above the longest follow wait */

static struct {
    bool running;
    pthread_t thread;
    admincall_host_t host; /* event base, dispatcher, audit queue, live calls */
    struct evhttp *http;
    SSL_CTX *tls;
    struct event *stop_ev;
    admintoken_store_t *tokens;
    adminroute_t *routes; /* the audit views, then the service routes */
    size_t nroutes;
    int max_calls, max_calls_per_token; /* calls in progress at once */
} adm;

bool admin_parse_time(const char *s, int64_t *ms_out)
{
    return time_parse_any(s, ms_out);
}

/* ================================================================ one request */

/* The caller's token: the login route's from its body, else a bearer token, else a console
 * session (whose state-changing calls need its CSRF token); NULL with *status and *why. */
static const admintoken_t *authenticate(admincall_t *c, struct evhttp_request *req,
                                        const adminroute_t *route, int *status, const char **why)
{
    *status = 401;
    if (console_is_login(route))
        return console_login_token(adm.tokens, req, why);
    const char *authz = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!authz && console_has_cookie(req))
        return console_session_auth(adm.tokens, req, c->session, status, why);
    return admintoken_store_find(adm.tokens, authz, why);
}

/* Route, authenticate, check the role and the parameters, then start the call (its intent is
 * stored before the route runs). Every refusal is answered and recorded by admincall. */
static void on_request(struct evhttp_request *req, void *arg)
{
    admintoken_store_refresh(adm.tokens);
    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(evhttp_request_get_uri(req), 0);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    /* The console's files hold no data: served to anyone, not audited (its data calls are). */
    if (path && console_serve_asset(req, path)) {
        evhttp_uri_free(uri);
        return;
    }
    admincall_t *c = admincall_new(&adm.host, req);
    if (!path) {
        if (uri)
            evhttp_uri_free(uri);
        admincall_finish_error(c, 400, RC_INVALID, "malformed request URI");
        return;
    }
    /* Route first (for the event name), but say nothing about routes before authentication. */
    int miss = 404;
    const adminroute_t *route = adminroute_find(
        adm.routes, adm.nroutes, evhttp_request_get_command(req), path, c->seg, &c->nseg, &miss);
    if (route) {
        c->route = route;
        snprintf(c->event, sizeof c->event, "admin.%s", route->action);
    }
    const char *query = evhttp_uri_get_query(uri);
    bool query_ok = !query || evhttp_parse_query_str(query, &c->params) == 0;
    evhttp_uri_free(uri);

    const char *why = NULL;
    int status = 401;
    const admintoken_t *tok = authenticate(c, req, route, &status, &why);
    if (!tok) {
        admincall_finish_error(c, status, RC_AUTH, "%s", why);
        return;
    }
    c->token = *tok;
    snprintf(c->caller_id, sizeof c->caller_id, "%s", tok->name);
    if (!route) {
        if (miss == 400)
            admincall_finish_error(c, 400, RC_INVALID,
                                   "a path parameter is empty, too long or not printable");
        else if (miss == 405)
            admincall_finish_error(c, 405, RC_INVALID, "method not allowed here");
        else
            admincall_finish_error(c, 404, RC_INVALID, "no such admin route");
        return;
    }
    if (!adminroute_permits(route, tok->role)) {
        admincall_finish_error(c, 403, RC_AUTH, "role %s may not %s (needs %s)",
                               admintoken_role_name(tok->role), route->action,
                               admintoken_role_name(route->role));
        return;
    }
    /* Each call may hold the admin thread's resources a while (an export streams for minutes,
     * a follow waits): a token runs few at once, everyone together a bounded number. Refused
     * before anything is prepared. */
    int mine = 0, all = 0;
    for (admincall_t *o = adm.host.calls; o; o = o->next)
        if (o != c) {
            all++;
            mine += strcmp(o->caller_id, c->caller_id) == 0;
        }
    if (mine >= adm.max_calls_per_token || all >= adm.max_calls) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        admincall_finish_error(c, 429, RC_BUSY,
                               "too many admin calls at once (%s: at most %d per token, %d in "
                               "all); retry when one has ended",
                               mine >= adm.max_calls_per_token ? "this token" : "everyone",
                               adm.max_calls_per_token, adm.max_calls);
        return;
    }
    if (!query_ok) {
        admincall_finish_error(c, 400, RC_INVALID, "malformed query string");
        return;
    }
    char msg[128];
    if ((why = adminroute_check_params(route, &c->params, msg, sizeof msg)) ||
        (why = route->prepare(c))) {
        admincall_finish_error(c, 400, RC_INVALID, "%s", why);
        return;
    }
    admincall_start(c);
}

/* ================================================================ life cycle */

static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new(adm.tls);
    if (!ssl) {
        log_error(NULL, "admin: SSL_new failed: out of memory");
        abort();
    }
    return tlsctx_bufferevent(base, ssl, "admin: ");
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(adm.host.base);
}

static void *admin_main(void *arg)
{
    event_base_dispatch(adm.host.base);
    /* Calls waiting on a timer (follow) are answered here; those waiting on a service are
     * answered (503) by dispatch_destroy, while their connections still exist. */
    admincall_finish_waiting(&adm.host);
    auditq_detach(adm.host.auditq);
    dispatch_destroy(&adm.host.dispatch);
    evhttp_free(adm.http);
    adm.http = NULL;
    for (int i = 0; i < 4; i++)
        event_base_loop(adm.host.base, EVLOOP_NONBLOCK);
    auditq_destroy(&adm.host.auditq);
    return NULL;
}

int admin_start(void)
{
    const char *listen = config_get("KOOISV_ADMIN_LISTEN");
    adm.max_calls = (int)config_get_long("KOOISV_ADMIN_MAX_CALLS", 1, 10000);
    adm.max_calls_per_token = (int)config_get_long("KOOISV_ADMIN_MAX_CALLS_PER_TOKEN", 1, 10000);
    const char *tokens = config_get("KOOISV_ADMIN_TOKENS_FILE");
    if (!*listen) {
        log_info(NULL, "admin API off: KOOISV_ADMIN_LISTEN is empty");
        return 0;
    }
    if (!*tokens) {
        log_warn(NULL, "admin API off: KOOISV_ADMIN_TOKENS_FILE is not set");
        return 0;
    }
    adm.tokens = admintoken_store_new(tokens);
    if (!adm.tokens)
        return -1;
    size_t naudit, nsvc, nexport, ncon;
    const adminroute_t *audit_routes = adminaudit_routes(&naudit);
    const adminroute_t *svc_routes = adminsvc_routes(&nsvc);
    const adminroute_t *export_routes = adminexport_routes(&nexport);
    const adminroute_t *console_rt = console_routes(&ncon);
    adm.nroutes = naudit + nsvc + nexport + ncon;
    adm.routes = xcalloc(adm.nroutes, sizeof *adm.routes);
    memcpy(adm.routes, audit_routes, naudit * sizeof *adm.routes);
    memcpy(adm.routes + naudit, svc_routes, nsvc * sizeof *adm.routes);
    memcpy(adm.routes + naudit + nsvc, export_routes, nexport * sizeof *adm.routes);
    memcpy(adm.routes + naudit + nsvc + nexport, console_rt, ncon * sizeof *adm.routes);
    console_start((int)config_get_long("KOOISV_ADMIN_SESSION_S", 60, 86400));
    const char *cert = config_get("KOOISV_ADMIN_TLS_CERT_FILE");
    const char *key = config_get("KOOISV_ADMIN_TLS_KEY_FILE");
    if (!*cert || !*key) {
        cert = config_get("KOOISV_TLS_CERT_FILE");
        key = config_get("KOOISV_TLS_KEY_FILE");
    }
    char err[256];
    adm.tls = tlsctx_new(cert, key, err, sizeof err);
    if (!adm.tls) {
        log_error(NULL, "admin API TLS: %s", err);
        return -1;
    }
    proxyproto_enable(adm.tls, gw.proxy_trust, "admin: ");
    metrics_set_cert_expiry(true, tlsctx_not_after(adm.tls));
    int fd = netaddr_listen(listen, false, err, sizeof err);
    if (fd < 0) {
        log_error(NULL, "admin API: %s", err);
        return -1;
    }
    adm.host.base = event_base_new();
    adm.http = adm.host.base ? evhttp_new(adm.host.base) : NULL;
    if (!adm.http) {
        log_error(NULL, "admin API: cannot create its event loop");
        close(fd);
        return -1;
    }
    evhttp_set_bevcb(adm.http, on_new_connection, NULL);
    evhttp_set_gencb(adm.http, on_request, NULL);
    evhttp_set_max_body_size(adm.http, MAX_BODY);
    evhttp_set_max_headers_size(adm.http, 16384);
    evhttp_set_timeout(adm.http, HTTP_TIMEOUT_S);
    evhttp_set_allowed_methods(adm.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                             EVHTTP_REQ_OPTIONS);
    if (!evhttp_accept_socket_with_handle(adm.http, fd)) {
        log_error(NULL, "admin API: cannot accept on %s", listen);
        close(fd);
        return -1;
    }
    adm.host.dispatch = dispatch_new(adm.host.base, gw.endpoints, gw.server_keys);
    if (!adm.host.dispatch) {
        log_error(NULL, "admin API: cannot reach the services");
        return -1;
    }
    adm.host.auditq = auditq_new(adm.host.base, adm.host.dispatch, AUDIT_QUEUE_TIMEOUT_MS);
    adm.stop_ev = event_new(adm.host.base, -1, 0, on_stop, NULL);
    if (pthread_create(&adm.thread, NULL, admin_main, NULL) != 0) {
        log_error(NULL, "admin API: cannot start its thread");
        return -1;
    }
    adm.running = true;
    log_info(NULL, "admin API on https://%s (port %d), %zu token(s)", listen,
             netaddr_local_port(fd), admintoken_store_count(adm.tokens));
    return 0;
}

void admin_stop(void)
{
    if (!adm.running)
        return;
    event_active(adm.stop_ev, EV_TIMEOUT, 1);
    pthread_join(adm.thread, NULL);
    adm.running = false;
    event_free(adm.stop_ev);
    event_base_free(adm.host.base);
    SSL_CTX_free(adm.tls);
    admintoken_store_destroy(&adm.tokens);
    console_stop();
    free(adm.routes);
    memset(&adm, 0, sizeof adm);
}
