/* instance_state: the instance life cycle as a pure function (spec §3 "Lifecycle").
 *   provisioning --provisioned--> active <--freeze/unfreeze--> frozen
 *   any live state --release--> released (terminal; data kept, never served)
 * FREEZE/UNFREEZE while provisioning stay in provisioning: the wanted status is kept and the
 * instance is delivered in it (provisioned, then freeze). Plan and expiry changes (refresh,
 * upgrade) keep the state; reads (change check, license) only need a live instance. No I/O here:
 * the handlers hold the row lock and apply the verdict. */
#ifndef KOOISV_INSTANCE_STATE_H
#define KOOISV_INSTANCE_STATE_H
#include <stdbool.h>

typedef enum {
    INSTANCE_PROVISIONING = 0,
    INSTANCE_ACTIVE,
    INSTANCE_FROZEN,
    INSTANCE_RELEASED,
    INSTANCE__STATE_COUNT
} instance_state_t;

typedef enum {
    INSTANCE_EV_PROVISIONED = 0, /* the provisioning job stored the credentials */
    INSTANCE_EV_FREEZE,          /* updateInstanceStatus FREEZE */
    INSTANCE_EV_UNFREEZE,        /* updateInstanceStatus UNFREEZE */
    INSTANCE_EV_REFRESH,         /* refreshInstance: expiry/product change */
    INSTANCE_EV_UPGRADE,         /* upgradeInstance: plan change */
    INSTANCE_EV_RELEASE,         /* releaseInstance */
    INSTANCE_EV_CHECK,           /* changeInstanceCheck (read-only) */
    INSTANCE_EV_LICENSE,         /* getLicenseAsync */
    INSTANCE__EVENT_COUNT
} instance_event_t;

typedef enum {
    INSTANCE_APPLY = 0, /* allowed: move to *to (may equal from for data changes) */
    INSTANCE_NOOP,      /* already in the wanted state: answer success, change nothing */
    INSTANCE_BUSY,      /* not possible yet (still provisioning): answer 000004, retry later */
    INSTANCE_INVALID,   /* impossible: answer 000002 with *why */
} instance_verdict_t;

/* Verdict for event in state from; *to gets the next state (from unless APPLY changes it) and
 * *why a static message for BUSY/INVALID ("" otherwise). */
instance_verdict_t instance_transition(instance_state_t from, instance_event_t event,
                                       instance_state_t *to, const char **why);
/* Database/text name of a state ("provisioning"...). */
const char *instance_state_name(instance_state_t state);
/* Parse a state name; false if unknown. */
bool instance_state_parse(const char *name, instance_state_t *out);
/* Name of an event for history rows ("freeze"...). */
const char *instance_event_name(instance_event_t event);

#endif
