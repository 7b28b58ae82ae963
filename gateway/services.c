#include "services.h"

static const char *const names[SVC__COUNT] = {"order", "tenant", "app", "audit", "billing"};

const char *services_name(service_id_t svc)
{
    return svc >= 0 && svc < SVC__COUNT ? names[svc] : "unknown";
}
