-- When the reconciler first saw a subscription past_due, for as long as it
-- stays so. A past_due subscription keeps access for the grace from the
-- first failed payment of its earliest unpaid invoice, or from this moment
-- when no invoice shows a failure (a send_invoice subscription is never
-- charged; a renewal's invoice is a draft for an hour), whichever is
-- earlier: counted from the latest invoice, or from the pass itself, the
-- grace began again with every invoice and every pass. A row past_due
-- before this migration is taken as seen past_due now: when it first was is
-- not recorded anywhere.
ALTER TABLE subscriptions ADD COLUMN past_due_since timestamptz;
UPDATE subscriptions SET past_due_since = now() WHERE status = 'past_due';
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_past_due_since_check
    CHECK ((status = 'past_due') = (past_due_since IS NOT NULL));
