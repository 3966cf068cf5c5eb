-- Credits: an append-only ledger per account, a running balance kept in the
-- same transaction as every entry, and the lots that say what is left of
-- each grant.
--
-- An account is a user, or a user within an organization: the balance is
-- keyed by (user_id, organization_id), '' meaning no organization.
-- low_threshold and period_cause come from the latest grant or reset (the
-- "period"); low_noticed_cause is the period whose low-balance notice went
-- out, so the notice is sent once per period.
CREATE TABLE credit_accounts (
    id                 bigserial PRIMARY KEY,
    user_id            text NOT NULL CHECK (user_id <> ''),
    organization_id    text NOT NULL DEFAULT '',
    balance            bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    low_threshold      bigint CHECK (low_threshold >= 0),
    period_cause       text,
    low_noticed_cause  text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    UNIQUE (user_id, organization_id)
);

-- credit_entries: the ledger. Never updated or deleted (a trigger refuses
-- it). Each entry has a cause, and an account has at most one entry of a
-- kind per cause, so a repeated signal can never add twice. amount is
-- signed; balance_after is the account's balance once the entry applied.
--   grant:           a pack (cause purchase) or a plan top-up with rollover (cause invoice)
--   reset:           a plan's period (cause invoice): the delta that brings the plan's part to its amount
--   consume:         the seller's backend spent credits (cause consumption, the idempotency key)
--   expire:          a plan's remaining credits when its subscription ended (cause subscription)
--   refund_clawback: what was left of a pack refunded in full (cause purchase)
CREATE TABLE credit_entries (
    id             bigserial PRIMARY KEY,
    account_id     bigint NOT NULL REFERENCES credit_accounts (id),
    kind           text NOT NULL CHECK (kind IN ('grant', 'reset', 'consume', 'expire', 'refund_clawback')),
    amount         bigint NOT NULL,
    balance_after  bigint NOT NULL CHECK (balance_after >= 0),
    cause_kind     text NOT NULL CHECK (cause_kind IN ('purchase', 'invoice', 'consumption', 'subscription')),
    cause_id       text NOT NULL CHECK (cause_id <> ''),
    reason         text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    UNIQUE (account_id, kind, cause_kind, cause_id),
    CHECK (CASE kind
        WHEN 'grant' THEN amount > 0
        WHEN 'consume' THEN amount < 0
        WHEN 'reset' THEN true
        ELSE amount <= 0 END)
);
-- GET /api/credits pages an account's entries newest first.
CREATE INDEX credit_entries_account_idx ON credit_entries (account_id, id DESC);

CREATE FUNCTION credit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_entries is append-only';
END $$;
CREATE TRIGGER credit_entries_append_only BEFORE UPDATE OR DELETE ON credit_entries
    FOR EACH ROW EXECUTE FUNCTION credit_entries_append_only();

-- credit_lots: what is left of each grant or reset, so a refunded pack
-- claws back only its own remainder and a reset expires only the plan's.
-- The sum of an account's remaining equals its balance. Consumption takes
-- from the lot that expires first (a plan period's, before packs, which
-- never expire), then the oldest.
CREATE TABLE credit_lots (
    entry_id      bigint PRIMARY KEY REFERENCES credit_entries (id),
    account_id    bigint NOT NULL REFERENCES credit_accounts (id),
    source_kind   text NOT NULL CHECK (source_kind IN ('pack', 'plan')),
    source_id     text NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    remaining     bigint NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
    period_start  timestamptz,
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL
);
-- Not partial on remaining > 0: an index that names remaining would make
-- every consumption's update of a lot a non-HOT update of every index.
CREATE INDEX credit_lots_open_idx ON credit_lots (account_id, expires_at, entry_id);
CREATE INDEX credit_lots_source_idx ON credit_lots (account_id, source_kind, source_id);

-- credit_consumptions: one row per consume idempotency key, holding the
-- first answer (consumed, or insufficient with the balance then), so a
-- retry gets it again and consumes once. A consumed answer gets its entry
-- in the same transaction, one statement after it is marked consumed.
CREATE TABLE credit_consumptions (
    idempotency_key  text PRIMARY KEY,
    user_id          text NOT NULL,
    organization_id  text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    outcome          text NOT NULL CHECK (outcome IN ('consumed', 'insufficient')),
    balance          bigint NOT NULL,
    entry_id         bigint REFERENCES credit_entries (id),
    created_at       timestamptz NOT NULL,
    CHECK (entry_id IS NULL OR outcome = 'consumed')
);
