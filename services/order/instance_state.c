#include "instance_state.h"

#include <assert.h>
#include <string.h>

static const char *const state_names[INSTANCE__STATE_COUNT] = {"provisioning", "active", "frozen",
                                                               "released"};

static const char *const event_names[INSTANCE__EVENT_COUNT] = {
    "provisioned", "freeze", "unfreeze", "refresh", "upgrade", "release", "check", "license"};

typedef struct {
    instance_verdict_t verdict;
    instance_state_t to; /* meaningful for APPLY; NOOP and the errors stay in from */
    const char *why;
} rule_t;

/* clang-format off */
#define APPLY(s) {INSTANCE_APPLY, INSTANCE_##s, ""}
#define NOOP {INSTANCE_NOOP, INSTANCE__STATE_COUNT, ""}
#define BUSY(w) {INSTANCE_BUSY, INSTANCE__STATE_COUNT, w}
#define INVALID(w) {INSTANCE_INVALID, INSTANCE__STATE_COUNT, w}
#define RELEASED INVALID("instance is released")

/* rules[from][event]: the whole machine in one table so that every pair is decided on purpose. */
static const rule_t rules[INSTANCE__STATE_COUNT][INSTANCE__EVENT_COUNT] = {
    [INSTANCE_PROVISIONING] =
        {
            [INSTANCE_EV_PROVISIONED] = APPLY(ACTIVE),
            /* The status is accepted at once (Query Order may fail for an hour) and delivered
             * with the instance: the handler keeps it (freeze_requested) and provisioning ends
             * with PROVISIONED then FREEZE when it is set. */
            [INSTANCE_EV_FREEZE] = APPLY(PROVISIONING),
            [INSTANCE_EV_UNFREEZE] = APPLY(PROVISIONING),
            [INSTANCE_EV_REFRESH] = APPLY(PROVISIONING),
            [INSTANCE_EV_UPGRADE] = APPLY(PROVISIONING),
            [INSTANCE_EV_RELEASE] = APPLY(RELEASED),
            [INSTANCE_EV_CHECK] = APPLY(PROVISIONING),
            [INSTANCE_EV_LICENSE] = APPLY(PROVISIONING),
        },
    [INSTANCE_ACTIVE] =
        {
            [INSTANCE_EV_PROVISIONED] = NOOP, /* a re-run job finding its work done */
            [INSTANCE_EV_FREEZE] = APPLY(FROZEN),
            [INSTANCE_EV_UNFREEZE] = NOOP,
            [INSTANCE_EV_REFRESH] = APPLY(ACTIVE),
            [INSTANCE_EV_UPGRADE] = APPLY(ACTIVE),
            [INSTANCE_EV_RELEASE] = APPLY(RELEASED),
            [INSTANCE_EV_CHECK] = APPLY(ACTIVE),
            [INSTANCE_EV_LICENSE] = APPLY(ACTIVE),
        },
    [INSTANCE_FROZEN] =
        {
            [INSTANCE_EV_PROVISIONED] = NOOP,
            [INSTANCE_EV_FREEZE] = NOOP,
            [INSTANCE_EV_UNFREEZE] = APPLY(ACTIVE),
            /* A renewal of a frozen instance changes its expiry; unfreezing is a separate call. */
            [INSTANCE_EV_REFRESH] = APPLY(FROZEN),
            [INSTANCE_EV_UPGRADE] = APPLY(FROZEN),
            [INSTANCE_EV_RELEASE] = APPLY(RELEASED),
            [INSTANCE_EV_CHECK] = APPLY(FROZEN),
            [INSTANCE_EV_LICENSE] = APPLY(FROZEN),
        },
    [INSTANCE_RELEASED] =
        {
            [INSTANCE_EV_PROVISIONED] = RELEASED,
            [INSTANCE_EV_FREEZE] = RELEASED,
            [INSTANCE_EV_UNFREEZE] = RELEASED,
            [INSTANCE_EV_REFRESH] = RELEASED,
            [INSTANCE_EV_UPGRADE] = RELEASED,
            [INSTANCE_EV_RELEASE] = NOOP,
            [INSTANCE_EV_CHECK] = RELEASED,
            [INSTANCE_EV_LICENSE] = RELEASED,
        },
};
/* clang-format on */

instance_verdict_t instance_transition(instance_state_t from, instance_event_t event,
                                       instance_state_t *to, const char **why)
{
    assert(from >= 0 && from < INSTANCE__STATE_COUNT);
    assert(event >= 0 && event < INSTANCE__EVENT_COUNT);
    assert(to && why);
    const rule_t *r = &rules[from][event];
    *to = r->verdict == INSTANCE_APPLY ? r->to : from;
    *why = r->why;
    return r->verdict;
}

const char *instance_state_name(instance_state_t state)
{
    assert(state >= 0 && state < INSTANCE__STATE_COUNT);
    return state_names[state];
}

bool instance_state_parse(const char *name, instance_state_t *out)
{
    for (int i = 0; name && i < INSTANCE__STATE_COUNT; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *out = (instance_state_t)i;
            return true;
        }
    }
    return false;
}

const char *instance_event_name(instance_event_t event)
{
    assert(event >= 0 && event < INSTANCE__EVENT_COUNT);
    return event_names[event];
}
