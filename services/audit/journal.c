#include "journal.h"
#include "resultcode.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cryptoutil.h"
#include "log.h"
#include "pgutil.h"
#include "pgworker.h"
#include "timeutil.h"
#include "xmalloc.h"

/* How often the idle writer logs the chain head (an anchor outside the database: removing the
 * newest entries is only detectable against a copy kept elsewhere). */
#define JOURNAL_TICK_MS 30000
/* Expired nonces are deleted by a thread of their own, off the writer's path, every
 * PRUNE_POLL_MS in slices of PRUNE_SLICE rows (a full slice is followed by the next at once):
 * the table stays at the replay window's size whatever the rate of calls. */
#define PRUNE_POLL_MS 1000
#define PRUNE_SLICE 2000
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
/* After the head this writer knew turned out to have moved (another replica appends too), it
 * reads the head before each batch for this long before it trusts its own again. */
#define HEAD_TRUST_PAUSE_MS 1000
/* expect_head's refusal (migration 005). */
#define SQLSTATE_HEAD_MOVED "KA001"
/* Outcomes alone wait up to this long for a record that cannot wait (an intent, whose call runs
 * only once it is committed, or a caller blocked in journal_append_*) and go in its transaction:
 * a call's outcome then shares the next call's commit instead of needing one of its own. Nothing
 * waits on an outcome but the gateway's retry queue, which keeps it until it is answered. */
#define OUTCOME_LINGER_MS 10

typedef struct item {
    struct item *next;
    const entry_intent_t *intent; /* exactly one of intent and outcome */
    const entry_outcome_t *outcome;
    journal_result_t *result;
    bool done;
    pthread_cond_t cv; /* its waiter sleeps here: a batch wakes only its own waiters */
    /* Staged by the writer for one attempt; published only after COMMIT. */
    int dup_of;   /* earlier item of the batch with the same kind and request id, or -1 */
    bool known;   /* already in the trail */
    bool refused; /* 000002: outcome without an intent */
    bool replay;
    const char *replay_reason;
    int64_t seq;
    /* A submitted record (journal_submit_*): the item is on the heap and owns its record and
     * result; done runs on the writer thread once the batch is published. */
    journal_done_fn done_fn;
    void *done_arg;
    entry_intent_t own_intent;
    entry_outcome_t own_outcome;
    journal_result_t own_result;
} item_t;

/* Records this writer committed lately, by kind ('I', 'O') and request id. The trail is
 * append-only, so they are in it for good: a retried record, or an outcome whose intent is one of
 * them, is known without asking the database. Two generations of RECENT_GEN_MAX: when the
 * current one is full the older is forgotten. Used by the writer thread only. */
#define RECENT_BUCKETS 16384
#define RECENT_GEN_MAX 32768

typedef struct recent {
    struct recent *next;
    char kind;
    bool replay; /* intents: the nonce was refused */
    int64_t seq;
    char rid[];
} recent_t;

typedef struct {
    recent_t **bucket; /* RECENT_BUCKETS chains */
    size_t count;
} recent_gen_t;

struct journal {
    journal_config_t cfg;
    recent_gen_t recent[2];
    int recent_cur;
    bool conflict; /* the batch's insert met a record already in the trail: redo it carefully */
    pthread_mutex_t mu;
    pthread_cond_t work; /* the writer waits for records */
    item_t *head, *tail;
    int queued;     /* records in [head, tail] */
    int urgent;     /* of which intents or blocked callers' records (item_urgent) */
    bool lingering; /* the writer waits for an urgent record: outcomes queue without waking it */
    bool stopping;
    pthread_t thread;
    pg_session_t *db; /* the writer's; NULL until the database was first reached */
    pgworker_t *pruner; /* deletes expired nonces on its own session */
    /* The head after this writer's last commit: the next batch appends after it without reading
     * it first (journal_expect_head checks it in the same round trip). */
    bool head_known;
    int64_t known_seq;
    uint8_t known_hash[ENTRY_HASH_LEN];
    int64_t trust_after_us; /* time_mono_us: the known head is not used before then */
    pg_tx_t *tx;      /* the transaction the writer is in, if any */
    journal_stats_t stats;
    int64_t logged_seq;
    char setup_sql[64]; /* the sessions' statement timeout */
    bool head_file_failed; /* warned once until a write succeeds again */
};

#define INTENTS_INSERT                                                                          \
    "INSERT INTO audit.intents (seq, request_id, trace_id, received_ms, caller_kind, caller_id,"  \
    " event_type, resources, source_addr, test_flag, nonce, nonce_ts_ms, reject_reason,"         \
    " reject_code, prev_hash, hash)"                                                             \
    " SELECT x.seq, x.request_id, x.trace_id, x.received_ms, x.caller_kind, x.caller_id,"        \
    "  x.event_type, x.resources, x.source_addr, x.test_flag, x.nonce, x.nonce_ts_ms,"           \
    "  x.reject_reason, x.reject_code, decode(x.prev_hash, 'hex'), decode(x.hash, 'hex')"        \
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq bigint, request_id text, trace_id text,"       \
    "  received_ms bigint, caller_kind text, caller_id text, event_type text, resources jsonb,"  \
    "  source_addr text, test_flag boolean, nonce text, nonce_ts_ms bigint,"                     \
    "  reject_reason text, reject_code text, prev_hash text, hash text)"
