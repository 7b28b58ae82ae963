/* The admin API's request parsing on any method, path, query string and body, as admin.c's
 * on_request runs it before a call reaches a service: the URI parse, the route match over every
 * admin route (adminaudit, adminsvc, console), the query string into parameters, the routes'
 * parameter check, then the route's prepare step (the audit views' filters and time parsing,
 * verify's body and head, the services' resources) on a call that is never started. Also the
 * operators' time parser on its own: a time it accepts is not before the epoch and, up to the year
 * 9999 (epoch milliseconds of up to 15 digits go further, and ISO-8601 has four-digit years), reads
 * back the same from its ISO-8601 form. Input: byte 0 picks the method (even GET, odd POST), then
 * "path[?query]", then after the first '\n' the body. */
#include <assert.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "admin.h"
#include "adminaudit.h"
#include "admincall.h"
#include "adminroute.h"
#include "adminsvc.h"
#include "console.h"
#include "resref.h"
#include "timeutil.h"

#define ROUTES_MAX 32

static adminroute_t routes[ROUTES_MAX];
static size_t nroutes;

static void routes_init(void)
{
    size_t na, ns, nc;
    const adminroute_t *a = adminaudit_routes(&na), *s = adminsvc_routes(&ns),
                       *k = console_routes(&nc);
    assert(na + ns + nc <= ROUTES_MAX);
    memcpy(routes, a, na * sizeof *a);
    memcpy(routes + na, s, ns * sizeof *s);
    memcpy(routes + na + ns, k, nc * sizeof *k);
    nroutes = na + ns + nc;
}

#define YEAR_10000_MS 253402300800000LL /* 10000-01-01T00:00:00Z */

/* The time parser: accepted times are not before the epoch and survive their ISO form. */
static void check_time(const char *s)
{
    int64_t ms = -1;
    if (!admin_parse_time(s, &ms))
        return;
    assert(ms >= 0);
    if (ms >= YEAR_10000_MS)
        return;
    char iso[40];
    int64_t back = -1;
    time_format_iso(ms, iso, sizeof iso);
    assert(time_parse_any(iso, &back) && back == ms);
}

/* Route, parameters and prepare of one request, freeing what the call would have held. */
static void check_request(enum evhttp_cmd_type method, const char *uri_text, const char *body,
                          size_t body_len)
{
    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(uri_text, 0);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path) {
        if (uri)
            evhttp_uri_free(uri);
        return;
    }
    admincall_t c;
    memset(&c, 0, sizeof c);
    TAILQ_INIT(&c.params);
    int miss = 0;
    const adminroute_t *route =
        adminroute_find(routes, nroutes, method, path, c.seg, &c.nseg, &miss);
    const char *query = evhttp_uri_get_query(uri);
    bool query_ok = !query || evhttp_parse_query_str(query, &c.params) == 0;
    evhttp_uri_free(uri);
    if (!route) {
        assert(c.nseg == 0 && (miss == 400 || miss == 404 || miss == 405));
    } else if (query_ok) {
        c.route = route;
        assert(c.nseg >= 0 && c.nseg <= ADMINROUTE_SEGMENTS_MAX);
        for (int i = 0; i < c.nseg; i++)
            assert(c.seg[i] && *c.seg[i] && strlen(c.seg[i]) <= ADMINROUTE_SEGMENT_MAX);
        char msg[128];
        const char *why = adminroute_check_params(route, &c.params, msg, sizeof msg);
        if (!why) {
            struct evkeyval *kv;
            TAILQ_FOREACH(kv, &c.params, next)
            check_time(kv->value);
            c.req = evhttp_request_new(NULL, NULL);
            assert(c.req);
            evbuffer_add(evhttp_request_get_input_buffer(c.req), body, body_len);
            why = route->prepare(&c);
            assert(!why || *why);
            evhttp_request_free(c.req);
        } else {
            assert(*why);
        }
    }
    evhttp_clear_headers(&c.params);
    for (int i = 0; i < c.nseg; i++)
        free(c.seg[i]);
    resref_free(c.res, c.n_res);
    json_decref(c.body);
    if (c.out)
        evbuffer_free(c.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!nroutes)
        routes_init();
    if (size < 1)
        return 0;
    enum evhttp_cmd_type method = (data[0] & 1) ? EVHTTP_REQ_POST : EVHTTP_REQ_GET;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    const char *nl = memchr(rest, '\n', n);
    size_t line_len = nl ? (size_t)(nl - rest) : n;
    char *line = malloc(line_len + 1);
    memcpy(line, rest, line_len);
    line[line_len] = '\0';
    const char *body = nl ? nl + 1 : rest + n;
    size_t body_len = nl ? n - line_len - 1 : 0;
    check_time(line);
    check_request(method, line, body, body_len);
    free(line);
    return 0;
}
