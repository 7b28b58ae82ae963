/* svcmetrics: the services' own Prometheus series in the gateway's /metrics. Each configured
 * service is asked for the admin action "metrics" over ZeroMQ (a fresh CURVE client per scrape,
 * a short timeout); its answer {"series":[{name,type,help,value,labels}]} (common/svcadmin.h) is
 * checked (names kooisv_*, label names [a-z_][a-z0-9_]*, finite values) and rendered in the text
 * exposition format with the label service=<name>; series of one name are grouped under one
 * HELP/TYPE. kooisv_service_metrics_up{service} says whether each service answered. */
#ifndef KOOISV_SVCMETRICS_H
#define KOOISV_SVCMETRICS_H
#include <jansson.h>

#include "services.h"

/* Append to all the series (a JSON array as a service answers it) that pass the checks, with
 * the label service=svc; returns how many were dropped (malformed, or past 2000 in all). */
size_t svcmetrics_accept(json_t *all, const json_t *series, const char *svc);
/* Append to all (a JSON array) the series of svc, checked and labelled service=<name>; series
 * that fail the checks are dropped (logged). 0 when svc answered, -1 otherwise. */
int svcmetrics_fetch(service_id_t svc, const char *endpoints, const char *server_key,
                     int timeout_ms, json_t *all);
/* Text exposition of series (as svcmetrics_fetch builds them), grouped by name. Caller owns
 * the result. */
char *svcmetrics_render(json_t *series);
/* Ask every configured service (endpoints[s] non-empty) and render their series plus
 * kooisv_service_metrics_up. Caller owns the result. */
char *svcmetrics_collect(const char *const endpoints[SVC__COUNT],
                         const char *const server_keys[SVC__COUNT], int timeout_ms);

#endif
