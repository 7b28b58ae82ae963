/* console: the operators' web console on the admin listener (same port, tokens and roles).
 *  - Assets: index.html, console.css and console.js (gateway/console/, embedded in the binary at
 *    build time as consoleassets.c) under /console/ ("/" and "/console" redirect there). They
 *    hold no data, so they are served without a token and not audited; every page then calls the
 *    admin API's JSON routes (the ones kooisvctl uses), and each of those calls is authenticated,
 *    role-checked and audited as any admin call. Pages carry a strict Content-Security-Policy
 *    (scripts, styles and connections from the listener itself only: no inline script or style).
 *  - Sessions: POST /v1/session {"token":"..."} exchanges an operator token for a session
 *    cookie (__Host-kooisv_session: HttpOnly, Secure, SameSite=Strict, Path=/, Max-Age the
 *    lifetime) and a CSRF token; GET /v1/session names the caller (and gives a session its CSRF
 *    token again after a reload); DELETE /v1/session revokes it. A session is an id in the admin
 *    thread's memory: it ends after KOOISV_ADMIN_SESSION_S, at logout, as soon as its token is
 *    no longer in the tokens file (checked on every use), and when the gateway stops. Its role
 *    is its token's role at the time of each call.
 *  - A call authenticated by a session cookie with a method other than GET or HEAD must carry
 *    the session's CSRF token in X-CSRF-Token: otherwise 403 before anything runs.
 * Admin thread only. */
#ifndef KOOISV_CONSOLE_H
#define KOOISV_CONSOLE_H
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include "adminroute.h"
#include "admintoken.h"

#define CONSOLE_SESSION_ID_LEN 64 /* hex characters of a session id and of a CSRF token */
#define CONSOLE_COOKIE "__Host-kooisv_session"

/* Start keeping sessions that last lifetime_s seconds. */
void console_start(int lifetime_s);
/* Forget every session. */
void console_stop(void);

/* Answer req when it asks for a console asset (GET or HEAD of "/", "/console" or "/console/..."):
 * true once answered (200, 302 or 404). False: not the console's, nothing sent. */
bool console_serve_asset(struct evhttp_request *req, const char *path);
/* Add the security headers every admin API answer carries (a Content-Security-Policy that allows
 * nothing, no framing, no referrer) to h. */
void console_api_headers(struct evkeyvalq *h);

/* True when req carries a session cookie (whatever its value). */
bool console_has_cookie(struct evhttp_request *req);
/* The token of the live session named by req's cookie, its id copied into sid; NULL with *status
 * (401: unknown, expired or revoked session, or its token removed: the session is dropped; 403:
 * a state-changing method without the session's CSRF token) and the reason in *why. */
const admintoken_t *console_session_auth(const admintoken_store_t *tokens,
                                         struct evhttp_request *req,
                                         char sid[CONSOLE_SESSION_ID_LEN + 1], int *status,
                                         const char **why);
/* The token given in a login request's JSON body {"token":"..."}; NULL with the reason. */
const admintoken_t *console_login_token(const admintoken_store_t *tokens,
                                        struct evhttp_request *req, const char **why);
/* True when route is the login route (authenticated by its body, not a header). */
bool console_is_login(const adminroute_t *route);

/* The session routes (*n of them), static. */
const adminroute_t *console_routes(size_t *n);

#endif
