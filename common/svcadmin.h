/* svcadmin: the operator side of a service: AdminRequest arguments in, AdminResult JSON out.
 * The gateway's admin API sends AdminRequest{action, args} to the service that owns the data;
 * the answer is one JSON document in Reply.admin. */
#ifndef KOOISV_SVCADMIN_H
#define KOOISV_SVCADMIN_H
#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>

#include "svc.h"

/* Value of an admin argument, "" when absent. */
const char *svcadmin_arg(const Kooisv__AdminRequest *req, const char *key);
/* Whether s is a whole number written in 1..18 decimal digits (nothing else: no sign, no blank)
 * within [min, max]; its value in *out when it is. The one rule of every count and cursor an
 * operator sends (services and the gateway's admin API alike). */
bool svcadmin_count(const char *s, int64_t min, int64_t max, int64_t *out);
/* The "limit" argument of req: dflt when absent or empty, else a count in 1..max
 * (svcadmin_count), written into out; otherwise answers call 000002 "limit: must be 1..max"
 * and returns false. */
bool svcadmin_limit(svc_call_t *call, const Kooisv__AdminRequest *req, long dflt, long max,
                    char out[16]);
/* Answer call with json (a JSON document's text, copied) as the AdminResult and 000000. */
void svcadmin_reply_text(svc_call_t *call, const char *json);
/* Answer call with doc as the AdminResult JSON and 000000 (steals doc). */
void svcadmin_reply(svc_call_t *call, json_t *doc);
/* svcadmin_reply for a document holding a secret: the serialised copy is wiped once the reply
 * holds it (steals doc). */
void svcadmin_reply_secret(svc_call_t *call, json_t *doc);
/* Compact text of v (raw UTF-8, any value), as admin answers and events carry it. Caller owns
 * the string; aborts on allocation failure like xmalloc. */
char *svcadmin_json_text(const json_t *v);

/* Append one Prometheus series to series (a JSON array, the "series" of the "metrics" admin
 * answer): {"name","type","help","value","labels":{k:v}}. name is kooisv_[a-z0-9_]+, type
 * "gauge" or "counter"; labels is NULL or a NULL-terminated list of name, value pairs. The
 * gateway adds the label service=<answering service> when it renders /metrics. */
void svcadmin_series_add(json_t *series, const char *name, const char *type, const char *help,
                         double value, const char *const *labels);

#endif
