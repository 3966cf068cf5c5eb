-- Disputes of orders' payments, as disputes holds purchases': one row per
-- Stripe dispute. A lost one counts as a full refund of its order (the
-- reconciler reads it whenever it recomputes the order's refunded state).
CREATE TABLE order_disputes (
    id          text PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders (id),
    amount      bigint NOT NULL CHECK (amount >= 0),
    currency    text NOT NULL,
    status      text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX order_disputes_order_idx ON order_disputes (order_id);
