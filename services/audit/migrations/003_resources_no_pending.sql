-- One resource's entries at 10 million entries (README "Cost as data grows"): the GIN index on
-- resources kept new entries in its pending list (fastupdate) until the next VACUUM or until
-- the list reached gin_pending_list_limit (4 MB), and every search by resource read that whole
-- list: 0.2 ms just after a VACUUM, 29 ms with 20,000 entries pending, over 100 ms near the
-- limit. Without it each intent adds its few keys to the index as it is inserted (inside the
-- group commit), and a search reads only the pages of its key. What is pending now is moved in.
ALTER INDEX intents_resources SET (fastupdate = off);
SELECT gin_clean_pending_list('intents_resources'::regclass);
