-- Every productInfo entry of the instance's order line as Query Order gave it (pay-per-use
-- lines may carry several billing items); product_id and sku_code keep naming the first.
SET LOCAL search_path = orders;

ALTER TABLE orders.instances ADD COLUMN product_info jsonb;
