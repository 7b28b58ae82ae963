/* basicreq: validation of the basic-interface bodies (spec §3) into envelope bodies. Every field
 * the spec names is checked here, once, so the order service receives only well-formed input:
 * JSON strings only, mandatory fields present and non-empty, lengths, enums, calendar dates. */
#ifndef KOOISV_BASICREQ_H
#define KOOISV_BASICREQ_H
#include <jansson.h>
#include <stddef.h>
#include "envelope.pb-c.h"
#include "resultcode.h"
#include "resref.h"

typedef enum {
    BASIC_NEW_INSTANCE = 0,
    BASIC_QUERY_INSTANCE,
    BASIC_REFRESH_INSTANCE,
    BASIC_UPDATE_INSTANCE_STATUS,
    BASIC_RELEASE_INSTANCE,
    BASIC_UPGRADE_INSTANCE,
    BASIC_CHANGE_INSTANCE_CHECK,
    BASIC_GET_LICENSE_ASYNC,
    BASIC__COUNT
} basic_activity_t;

#define BASICREQ_ID_MAX 64            /* characters in any id field */
#define BASICREQ_INSTANCE_IDS_MAX 100 /* ids in one queryInstance */
#define BASICREQ_FINGERPRINT_MAX 1024 /* characters in deviceFingerprint */

/* The activity body names, or -1 when "activity" is absent, not a string or unknown. */
int basicreq_activity(const json_t *body);
/* Wire name of an activity ("newInstance"...). */
const char *basicreq_activity_name(basic_activity_t activity);
/* Validate body (any parsed JSON value) and set env's body (oneof case and message) and
 * test_flag. Strings in the message are copies owned by env's body: release them with
 * basicreq_free_body. Returns RC_OK, or RC_INVALID with a message naming the field in msg. */
const char *basicreq_build(const json_t *body, Kooisv__Envelope *env, char *msg, size_t msglen);
/* Free the body basicreq_build attached to env and reset its case (safe without one). */
void basicreq_free_body(Kooisv__Envelope *env);
/* Resources a basic body names (instances, order, order line), for the audit intent: appends
 * to *res (resref_add); each ResourceRef and its strings are owned by the caller. */
void basicreq_resources(const Kooisv__Envelope *env, Kooisv__ResourceRef ***res, size_t *n);

#endif