#define NONCES_INSERT                                                                           \
    "INSERT INTO audit.nonces (caller_id, nonce, request_id, nonce_ts_ms, recorded_ms)"          \
    " SELECT x.caller_id, x.nonce, x.request_id, x.nonce_ts_ms, $2::bigint"                      \
    " FROM jsonb_to_recordset($1::jsonb)"                                                        \
    "  AS x(caller_id text, nonce text, request_id text, nonce_ts_ms bigint)"
#define OUTCOMES_INSERT                                                                         \
    "INSERT INTO audit.outcomes (seq, request_id, recorded_ms, result_code, result_msg,"         \
    " latency_us, http_status, prev_hash, hash)"                                                 \
    " SELECT x.seq, x.request_id, x.recorded_ms, x.result_code, x.result_msg, x.latency_us,"     \
    "  x.http_status, decode(x.prev_hash, 'hex'), decode(x.hash, 'hex')"                         \
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq bigint, request_id text, recorded_ms bigint,"  \
    "  result_code text, result_msg text, latency_us bigint, http_status bigint,"                \
    "  prev_hash text, hash text)"

static const pg_stmt_t journal_stmts[] = {
    {"journal_lock", "SELECT pg_advisory_xact_lock(hashtextextended('kooisv-audit-chain', 0))", 0},
    {"journal_head",
     "SELECT seq, encode(hash, 'hex') FROM ("
     " (SELECT seq, hash FROM audit.intents ORDER BY seq DESC LIMIT 1)"
     " UNION ALL"
     " (SELECT seq, hash FROM audit.outcomes ORDER BY seq DESC LIMIT 1)) h"
     " ORDER BY seq DESC LIMIT 1",
     0},
    /* Fails the transaction with SQLSTATE_HEAD_MOVED unless ($1, $2) is the head. */
    {"journal_expect_head", "SELECT audit.expect_head($1::bigint, decode($2, 'hex'))", 2},
    /* $1: request ids of the batch's intents and outcomes, $2: of its outcomes (JSON arrays). */
    {"journal_known",
     "SELECT 'I', request_id, seq, reject_reason FROM audit.intents"
     " WHERE request_id IN (SELECT jsonb_array_elements_text($1::jsonb))"
     " UNION ALL "
     "SELECT 'O', request_id, seq, '' FROM audit.outcomes"
     " WHERE request_id IN (SELECT jsonb_array_elements_text($2::jsonb))",
     2},
    /* The replay check is this unique key: a conflicting nonce is not returned. */
    {"journal_nonce", NONCES_INSERT " ON CONFLICT DO NOTHING RETURNING request_id", 2},
    /* ON CONFLICT: a record this writer took for new was stored already (by another replica, or
     * before the writer's memory): fewer rows come back, and the batch is redone carefully. */
    {"journal_intents", INTENTS_INSERT " ON CONFLICT (request_id) DO NOTHING RETURNING seq", 1},
    {"journal_outcomes", OUTCOMES_INSERT " ON CONFLICT (request_id) DO NOTHING RETURNING seq", 1},
    /* The first try of a batch queues its nonces and records behind one another and sends them
     * with the COMMIT: any conflict (a replayed nonce, a record stored already) is a unique
     * violation that fails the transaction, and the batch is redone carefully. */
    {"journal_nonce_new", NONCES_INSERT, 2},
    {"journal_intents_new", INTENTS_INSERT, 1},
    {"journal_outcomes_new", OUTCOMES_INSERT, 1},
};
#define JOURNAL_NSTMTS (sizeof journal_stmts / sizeof *journal_stmts)

/* The pruner's: one slice of expired nonces. (No SKIP LOCKED: it needs UPDATE, which the service's
 * role does not have on the trail. Replicas' pruners meeting on a slice wait for each other.) */
static const pg_stmt_t prune_stmts[] = {
    {"journal_prune",
     "DELETE FROM audit.nonces WHERE ctid IN (SELECT ctid FROM audit.nonces"
     " WHERE recorded_ms < $1::bigint AND nonce_ts_ms < $1::bigint"
     " LIMIT " STRINGIFY(PRUNE_SLICE) ")",
     1},
};

/* ---------------------------------------------------------------- connection */

static bool conn_ready(journal_t *self)
{
    if (self->db)
        return pg_session_ready(self->db, NULL);
    pg_session_config_t sc = {.dsn = self->cfg.dsn,
                              .app = "kooisv-audit-writer",
                              .setup_sql = self->setup_sql,
                              .stmts = journal_stmts,
                              .nstmts = JOURNAL_NSTMTS,
                              .wait_s = 0};
    self->db = pg_session_new(&sc);
    return self->db != NULL;
}

