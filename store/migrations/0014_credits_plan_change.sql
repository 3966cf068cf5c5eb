-- A plan changed to a product without credits expires what is left of the
-- plan's credits: an expire entry caused by the plan change, its cause id
-- the subscription and when the change was seen. It is not the end of the
-- subscription (cause 'subscription'), so a later change back to a plan with
-- credits grants them anew.
ALTER TABLE credit_entries DROP CONSTRAINT credit_entries_cause_kind_check;
ALTER TABLE credit_entries ADD CONSTRAINT credit_entries_cause_kind_check
    CHECK (cause_kind IN ('purchase', 'invoice', 'consumption', 'subscription', 'plan_change'));
