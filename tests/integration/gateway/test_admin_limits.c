/* Every admin route that pages takes "limit" by one rule (svcadmin_count): 1..18 decimal
 * digits within the route's range. Anything else (a trailing letter, a sign, a blank, zero, one
 * past the maximum, a number past 64 bits) is refused 400 with "limit: must be 1..<max>", from
 * the gateway or from the service that owns the data, and for the fan-out route (outbox.failed,
 * asked of order, tenant and app) as 400 too, not as an outage. A good limit answers 200. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kclient.h"
#include "xmalloc.h"

typedef struct {
    const char *path; /* with its other parameters, ending in '?' or '&' */
    long max;
} route_t;

static const route_t routes[] = {
    {"/v1/instances?", 500},
    {"/v1/jobs/failed?", 1000},
    {"/v1/outbox/failed?", 1000},
    {"/v1/tenants/T-LIMITS/users?instance=I-LIMITS&app=web&", 10000},
    {"/v1/usage/failed?", 1000},
    {"/v1/billing/exports?", 500},
    {"/v1/audit?", 1000},
};

/* GET path+limit=value as an operator: the HTTP status, the body in *body (caller frees). */
static int get_limit(const route_t *r, const char *value, char **body)
{
    char *url = xasprintf("%slimit=%s", r->path, value);
    kresp_t resp;
    assert_int_equal(kc_admin("GET", url, suite_get("KOOISV_OPERATOR_ROLE_TOKEN"), NULL, &resp), 0);
    int status = resp.status;
    *body = xstrdup(resp.body ? resp.body : "");
    kresp_free(&resp);
    free(url);
    return status;
}

static void test_bad_limits_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        const route_t *r = &routes[i];
        char past[32], want[64];
        snprintf(past, sizeof past, "%ld", r->max + 1);
        snprintf(want, sizeof want, "limit: must be 1..%ld", r->max);
        const char *bad[] = {"10x", "0", "-1", "%2B5", "%205", "abc", "1e3", "0x10",
                             past,  "99999999999999999999"};
        for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
            char *body;
            int status = get_limit(r, bad[k], &body);
            if (status != 400 || !strstr(body, want))
                fail_msg("%slimit=%s: HTTP %d, wanted 400 with \"%s\": %s", r->path, bad[k], status,
                         want, body);
            free(body);
        }
    }
}

static void test_good_limits_answered(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        char max[32];
        snprintf(max, sizeof max, "%ld", routes[i].max);
        const char *good[] = {"1", max};
        for (size_t k = 0; k < 2; k++) {
            char *body;
            int status = get_limit(&routes[i], good[k], &body);
            if (status != 200)
                fail_msg("%slimit=%s: HTTP %d, wanted 200: %s", routes[i].path, good[k], status,
                         body);
            free(body);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_limits_refused),
        cmocka_unit_test(test_good_limits_answered),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