/* Run a statement, inside the writer's transaction when there is one; false (logged) on failure. */
static bool exec_ok(journal_t *self, const char *stmt, int n, const char *const *params,
                    PGresult **out)
{
    PGresult *r = self->tx ? pg_tx_exec(self->tx, stmt, n, params)
                           : pg_session_exec(self->db, NULL, stmt, n, params, NULL);
    if (!r)
        return false;
    if (out)
        *out = r;
    else
        PQclear(r);
    return true;
}

/* Queue a statement in the writer's transaction (it goes out with the next one or the COMMIT,
 * and its failure fails the transaction there); false (logged) when it could not be queued. */
static bool queue_ok(journal_t *self, const char *stmt, int n, const char *const *params)
{
    return pg_tx_queue(self->tx, stmt, n, params) == PG_OK;
}

/* ---------------------------------------------------------------- recent records */

static size_t recent_hash(char kind, const char *rid)
{
    uint64_t h = 1469598103934665603ull ^ (uint8_t)kind;
    for (const unsigned char *p = (const unsigned char *)rid; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % RECENT_BUCKETS);
}

static void recent_clear(recent_gen_t *g)
{
    for (size_t b = 0; g->bucket && b < RECENT_BUCKETS; b++)
        for (recent_t *e = g->bucket[b], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(g->bucket);
    g->bucket = NULL;
    g->count = 0;
}

static const recent_t *recent_find(const journal_t *self, char kind, const char *rid)
{
    size_t h = recent_hash(kind, rid);
    for (int k = 0; k < 2; k++) {
        const recent_gen_t *g = &self->recent[(self->recent_cur + k) % 2];
        for (const recent_t *e = g->bucket ? g->bucket[h] : NULL; e; e = e->next)
            if (e->kind == kind && strcmp(e->rid, rid) == 0)
                return e;
    }
    return NULL;
}

/* Remember a record committed (or found) in the trail. */
static void recent_add(journal_t *self, char kind, const char *rid, int64_t seq, bool replay)
{
    if (recent_find(self, kind, rid))
        return;
    recent_gen_t *g = &self->recent[self->recent_cur];
    if (g->count >= RECENT_GEN_MAX) {
        self->recent_cur = 1 - self->recent_cur;
        g = &self->recent[self->recent_cur];
        recent_clear(g);
    }
    if (!g->bucket)
        g->bucket = xcalloc(RECENT_BUCKETS, sizeof *g->bucket);
    size_t len = strlen(rid);
    recent_t *e = xmalloc(sizeof *e + len + 1);
    e->kind = kind;
    e->seq = seq;
    e->replay = replay;
    memcpy(e->rid, rid, len + 1);
    size_t h = recent_hash(kind, rid);
    e->next = g->bucket[h];
    g->bucket[h] = e;
    g->count++;
}

/* ---------------------------------------------------------------- one batch */

static const char *item_request_id(const item_t *it)
{
    return it->intent ? it->intent->request_id : it->outcome->request_id;
}

static bool same_request(const item_t *a, const item_t *b)
{
    return (a->intent != NULL) == (b->intent != NULL) &&
           strcmp(item_request_id(a), item_request_id(b)) == 0;
}

static json_t *resources_json(const entry_intent_t *in)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < in->nresources; i++)
        json_array_append_new(
            arr, json_pack("{s:s, s:s}", "kind", in->resources[i].kind, "id", in->resources[i].id));
    return arr;
}

static char *json_take_dump(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return s;
}

/* Mark items already in the trail (a retried request) and learn which intents exist: first from
 * the writer's memory of recent records, then from the database. Careful: every record the
 * memory does not know is looked up. Not careful: only the intents of outcomes (neither in the
 * memory nor in the batch); other records are taken for new, and an insert that meets one
 * already stored sets self->conflict (the batch is then redone carefully). */
static bool stage_known(journal_t *self, item_t **items, int n, json_t *intent_ids, bool careful)
{
    json_t *all = json_array(), *outs = json_array(), *batch_intents = json_object();
    for (int i = 0; i < n; i++) {
        item_t *it = items[i];
        const char *rid = item_request_id(it);
        if (it->intent)
            json_object_set_new(batch_intents, rid, json_true());
        const recent_t *e = recent_find(self, it->intent ? 'I' : 'O', rid);
        if (e) {
            it->known = true;
            it->seq = e->seq;
            it->replay = e->replay;
        }
        /* an intent known, or the intent of an outcome remembered: it exists */
        if (it->intent ? e != NULL : recent_find(self, 'I', rid) != NULL)
            json_object_set_new(intent_ids, rid, json_true());
    }
    for (int i = 0; i < n; i++) {
        item_t *it = items[i];
        const char *rid = item_request_id(it);
        if (careful ? !it->known
                    : it->outcome && !json_object_get(intent_ids, rid) &&
                          !json_object_get(batch_intents, rid))
            json_array_append_new(all, json_string(rid));
        if (careful && it->outcome && !it->known)
            json_array_append_new(outs, json_string(rid));
    }
    json_decref(batch_intents);
    if (json_array_size(all) == 0 && json_array_size(outs) == 0) {
        json_decref(all);
        json_decref(outs);
        return true;
    }
    char *p1 = json_take_dump(all), *p2 = json_take_dump(outs);
    const char *params[] = {p1, p2};
    PGresult *r = NULL;
    bool ok = exec_ok(self, "journal_known", 2, params, &r);
    free(p1);
    free(p2);
    if (!ok)
        return false;
    for (int row = 0; row < PQntuples(r); row++) {
        bool is_intent = pg_value(r, row, 0)[0] == 'I';
        const char *rid = pg_value(r, row, 1);
        int64_t seq = strtoll(pg_value(r, row, 2), NULL, 10);
        const char *reason = pg_value(r, row, 3);
        if (is_intent)
            json_object_set_new(intent_ids, rid, json_true());
        for (int i = 0; i < n; i++) {
            item_t *it = items[i];
            if ((it->intent != NULL) != is_intent || strcmp(item_request_id(it), rid) != 0)
                continue;
            it->known = true;
            it->seq = seq;
            it->replay = is_intent && (strcmp(reason, JOURNAL_REPLAYED) == 0 ||
                                       strcmp(reason, JOURNAL_STALE_NONCE) == 0);
        }
    }
    PQclear(r);
    return true;
}

