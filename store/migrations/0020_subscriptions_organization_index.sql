-- A subscription checkout naming an organization reads that organization's
-- subscriptions to the product (has it had the product's trial?): without
-- an index that is a scan of every subscription, per checkout.
CREATE INDEX subscriptions_organization_product_idx ON subscriptions (organization_id, product_key)
    WHERE organization_id IS NOT NULL;
