-- A full refund that later fails (a refund reversed) makes its purchase paid
-- for again: what the clawback took from the pack comes back, and a later
-- full refund claws it back again. Each clawback is now caused by the refund
-- or the lost dispute that ended the payment (cause 'refund', the purchase
-- id, '@' and that object's id), and each giving back by the clawback it
-- undoes (cause 'clawback', that entry's id). The pack's lot remembers the
-- clawback that closed it until it is given back, so neither can apply
-- twice, whatever order their steps run in.
ALTER TABLE credit_entries DROP CONSTRAINT credit_entries_kind_check;
ALTER TABLE credit_entries ADD CONSTRAINT credit_entries_kind_check
    CHECK (kind IN ('grant', 'reset', 'consume', 'expire', 'refund_clawback', 'clawback_reversal'));
ALTER TABLE credit_entries DROP CONSTRAINT credit_entries_check;
ALTER TABLE credit_entries ADD CONSTRAINT credit_entries_check CHECK (CASE kind
    WHEN 'grant' THEN amount > 0
    WHEN 'clawback_reversal' THEN amount > 0
    WHEN 'consume' THEN amount < 0
    WHEN 'reset' THEN true
    ELSE amount <= 0 END);
ALTER TABLE credit_entries DROP CONSTRAINT credit_entries_cause_kind_check;
ALTER TABLE credit_entries ADD CONSTRAINT credit_entries_cause_kind_check
    CHECK (cause_kind IN ('purchase', 'invoice', 'consumption', 'subscription', 'plan_change', 'refund', 'clawback'));

ALTER TABLE credit_lots ADD COLUMN clawed_by bigint REFERENCES credit_entries (id);
UPDATE credit_lots l SET clawed_by = e.id
    FROM credit_entries e
    WHERE l.source_kind = 'pack' AND e.account_id = l.account_id AND e.kind = 'refund_clawback'
        AND e.cause_kind = 'purchase' AND e.cause_id = l.source_id;
