/* adminroute: the admin API's routes, matched against a request's method and path, and the
 * checks every route shares before it runs: the caller's role and the query parameters the
 * route accepts. The routes themselves belong to the modules that serve them (adminaudit,
 * adminsvc). */
#ifndef KOOISV_ADMINROUTE_H
#define KOOISV_ADMINROUTE_H
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include "admintoken.h"
#include "services.h"

#define ADMINROUTE_SEGMENTS_MAX 2  /* path parameters of one route */
#define ADMINROUTE_SEGMENT_MAX 128 /* bytes of one path parameter */

struct admincall;
struct evkeyvalq;

typedef struct {
    enum evhttp_cmd_type method;
    const char *path;   /* "/"-separated segments, "*" = one parameter */
    const char *action; /* event "admin.<action>"; AdminRequest action */
    admintoken_role_t role;
    const char *const *params; /* query parameters accepted (NULL-terminated) */
    /* Validate the call's parameters; NULL, or the 400 message. */
    const char *(*prepare)(struct admincall *c);
    /* Run the call once its intent is stored; it ends in one of the admincall_finish_*. */
    void (*run)(struct admincall *c);
    service_id_t svc; /* service routes */
    const char
        *seg_args[ADMINROUTE_SEGMENTS_MAX]; /* AdminRequest arg name of each path parameter */
    const char *seg_kinds[ADMINROUTE_SEGMENTS_MAX]; /* resource kind of each path parameter */
} adminroute_t;

/* The route among routes[0..n) for method and path, its path parameters decoded into segs
 * (*nseg of them; caller frees each). NULL when none matches (segs then empty), with *status
 * the answer: 404 no such path, 405 the path exists for another method, 400 a path parameter is
 * empty, too long or not printable. */
const adminroute_t *adminroute_find(const adminroute_t *routes, size_t n,
                                    enum evhttp_cmd_type method, const char *path,
                                    char *segs[ADMINROUTE_SEGMENTS_MAX], int *nseg, int *status);
/* True when a caller with role may run route: roles rank auditor < operator < admin; a meter
 * route (the usage intake) admits meter and admin, and a meter token nothing else. */
bool adminroute_permits(const adminroute_t *route, admintoken_role_t role);
/* NULL when every query parameter in params is one route accepts and is printable text of at
 * most 256 bytes; otherwise the 400 message, written into msg. */
const char *adminroute_check_params(const adminroute_t *route, const struct evkeyvalq *params,
                                    char *msg, size_t msglen);

#endif
