-- A renewal and its cancellation (UNSUBSCRIBE_RENEWAL_PERIOD) name the same orderId (spec §3):
-- the "already applied" key of refreshInstance includes the scene, so each is applied once.
SET LOCAL search_path = orders;

ALTER TABLE orders.order_applications DROP CONSTRAINT order_applications_pkey;
CREATE UNIQUE INDEX order_applications_key
    ON orders.order_applications (instance_id, activity, order_id, coalesce(scene, ''));