/* Claim the nonces of new, accepted intents; a nonce the database refuses is a replay. Careful:
 * the insert returns the nonces it took, and the others' intents are recorded as replays.
 * Otherwise every nonce is taken for new and its insert queued: a replay fails the batch's
 * transaction, to be redone carefully. */
static bool stage_nonces(journal_t *self, item_t **items, int n, int64_t now, bool careful)
{
    json_t *rows = json_array();
    int64_t oldest = now - self->cfg.nonce_window_ms - self->cfg.nonce_margin_ms;
    for (int i = 0; i < n; i++) {
        item_t *it = items[i];
        const entry_intent_t *in = it->intent;
        if (!in || it->known || it->dup_of >= 0 || !*in->nonce || *in->reject_code)
            continue;
        /* Nonces this old may already be pruned: the unique key could not see a replay. */
        if (in->nonce_ts_ms < oldest) {
            it->replay = true;
            it->replay_reason = JOURNAL_STALE_NONCE;
            continue;
        }
        if (careful) {
            it->replay = true; /* until the insert returns it */
            it->replay_reason = JOURNAL_REPLAYED;
        }
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:I}", "caller_id", in->caller_id,
                                              "nonce", in->nonce, "request_id", in->request_id,
                                              "nonce_ts_ms", (json_int_t)in->nonce_ts_ms));
    }
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return true;
    }
    char *p1 = json_take_dump(rows);
    char nowtxt[24];
    snprintf(nowtxt, sizeof nowtxt, "%lld", (long long)now);
    const char *params[] = {p1, nowtxt};
    if (!careful) {
        bool queued = queue_ok(self, "journal_nonce_new", 2, params);
        free(p1);
        return queued;
    }
    PGresult *r = NULL;
    bool ok = exec_ok(self, "journal_nonce", 2, params, &r);
    free(p1);
    if (!ok)
        return false;
    for (int row = 0; row < PQntuples(r); row++) {
        const char *rid = pg_value(r, row, 0);
        for (int i = 0; i < n; i++)
            if (items[i]->intent && items[i]->dup_of < 0 &&
                strcmp(items[i]->intent->request_id, rid) == 0) {
                items[i]->replay = false;
                items[i]->replay_reason = NULL;
            }
    }
    PQclear(r);
    return true;
}

static void add_hash_fields(json_t *row, const uint8_t prev[32], const uint8_t hash[32])
{
    char hex[2 * ENTRY_HASH_LEN + 1];
    json_object_set_new(row, "prev_hash", json_string(hex_encode(prev, ENTRY_HASH_LEN, hex)));
    json_object_set_new(row, "hash", json_string(hex_encode(hash, ENTRY_HASH_LEN, hex)));
}

/* Chain the new records after the head: intents first, so that an outcome sent together with
 * its intent (a call the gateway rejected) finds it. Careful: each insert skips a record stored
 * already and says so (the batch is then rolled back: self->conflict). Otherwise the inserts
 * are queued, and a record stored already fails the transaction at COMMIT. */
