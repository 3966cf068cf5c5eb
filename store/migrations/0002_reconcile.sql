-- When the reconciler last compared a non-final purchase with Stripe, so
-- open purchases are re-checked on a schedule rather than every pass.
ALTER TABLE purchases ADD COLUMN checked_at timestamptz;
CREATE INDEX purchases_pending_check_idx ON purchases (coalesce(checked_at, created_at)) WHERE status = 'pending';
CREATE INDEX purchases_access_idx ON purchases (product_key, id) WHERE github_username IS NOT NULL OR access_state <> 'none';
