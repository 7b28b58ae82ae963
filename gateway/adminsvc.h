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
 * The ids among the parameters name the resources in the call's audit record. */
#ifndef KOOISV_ADMINSVC_H
#define KOOISV_ADMINSVC_H
#include <stddef.h>
#include "adminroute.h"

/* The service routes (*n of them), static. */
const adminroute_t *adminsvc_routes(size_t *n);

#endif