static bool stage_inserts(journal_t *self, item_t **items, int n, json_t *intent_ids,
                          int64_t *head_seq, uint8_t head_hash[32], bool careful)
{
    json_t *irows = json_array(), *orows = json_array();
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            item_t *it = items[i];
            if (it->known || it->dup_of >= 0 || (pass == 0) != (it->intent != NULL))
                continue;
            uint8_t hash[ENTRY_HASH_LEN];
            if (it->intent) {
                entry_intent_t e = *it->intent;
                e.seq = *head_seq + 1;
                if (it->replay) {
                    e.reject_reason = (char *)it->replay_reason;
                    e.reject_code = (char *)RC_AUTH;
                }
                entry_intent_hash(&e, self->cfg.chain, head_hash, hash);
                json_t *row = json_pack(
                    "{s:I, s:s, s:s, s:I, s:s, s:s, s:s, s:o, s:s, s:b, s:s, s:I, s:s, s:s}", "seq",
                    (json_int_t)e.seq, "request_id", e.request_id, "trace_id", e.trace_id,
                    "received_ms", (json_int_t)e.received_ms, "caller_kind", e.caller_kind,
                    "caller_id", e.caller_id, "event_type", e.event_type, "resources",
                    resources_json(&e), "source_addr", e.source_addr, "test_flag", (int)e.test_flag,
                    "nonce", e.nonce, "nonce_ts_ms", (json_int_t)e.nonce_ts_ms, "reject_reason",
                    e.reject_reason, "reject_code", e.reject_code);
                if (!row)
                    goto bad_row;
                add_hash_fields(row, head_hash, hash);
                json_array_append_new(irows, row);
                json_object_set_new(intent_ids, e.request_id, json_true());
                it->seq = e.seq;
            } else {
                if (!json_object_get(intent_ids, it->outcome->request_id)) {
                    it->refused = true;
                    continue;
                }
                entry_outcome_t e = *it->outcome;
                e.seq = *head_seq + 1;
                entry_outcome_hash(&e, self->cfg.chain, head_hash, hash);
                json_t *row = json_pack("{s:I, s:s, s:I, s:s, s:s, s:I, s:I}", "seq",
                                        (json_int_t)e.seq, "request_id", e.request_id,
                                        "recorded_ms", (json_int_t)e.recorded_ms, "result_code",
                                        e.result_code, "result_msg", e.result_msg, "latency_us",
                                        (json_int_t)e.latency_us, "http_status",
                                        (json_int_t)e.http_status);
                if (!row)
                    goto bad_row;
                add_hash_fields(row, head_hash, hash);
                json_array_append_new(orows, row);
                it->seq = e.seq;
            }
            *head_seq += 1;
            memcpy(head_hash, hash, ENTRY_HASH_LEN);
        }
    }
    bool ok = true;
    json_t *sets[2] = {irows, orows};
    const char *stmts[2] = {"journal_intents", "journal_outcomes"};
    const char *queued[2] = {"journal_intents_new", "journal_outcomes_new"};
    for (int k = 0; k < 2; k++) {
        if (ok && json_array_size(sets[k]) > 0 && !careful) {
            char *p = json_dumps(sets[k], JSON_COMPACT);
            const char *params[] = {p};
            ok = p && queue_ok(self, queued[k], 1, params);
            free(p);
        } else if (ok && json_array_size(sets[k]) > 0) {
            char *p = json_dumps(sets[k], JSON_COMPACT);
            const char *params[] = {p};
            PGresult *r = NULL;
            ok = exec_ok(self, stmts[k], 1, params, &r);
            if (ok && (size_t)PQntuples(r) != json_array_size(sets[k])) {
                /* a record taken for new is in the trail already: not one row of this batch
                 * may stand (the chain would have a gap) */
                self->conflict = true;
                ok = false;
            }
            PQclear(r);
            free(p);
        }
        json_decref(sets[k]);
    }
    return ok;
bad_row:
    /* Only text that is not UTF-8 makes json_pack fail, and intake cleans every string. */
    log_error(NULL, "audit journal: a record could not be encoded");
    json_decref(irows);
    json_decref(orows);
    return false;
}

/* The committed head into the head file (a copy for operators to keep outside the database):
 * written to a temporary file beside it and renamed, so a reader never sees half a line. The
 * temporary file is this process's own (host name and pid): replicas sharing the folder (the
 * compose file's volume) must not rename each other's file away. */
static void head_publish(journal_t *self, int64_t seq, const uint8_t hash[ENTRY_HASH_LEN])
{
    const char *path = self->cfg.head_file;
    if (!path || !*path || seq <= 0)
        return;
    char tmp[4096], hex[2 * ENTRY_HASH_LEN + 1], host[65] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    if (snprintf(tmp, sizeof tmp, "%s.%s-%ld.tmp", path, host, (long)getpid()) >= (int)sizeof tmp)
        return;
    FILE *f = fopen(tmp, "w");
    bool ok =
        f && fprintf(f, "%lld:%s\n", (long long)seq, hex_encode(hash, ENTRY_HASH_LEN, hex)) > 0;
    ok = f && fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (!self->head_file_failed)
            log_warn(NULL, "audit chain head: cannot write %s: %s", path, strerror(errno));
        self->head_file_failed = true;
        unlink(tmp);
        return;
    }
    self->head_file_failed = false;
}

typedef struct {
    journal_t *self;
    item_t **items;
    int n;
    bool careful;     /* look up every record the writer's memory does not know */
    bool use_known;   /* append after the writer's known head instead of reading it */
    int64_t head_seq; /* the chain head after the batch */
    uint8_t head_hash[ENTRY_HASH_LEN];
} batch_t;

