-- updateInstanceStatus while an instance is still being provisioned is accepted (spec §3: the
-- marketplace's call must succeed): the wanted status is kept here and provisioning delivers the
-- instance frozen when it is set.
SET LOCAL search_path = orders;

ALTER TABLE orders.instances ADD COLUMN freeze_requested boolean NOT NULL DEFAULT false;
