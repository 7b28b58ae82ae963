-- One resource's entries, newest first, at any size of the trail (README "Cost as data grows").
-- The GIN index on resources found a resource's entries, but not in seq order: PostgreSQL either
-- fetched and sorted every entry of the resource, or, when it guessed the resource common,
-- walked the whole trail backwards from its newest entry until it had a page. An instance that
-- was busy months ago (a hundred thousand queryInstance calls, say) took a second at one
-- million entries that way, and would take ten at ten million. intent_resources holds one row
-- per (resource id, intent seq), so a page is a walk of its primary key from the cursor down,
-- as long as the page, whatever the resource's size or age.
--
-- The rows are derived from the intents (not part of the hash chain; verify does not read them),
-- written by a statement trigger in the transaction that appends the intents, and append-only
-- like the trail. The query still checks each intent's own resources, so a row that no longer
-- names its intent (after a superuser's repair) never shows an entry of another resource. Ids
-- are at most ENTRY_MAX_RESOURCE_ID (256) bytes, well inside a btree entry's limit.
--
-- The GIN index goes: it only served this search, and it was most of an intent's write cost
-- (about 3 kB of its WAL).
--
-- On a large trail this migration takes a while (one row per resource of every intent: one to
-- two minutes per ten million entries); writers wait for it.
LOCK TABLE intents IN SHARE MODE;

CREATE TABLE intent_resources (
    resource_id text   NOT NULL,
    seq         bigint NOT NULL,
    PRIMARY KEY (resource_id, seq)
);

-- The resource ids an intent's resources name ([{"kind":..,"id":..}]; an id named twice comes
-- twice: ON CONFLICT DO NOTHING keeps one row). Plain SQL, so that it is inlined.
CREATE FUNCTION resource_ids(resources jsonb) RETURNS SETOF text LANGUAGE sql IMMUTABLE AS $$
    SELECT r ->> 'id' FROM jsonb_array_elements(resources) r
     WHERE jsonb_typeof(r) = 'object' AND coalesce(r ->> 'id', '') <> ''
$$;

-- Runs as whoever appends the intents (the audit service's role, the owner for a repair).
CREATE FUNCTION index_intent_resources() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO audit.intent_resources (resource_id, seq)
        SELECT id, n.seq FROM appended n, audit.resource_ids(n.resources) id
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER intents_index_resources AFTER INSERT ON intents
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION index_intent_resources();

INSERT INTO intent_resources (resource_id, seq)
    SELECT id, i.seq FROM intents i, resource_ids(i.resources) id
    ON CONFLICT DO NOTHING;

CREATE TRIGGER intent_resources_append_only BEFORE UPDATE OR DELETE ON intent_resources
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER intent_resources_no_truncate BEFORE TRUNCATE ON intent_resources
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

REVOKE ALL ON intent_resources FROM PUBLIC;
GRANT SELECT, INSERT ON intent_resources TO kooisv_audit;
GRANT SELECT ON intent_resources TO kooisv_auditor;

DROP INDEX intents_resources;
ANALYZE intent_resources;