/* The batch's transaction body: may run more than once, so it stages from scratch. */
static pg_status_t batch_body(pg_tx_t *tx, void *arg)
{
    batch_t *b = arg;
    journal_t *self = b->self;
    item_t **items = b->items;
    int n = b->n;
    for (int i = 0; i < n; i++) {
        item_t *it = items[i];
        it->dup_of = -1;
        it->known = it->refused = it->replay = false;
        it->replay_reason = NULL;
        it->seq = 0;
        for (int j = 0; j < i; j++)
            if (items[j]->dup_of < 0 && same_request(items[j], it)) {
                it->dup_of = j;
                break;
            }
    }
    self->tx = tx;
    json_t *intent_ids = json_object();
    b->head_seq = 0;
    memset(b->head_hash, 0, sizeof b->head_hash);
    PGresult *r = NULL;
    bool ok = queue_ok(self, "journal_lock", 0, NULL);
    if (ok && b->use_known) {
        /* The head of the writer's last commit, checked under the lock in the round trip that
         * carries the rows and the COMMIT: the whole batch in one round trip. */
        char seq[24], hex[2 * ENTRY_HASH_LEN + 1];
        snprintf(seq, sizeof seq, "%lld", (long long)self->known_seq);
        const char *params[] = {seq, hex_encode(self->known_hash, ENTRY_HASH_LEN, hex)};
        ok = queue_ok(self, "journal_expect_head", 2, params);
        b->head_seq = self->known_seq;
        memcpy(b->head_hash, self->known_hash, sizeof b->head_hash);
    } else if (ok) {
        /* the lock rides with BEGIN and the head's read: one round trip */
        ok = exec_ok(self, "journal_head", 0, NULL, &r);
    }
    if (ok && r && PQntuples(r) == 1) {
        b->head_seq = strtoll(pg_value(r, 0, 0), NULL, 10);
        if (!entry_hash_from_hex(pg_value(r, 0, 1), b->head_hash)) {
            log_error(NULL, "audit journal: chain head %lld has no valid hash",
                      (long long)b->head_seq);
            ok = false;
        }
    }
    PQclear(r);
    int64_t now = time_now_ms();
    ok = ok && stage_known(self, items, n, intent_ids, b->careful) &&
         stage_nonces(self, items, n, now, b->careful) &&
         stage_inserts(self, items, n, intent_ids, &b->head_seq, b->head_hash, b->careful);
    json_decref(intent_ids);
    self->tx = NULL;
    return ok ? PG_OK : self->conflict ? PG_ROLLBACK : PG_FAIL;
}

/* One transaction for the whole batch. true once committed. */
static bool batch_commit(journal_t *self, item_t **items, int n)
{
    if (!conn_ready(self))
        return false;
    batch_t b = {.self = self, .items = items, .n = n};
    b.use_known = self->head_known && time_mono_us() >= self->trust_after_us;
    self->head_known = false; /* until this batch committed */
    self->conflict = false;
    pg_status_t st = pg_tx_run(self->db, NULL, batch_body, &b);
    if (st == PG_FAIL && b.use_known &&
        strcmp(pg_last_failure_sqlstate(), SQLSTATE_HEAD_MOVED) == 0) {
        log_info(NULL, "audit journal: the chain head moved since this writer's last commit "
                       "(another writer): the batch is appended after the stored head");
        self->trust_after_us = time_mono_us() + (int64_t)HEAD_TRUST_PAUSE_MS * 1000;
        b.use_known = false;
        self->conflict = false;
        st = pg_tx_run(self->db, NULL, batch_body, &b);
    }
    b.use_known = false;
    /* a queued insert met a record or a nonce stored already (PG_FAIL, unique violation) */
    if (st == PG_ROLLBACK ||
        (st == PG_FAIL && strcmp(pg_last_failure_sqlstate(), "23505") == 0)) {
        log_info(NULL, "audit journal: a record or a nonce of the batch was stored already (a "
                       "replay, or another writer's record): redone with every record looked up");
        b.careful = true;
        self->conflict = false;
        st = pg_tx_run(self->db, NULL, batch_body, &b);
    }
    bool ok = st == PG_OK;
    for (int i = 0; ok && i < n; i++) {
        const item_t *it = items[i];
        if (it->dup_of < 0 && !it->refused)
            recent_add(self, it->intent ? 'I' : 'O', item_request_id(it), it->seq, it->replay);
    }
    if (ok && b.head_seq > 0) {
        self->head_known = true;
        self->known_seq = b.head_seq;
        memcpy(self->known_hash, b.head_hash, sizeof self->known_hash);
    }
    if (ok)
        head_publish(self, b.head_seq, b.head_hash);
    if (ok && b.head_seq > self->logged_seq + 100000) {
        char hex[2 * ENTRY_HASH_LEN + 1];
        log_info(NULL, "audit chain head seq=%lld hash=%s", (long long)b.head_seq,
                 hex_encode(b.head_hash, ENTRY_HASH_LEN, hex));
        self->logged_seq = b.head_seq;
    }
    return ok;
}

