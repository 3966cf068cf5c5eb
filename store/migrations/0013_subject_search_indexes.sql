-- The console's search and lists of subscriptions and orders: by email (as
-- purchases_email_idx does for purchases) and by status, newest first, so
-- neither reads the whole table; the overview's counts by status walk the
-- status indexes.
CREATE INDEX subscriptions_email_idx ON subscriptions (lower(customer_email), created_at DESC)
    WHERE customer_email IS NOT NULL;
CREATE INDEX subscriptions_status_idx ON subscriptions (status, created_at DESC, id DESC);
CREATE INDEX orders_email_idx ON orders (lower(email), created_at DESC) WHERE email IS NOT NULL;
CREATE INDEX orders_status_idx ON orders (status, created_at DESC, id DESC);
