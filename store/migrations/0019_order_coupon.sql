-- The coupon behind an order's promotion code. An embedded order is
-- charged through a PaymentIntent, so Stripe never counts it among its
-- coupon's redemptions: paymentd counts the embedded orders holding each
-- coupon (open or paid) against the coupon's max_redemptions itself. Orders
-- recorded before this migration have none: their coupon is not recorded
-- anywhere paymentd can read it.
ALTER TABLE orders ADD COLUMN coupon_id text;
CREATE INDEX orders_coupon_idx ON orders (coupon_id) WHERE coupon_id IS NOT NULL;