static void publish(item_t **items, int n, bool committed)
{
    for (int i = 0; i < n; i++) {
        item_t *it = items[i];
        const item_t *src = it->dup_of >= 0 ? items[it->dup_of] : it;
        journal_result_t *res = it->result;
        res->seq = 0;
        res->replay = false;
        if (!committed) {
            res->code = RC_INTERNAL;
            snprintf(res->msg, sizeof res->msg, "audit store unavailable");
        } else if (src->refused) {
            res->code = RC_INVALID;
            snprintf(res->msg, sizeof res->msg, "no intent recorded for this request");
        } else {
            res->code = RC_OK;
            res->seq = src->seq;
            res->replay = src->replay;
            snprintf(res->msg, sizeof res->msg, "%s", src->known ? "already recorded" : "recorded");
        }
    }
}

static void batch_run(journal_t *self, item_t **items, int n)
{
    bool ok = batch_commit(self, items, n);
    if (!ok && n > 1) {
        /* Nothing in a batch conflicts by design; still, one record must not keep failing the
         * others: retry each on its own (a dead database fails each fast). */
        for (int i = 0; i < n; i++) {
            item_t *one = items[i];
            bool single_ok = conn_ready(self) && batch_commit(self, &one, 1);
            publish(&one, 1, single_ok);
            if (!single_ok)
                self->stats.failures++;
        }
        return;
    }
    publish(items, n, ok);
    if (!ok)
        self->stats.failures++;
}

/* ---------------------------------------------------------------- idle work */

static void journal_tick(journal_t *self)
{
    if (!conn_ready(self))
        return;
    PGresult *r = NULL;
    if (exec_ok(self, "journal_head", 0, NULL, &r) && PQntuples(r) == 1) {
        int64_t seq = strtoll(pg_value(r, 0, 0), NULL, 10);
        if (seq != self->logged_seq)
            log_info(NULL, "audit chain head seq=%lld hash=%s", (long long)seq, pg_value(r, 0, 1));
        self->logged_seq = seq;
    }
    PQclear(r);
}

/* ---------------------------------------------------------------- the pruner */

/* One slice of nonces older than the window and its margin (by both the time they were recorded
 * and their own timestamp); true when the slice was full, so more may be waiting. */
static bool prune_step(pgworker_t *worker, pg_session_t *db, void *arg)
{
    (void)worker;
    journal_t *self = arg;
    char horizon[24];
    int64_t h = time_now_ms() - self->cfg.nonce_window_ms - self->cfg.nonce_margin_ms;
    snprintf(horizon, sizeof horizon, "%lld", (long long)h);
    const char *params[] = {horizon};
    PGresult *r = pg_session_exec(db, NULL, "journal_prune", 1, params, NULL);
    if (!r)
        return false;
    long n = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    if (n > 0)
        log_debug(NULL, "audit journal: pruned %ld expired nonces", n);
    return n >= PRUNE_SLICE;
}

/* ---------------------------------------------------------------- writer thread */

/* An intent (its call waits for the commit) or a blocked caller's record. */
static bool item_urgent(const item_t *it)
{
    return it->intent || !it->done_fn;
}

/* With only submitted outcomes queued, fewer than cap, wait until an urgent record or cap records
 * are queued, the writer stops, or OUTCOME_LINGER_MS have passed. The caller holds self->mu. */
static void linger_for_company(journal_t *self, int cap)
{
    if (self->urgent || self->queued >= cap || self->stopping)
        return;
    int64_t until = time_mono_us() + (int64_t)OUTCOME_LINGER_MS * 1000;
    self->lingering = true;
    while (!self->urgent && self->queued < cap && !self->stopping) {
        int64_t now = time_mono_us();
        if (now >= until)
            break;
        struct timespec ts = time_realtime_after_us(until - now);
        pthread_cond_timedwait(&self->work, &self->mu, &ts);
    }
    self->lingering = false;
}

static void *writer_main(void *arg)
{
    journal_t *self = arg;
    int cap = self->cfg.batch_max;
    item_t **batch = xcalloc((size_t)cap, sizeof *batch);
    int64_t next_tick = time_mono_us();
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->head && !self->stopping) {
            int64_t now = time_mono_us();
            if (now >= next_tick) {
                pthread_mutex_unlock(&self->mu);
                journal_tick(self);
                pthread_mutex_lock(&self->mu);
                next_tick = time_mono_us() + (int64_t)JOURNAL_TICK_MS * 1000;
                continue;
            }
            struct timespec ts = time_realtime_after_us(next_tick - now);
            pthread_cond_timedwait(&self->work, &self->mu, &ts);
        }
        if (!self->head && self->stopping)
            break;
        linger_for_company(self, cap);
        int n = 0;
        while (self->head && n < cap) {
            batch[n++] = self->head;
            self->queued--;
            self->urgent -= item_urgent(self->head);
            self->head = self->head->next;
        }
        if (!self->head)
            self->tail = NULL;
        pthread_mutex_unlock(&self->mu);

        batch_run(self, batch, n);

        /* Submitted records first: a waiter's item is gone once it is woken. */
        for (int i = 0; i < n; i++)
            if (batch[i]->done_fn) {
                item_t *it = batch[i];
                batch[i] = NULL;
                it->done_fn(it->result, it->done_arg);
                entry_intent_clear(&it->own_intent);
                entry_outcome_clear(&it->own_outcome);
                free(it);
            }
        pthread_mutex_lock(&self->mu);
        self->stats.batches++;
        self->stats.records += (uint64_t)n;
        for (int i = 0; i < n; i++)
            if (batch[i]) {
                batch[i]->done = true;
                pthread_cond_signal(&batch[i]->cv);
            }
    }
    pthread_mutex_unlock(&self->mu);
    free(batch);
    return NULL;
}

