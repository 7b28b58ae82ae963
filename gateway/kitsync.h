/* kitsync: validation of the five kit sync bodies (spec §4) into envelope bodies. */
#ifndef KOOISV_KITSYNC_H
#define KOOISV_KITSYNC_H
#include <jansson.h>
#include <stddef.h>
#include "services.h"
#include "resultcode.h"
#include "envelope.pb-c.h"

/* True when name is one of tenantSync, applicationSync, authSync, singleOrgSync, allOrgSync. */
int kitsync_known(const char *name);
/* Validate body (a parsed JSON object) for sync call name and set env's body (oneof case and
 * message) and test_flag. Strings in the message are copies owned by env's body; release with
 * kitsync_free_body. On failure returns a spec §5 code (RC_INVALID) and writes a message naming
 * the field into msg; on success returns RC_OK and *svc_out names the owning service. */
const char *kitsync_build(const char *name, const json_t *body, Kooisv__Envelope *env,
                          service_id_t *svc_out, char *msg, size_t msglen);
/* Free the body kitsync_build attached to env (safe on an env without one). */
void kitsync_free_body(Kooisv__Envelope *env);
/* Resources the call names (tenant, app, org, user, instance, order), for the audit intent:
 * appends to *res (array of n pointers grown with xrealloc); each ResourceRef and its strings
 * are owned by the caller. */
void kitsync_resources(const Kooisv__Envelope *env, Kooisv__ResourceRef ***res, size_t *n);

#endif
