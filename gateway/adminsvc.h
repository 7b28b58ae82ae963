/* adminsvc: the admin API's routes forwarded to the services as an AdminRequest (action = the
 * route's action, args = its path parameters and query parameters); the service answers a JSON
 * document, passed through:
 *   GET  /v1/instances/<id>, GET /v1/instances?state&limit&before, GET /v1/jobs/failed,
 *   POST /v1/jobs/<id>/redrive                      (operator) -> order service
 *   GET  /v1/tenants/<tenantId>/orgs?instance       (operator) -> tenant service
 *   GET  /v1/tenants/<tenantId>/users?instance&app  (operator) -> app service
 *   GET  /v1/apps/<appId>/secret?instance&tenant    (admin)    -> app service
 *   GET  /v1/outbox/failed                          (operator) -> every service with an outbox
 *   POST /v1/outbox/<svc>/<id>/redrive              (operator) -> that service
 *   POST /v1/billing/exports?kind&format&from&to&tenant&instance&product,
 *   GET  /v1/billing/exports?limit, GET /v1/billing/exports/<id>
 *                                                   (operator) -> billing service
 * The ids among the parameters name the resources in the call's audit record. */
#ifndef KOOISV_ADMINSVC_H
#define KOOISV_ADMINSVC_H
#include <stddef.h>
#include "adminroute.h"
#include "dispatch.h"

#define ADMINSVC_ARGS_MAX (ADMINROUTE_SEGMENTS_MAX + 8)

struct admincall;

/* The service routes (*n of them), static. */
const adminroute_t *adminsvc_routes(size_t *n);
/* Send AdminRequest{action, args keys[i]=values[i] (n of them, at most ADMINSVC_ARGS_MAX)} for
 * call c to svc, under request id rid (NULL: c's own; a call that sends several requests gives
 * each its own, so that no reply or replayed answer matches another); done gets the reply
 * (dispatch_call's contract). 0, or -1 when svc is not configured. */
int adminsvc_request(struct admincall *c, service_id_t svc, const char *rid, const char *action,
                     const char *const *keys, const char *const *values, size_t n,
                     dispatch_done_fn done, void *arg);

#endif
