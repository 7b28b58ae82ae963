/* zonemark: keeps the stored expiries in the configured marketplace time zone. The zone they
 * were read in is recorded in orders.compact_time_zone (migration 002 records "+08:00", what
 * earlier versions assumed). When KOOISV_MARKETPLACE_TIME_ZONE differs, every stored expiry is
 * turned back into the marketplace's wall time in the recorded zone (exact: that is how it was
 * made) and read again in the configured one; each change gets a history row ("rezone") and an
 * outbox event ("instance.expiry_corrected"), all in one transaction that also records the new
 * zone. Replicas starting together queue on the row lock; the second finds nothing to do. */
#include "order.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "timeutil.h"

const pg_stmt_t zonemark_stmts[] = {
    {"zonemark_lock", "SELECT zone FROM orders.compact_time_zone FOR UPDATE", 0},
    {"zonemark_expiries",
     "SELECT instance_id, state, (extract(epoch FROM expire_time) * 1000)::bigint"
     " FROM orders.instances WHERE expire_time IS NOT NULL ORDER BY seq FOR UPDATE",
     0},
    {"zonemark_set_expire",
     "UPDATE orders.instances SET expire_time = to_timestamp($2::bigint / 1000.0),"
     " updated_at = now() WHERE instance_id = $1",
     2},
    {"zonemark_record", "UPDATE orders.compact_time_zone SET zone = $1, changed_at = now()", 1},
};
const size_t zonemark_stmts_count = sizeof zonemark_stmts / sizeof zonemark_stmts[0];

typedef struct {
    const time_zone_t *zone;
    long changed;
    char recorded[64];
} zonemark_ctx_t;

static pg_status_t exec_void(pg_tx_t *tx, const char *stmt, int n, const char *const *p)
{
    PGresult *res = pg_tx_exec(tx, stmt, n, p);
    if (!res)
        return tx->failed;
    PQclear(res);
    return PG_OK;
}

/* Read one stored expiry again; PG_OK also when it stays as it is. */
static pg_status_t rezone_one(pg_tx_t *tx, zonemark_ctx_t *c, const time_zone_t *old,
                              const char *id, const char *state, int64_t ms)
{
    char wall[15], iso_old[32], iso_new[32], ms_text[24];
    int64_t now_ms;
    if (!time_parse_compact(c->zone, time_format_compact(old, ms, wall), &now_ms) || now_ms == ms)
        return PG_OK;
    snprintf(ms_text, sizeof ms_text, "%lld", (long long)now_ms);
    const char *p[] = {id, ms_text};
    pg_status_t st = exec_void(tx, "zonemark_set_expire", 2, p);
    if (st != PG_OK)
        return st;
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s}", "expireTime", wall, "fromZone",
                          time_zone_name(old), "toZone", time_zone_name(c->zone),
                          "previousExpireTime", time_format_iso(ms, iso_old, sizeof iso_old),
                          "newExpireTime", time_format_iso(now_ms, iso_new, sizeof iso_new));
    char *detail = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
    change_t ch = {.instance_id = id,
                   .event = "rezone",
                   .from_state = state,
                   .to_state = state,
                   .detail_json = detail,
                   .outbox_event = "instance.expiry_corrected"};
    st = change_record(tx, &ch);
    free(detail);
    if (st == PG_OK)
        c->changed++;
    return st;
}

static pg_status_t reconcile_body(pg_tx_t *tx, void *arg)
{
    zonemark_ctx_t *c = arg;
    pg_status_t st = PG_OK;
    c->changed = 0;
    PGresult *res = pg_tx_exec(tx, "zonemark_lock", 0, NULL);
    if (!res)
        return tx->failed;
    snprintf(c->recorded, sizeof c->recorded, "%s",
             PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "UTC");
    PQclear(res);
    if (strcmp(c->recorded, time_zone_name(c->zone)) == 0)
        return PG_ROLLBACK;
    char why[256];
    time_zone_t *old = time_zone_new(c->recorded, why, sizeof why);
    if (!old) {
        log_error(NULL, "orders.compact_time_zone holds %s: %s", c->recorded, why);
        return PG_FAIL;
    }
    res = pg_tx_exec(tx, "zonemark_expiries", 0, NULL);
    if (!res)
        st = tx->failed;
    for (int i = 0; res && st == PG_OK && i < PQntuples(res); i++)
        st = rezone_one(tx, c, old, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                        strtoll(PQgetvalue(res, i, 2), NULL, 10));
    PQclear(res);
    time_zone_destroy(&old);
    if (st != PG_OK)
        return st;
    const char *p[] = {time_zone_name(c->zone)};
    return exec_void(tx, "zonemark_record", 1, p);
}

int zonemark_reconcile(pg_session_t *db, const time_zone_t *zone)
{
    zonemark_ctx_t c = {.zone = zone};
    pg_status_t st = pg_tx_run(db, NULL, reconcile_body, &c);
    if (st == PG_ROLLBACK)
        return 0;
    if (st != PG_OK) {
        log_error(NULL, "cannot read the stored expiries in zone %s", time_zone_name(zone));
        return -1;
    }
    log_msg(c.changed ? LOG_WARN : LOG_INFO, NULL,
            "stored expiries were read as %s, the marketplace time zone is %s: %ld moved",
            c.recorded, time_zone_name(zone), c.changed);
    return 0;
}
