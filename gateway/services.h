/* services: the services the gateway calls, by id and by name. Shared by the dispatcher, the
 * metrics and the request modules, so that none of them depends on another for the list. */
#ifndef KOOISV_SERVICES_H
#define KOOISV_SERVICES_H

typedef enum {
    SVC_ORDER = 0,
    SVC_TENANT,
    SVC_APP,
    SVC_AUDIT,
    SVC_BILLING,
    SVC__COUNT
} service_id_t;

/* Name of a service ("order"...), "unknown" outside the list. */
const char *services_name(service_id_t svc);

#endif