journal_t *journal_new(const journal_config_t *cfg)
{
    journal_t *self = xcalloc(1, sizeof *self);
    self->cfg = *cfg;
    self->cfg.dsn = xstrdup(cfg->dsn);
    if (self->cfg.batch_max < 1)
        self->cfg.batch_max = 1;
    if (self->cfg.statement_timeout_ms <= 0)
        self->cfg.statement_timeout_ms = 3000;
    snprintf(self->setup_sql, sizeof self->setup_sql, "SET statement_timeout = %d",
             self->cfg.statement_timeout_ms);
    pgworker_config_t pc = {.name = "audit nonce pruner",
                            .session = {.dsn = self->cfg.dsn,
                                        .app = "kooisv-audit-pruner",
                                        .setup_sql = self->setup_sql,
                                        .stmts = prune_stmts,
                                        .nstmts = sizeof prune_stmts / sizeof *prune_stmts,
                                        .wait_s = 0},
                            .poll_ms = PRUNE_POLL_MS,
                            .retry_max_ms = 30000,
                            .step = prune_step,
                            .arg = self};
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->work, NULL);
    self->pruner = pgworker_new(&pc);
    if (!self->pruner || pgworker_start(self->pruner) != 0 ||
        pthread_create(&self->thread, NULL, writer_main, self) != 0) {
        log_error(NULL, "audit journal: cannot start the writer or the nonce pruner");
        pgworker_destroy(&self->pruner);
        pthread_mutex_destroy(&self->mu);
        pthread_cond_destroy(&self->work);
        free((char *)self->cfg.dsn);
        free(self);
        return NULL;
    }
    return self;
}

void journal_destroy(journal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    journal_t *self = *self_p;
    pthread_mutex_lock(&self->mu);
    self->stopping = true;
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->thread, NULL);
    pgworker_destroy(&self->pruner);
    pg_session_destroy(&self->db);
    recent_clear(&self->recent[0]);
    recent_clear(&self->recent[1]);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->work);
    free((char *)self->cfg.dsn);
    free(self);
    *self_p = NULL;
}

/* Queue it for the writer, waking it unless it lingers and it need not stop lingering for it;
 * the caller holds self->mu. */
static void queue_locked(journal_t *self, item_t *it)
{
    if (self->tail)
        self->tail->next = it;
    else
        self->head = it;
    self->tail = it;
    self->queued++;
    bool urgent = item_urgent(it);
    self->urgent += urgent;
    if (!self->lingering || urgent || self->queued >= self->cfg.batch_max)
        pthread_cond_signal(&self->work);
}

static void append_wait(journal_t *self, item_t *it)
{
    pthread_cond_init(&it->cv, NULL);
    pthread_mutex_lock(&self->mu);
    queue_locked(self, it);
    while (!it->done)
        pthread_cond_wait(&it->cv, &self->mu);
    pthread_mutex_unlock(&self->mu);
    pthread_cond_destroy(&it->cv);
}

/* Queue a heap item whose done runs on the writer thread. */
static void submit(journal_t *self, item_t *it, journal_done_fn done, void *arg)
{
    it->done_fn = done;
    it->done_arg = arg;
    it->result = &it->own_result;
    pthread_mutex_lock(&self->mu);
    queue_locked(self, it);
    pthread_mutex_unlock(&self->mu);
}

void journal_submit_intent(journal_t *self, entry_intent_t *intent, journal_done_fn done, void *arg)
{
    item_t *it = xcalloc(1, sizeof *it);
    it->own_intent = *intent;
    memset(intent, 0, sizeof *intent);
    it->intent = &it->own_intent;
    submit(self, it, done, arg);
}

void journal_submit_outcome(journal_t *self, entry_outcome_t *outcome, journal_done_fn done,
                            void *arg)
{
    item_t *it = xcalloc(1, sizeof *it);
    it->own_outcome = *outcome;
    memset(outcome, 0, sizeof *outcome);
    it->outcome = &it->own_outcome;
    submit(self, it, done, arg);
}

void journal_append_intent(journal_t *self, const entry_intent_t *intent, journal_result_t *out)
{
    item_t it = {.intent = intent, .result = out};
    append_wait(self, &it);
}

void journal_append_outcome(journal_t *self, const entry_outcome_t *outcome, journal_result_t *out)
{
    item_t it = {.outcome = outcome, .result = out};
    append_wait(self, &it);
}

void journal_stats(journal_t *self, journal_stats_t *out)
{
    pthread_mutex_lock(&self->mu);
    *out = self->stats;
    pthread_mutex_unlock(&self->mu);
}
