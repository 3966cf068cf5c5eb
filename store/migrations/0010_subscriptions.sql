-- Subscriptions: one row per Stripe subscription paymentd sells, holding
-- what Stripe says of it now (its status as is, price, quantity, period,
-- trial, cancellation) beside what paymentd decided from that (whether it
-- entitles its customer to access, until when a past_due one keeps it, when
-- to look again), and one row per invoice of those subscriptions. A
-- subscription's steps name it as their subject (steps.subject_kind
-- 'subscription').

-- The account's Stripe customer: one per user, created once at their
-- first subscription checkout; and the name Stripe has for them.
ALTER TABLE accounts ADD COLUMN stripe_customer_id text;
ALTER TABLE accounts ADD COLUMN name text;
CREATE UNIQUE INDEX accounts_stripe_customer_key ON accounts (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;

CREATE TABLE subscriptions (
    id                      uuid PRIMARY KEY,
    stripe_subscription_id  text NOT NULL UNIQUE,
    user_id                 text,
    organization_id         text,
    stripe_customer_id      text NOT NULL,
    customer_email          text,
    product_key             text NOT NULL,
    price_key               text NOT NULL DEFAULT '',    -- the price's lookup key ('' when it has none)
    stripe_price_id         text NOT NULL,
    -- Stripe's status, as is.
    status                  text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'unpaid', 'canceled',
                                'incomplete', 'incomplete_expired', 'paused')),
    quantity                integer NOT NULL CHECK (quantity >= 0),
    amount                  bigint NOT NULL CHECK (amount >= 0),   -- per period: unit amount times quantity
    currency                text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    interval                text NOT NULL CHECK (interval IN ('day', 'week', 'month', 'year')),
    interval_count          integer NOT NULL CHECK (interval_count > 0),
    current_period_start    timestamptz NOT NULL,
    current_period_end      timestamptz NOT NULL,
    trial_end               timestamptz,
    cancel_at_period_end    boolean NOT NULL DEFAULT false,
    canceled_at             timestamptz,
    ended_at                timestamptz,
    latest_invoice_id       text,
    -- Stripe's start date, recorded the first time the subscription is seen
    -- started (trialing or paid for): an incomplete one never started.
    started_at              timestamptz,
    -- Whether the status gives access now (see reconcile), and until when
    -- a past_due subscription keeps it.
    entitled                boolean NOT NULL DEFAULT false,
    grace_until             timestamptz,
    access_state            text NOT NULL DEFAULT 'none' CHECK (access_state IN ('none', 'granted', 'revoked', 'failed')),
    -- Counts the transitions recorded so far; each names its pipeline
    -- (plan:3, access:4), so one cause schedules once.
    transitions             integer NOT NULL DEFAULT 0 CHECK (transitions >= 0),
    -- When the sweep looks again without a signal: the earliest of the
    -- period end, the trial end, the next payment attempt and the end of
    -- grace. NULL for an ended subscription.
    next_check_at           timestamptz,
    checked_at              timestamptz,
    created_at              timestamptz NOT NULL,     -- Stripe's
    updated_at              timestamptz NOT NULL,
    CHECK (NOT entitled OR status IN ('trialing', 'active', 'past_due'))
);
CREATE INDEX subscriptions_user_idx ON subscriptions (user_id, created_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX subscriptions_customer_idx ON subscriptions (stripe_customer_id);
-- The sweep: subscriptions that have not ended, by when to look again.
CREATE INDEX subscriptions_due_idx ON subscriptions (next_check_at)
    WHERE next_check_at IS NOT NULL AND status NOT IN ('canceled', 'incomplete_expired');

CREATE TABLE invoices (
    id                    text PRIMARY KEY,            -- Stripe invoice id
    subscription_id       uuid NOT NULL REFERENCES subscriptions (id),
    status                text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'uncollectible', 'void')),
    billing_reason        text NOT NULL DEFAULT '',
    number                text,
    currency              text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    amount_due            bigint NOT NULL CHECK (amount_due >= 0),
    amount_paid           bigint NOT NULL CHECK (amount_paid >= 0),
    amount_remaining      bigint NOT NULL CHECK (amount_remaining >= 0),
    hosted_invoice_url    text,
    attempt_count         integer NOT NULL CHECK (attempt_count >= 0),
    next_payment_attempt  timestamptz,
    -- The service period its lines bill for.
    period_start          timestamptz,
    period_end            timestamptz,
    paid_at               timestamptz,
    -- When its first payment attempt failed (Stripe's finalization time:
    -- an automatic invoice is charged as it is finalized); the grace and
    -- the dunning reminder count from it.
    first_failed_at       timestamptz,
    created_at            timestamptz NOT NULL,        -- Stripe's
    updated_at            timestamptz NOT NULL,
    CHECK ((status = 'paid') = (paid_at IS NOT NULL))
);
CREATE INDEX invoices_subscription_idx ON invoices (subscription_id, created_at DESC);

-- A grant now belongs to a purchase or to a subscription.
ALTER TABLE access_grants ALTER COLUMN purchase_id DROP NOT NULL;
ALTER TABLE access_grants ADD COLUMN subscription_id uuid REFERENCES subscriptions (id);
ALTER TABLE access_grants ADD CONSTRAINT access_grants_subject_check CHECK (num_nonnulls(purchase_id, subscription_id) = 1);
CREATE UNIQUE INDEX access_grants_subscription_key ON access_grants (subscription_id, provider, (coalesce(github_user_id, 0)))
    WHERE subscription_id IS NOT NULL;
