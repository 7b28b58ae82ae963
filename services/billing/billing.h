/* billing: the billing service's modules (services/billing). The service consumes the order
 * service's events into its ledger (ledger.c), takes usage from the seller's application
 * (intake.c) and answers operators (billingadmin.c). Schema "billing" (migrations/). */
#ifndef KOOISV_BILLING_H
#define KOOISV_BILLING_H
#include <stdbool.h>
#include <stddef.h>

#include "svcrt.h"

/* What every worker of the service shares (svcrt_def_t.svc); set up by main.c. */
typedef struct {
    const char *order_endpoints;  /* the order service's replicas (endpoint.h) */
    const char *order_server_key; /* their CURVE public key (Z85) */
    const char *consumer;         /* this consumer's name at the order service ("billing") */
    int poll_ms;                  /* pause between pulls when nothing was pending */
    int batch;                    /* events asked per pull */
    char *daily_products;         /* products billed daily: a text[] literal (ledger.h) */
} billing_state_t;

/* ---- billingadmin.c: operator actions (billing.ping, billing.instance) ---- */
extern const pg_stmt_t billingadmin_stmts[];
extern const size_t billingadmin_stmts_count;
/* Serve an admin action of billingadmin; false when req is not one of its actions. */
bool billingadmin_handle(svcrt_worker_t *w, svc_call_t *call, const Kooisv__AdminRequest *req);

#endif
