-- The foundation: purchases and what happens to them, the durable steps
-- table, webhook hints and reconcile cursors. All times are UTC timestamptz;
-- all money is integer minor units beside an ISO currency code.

CREATE TABLE accounts (
    user_id         text PRIMARY KEY,
    email           text,
    github_username text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE purchases (
    id                        uuid PRIMARY KEY,
    user_id                   text,
    email                     text,
    product_key               text NOT NULL,
    quantity                  integer NOT NULL DEFAULT 1 CHECK (quantity > 0),
    status                    text NOT NULL DEFAULT 'pending' CHECK (status IN
                                  ('pending', 'completed', 'partially_refunded', 'refunded', 'expired', 'failed')),
    stripe_session_id         text NOT NULL UNIQUE,
    stripe_customer_id        text,
    stripe_payment_intent_id  text,
    stripe_charge_id          text,
    amount_total              bigint NOT NULL DEFAULT 0 CHECK (amount_total >= 0),
    amount_refunded           bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    currency                  text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    github_username           text,
    access_state              text NOT NULL DEFAULT 'none' CHECK (access_state IN
                                  ('none', 'granted', 'revoked', 'failed')),
    access_ref                text,
    consent_required          boolean NOT NULL DEFAULT false,
    promotions_consent        boolean,
    recovery_url              text,
    session_expires_at        timestamptz,
    disputed                  boolean NOT NULL DEFAULT false,
    created_at                timestamptz NOT NULL,
    completed_at              timestamptz,
    updated_at                timestamptz NOT NULL,
    CHECK (status = 'pending' OR status = 'expired' OR status = 'failed' OR completed_at IS NOT NULL)
);
CREATE INDEX purchases_payment_intent_idx ON purchases (stripe_payment_intent_id)
    WHERE stripe_payment_intent_id IS NOT NULL;
CREATE INDEX purchases_user_idx ON purchases (user_id, created_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX purchases_email_idx ON purchases (lower(email), created_at DESC) WHERE email IS NOT NULL;
-- Non-final purchases the reconciler re-checks by id.
CREATE INDEX purchases_open_idx ON purchases (created_at) WHERE status = 'pending';

CREATE TABLE refunds (
    id           text PRIMARY KEY,           -- Stripe refund id
    purchase_id  uuid NOT NULL REFERENCES purchases (id),
    amount       bigint NOT NULL CHECK (amount >= 0),
    currency     text NOT NULL,
    status       text NOT NULL,               -- Stripe's: pending, requires_action, succeeded, failed, canceled
    created_at   timestamptz NOT NULL,        -- when Stripe created it
    updated_at   timestamptz NOT NULL
);
CREATE INDEX refunds_purchase_idx ON refunds (purchase_id);

CREATE TABLE disputes (
    id           text PRIMARY KEY,           -- Stripe dispute id
    purchase_id  uuid NOT NULL REFERENCES purchases (id),
    amount       bigint NOT NULL,
    currency     text NOT NULL,
    status       text NOT NULL,
    reason       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX disputes_purchase_idx ON disputes (purchase_id);

-- steps is the durable step engine's state machine. A step is recorded
-- before it runs and is never run again once done.
--   waiting:  scheduled behind another step of its pipeline (after_name)
--   pending:  due at run_at
--   running:  claimed by lease_owner until lease_expires_at
--   done, failed, canceled: final
CREATE TABLE steps (
    id                bigserial PRIMARY KEY,
    purchase_id       uuid REFERENCES purchases (id),
    pipeline          text NOT NULL,
    name              text NOT NULL,
    after_name        text,
    blocking          boolean NOT NULL DEFAULT false,  -- another step of the pipeline waits for this one
    tags              text[] NOT NULL DEFAULT '{}',
    args              jsonb NOT NULL DEFAULT '{}',
    status            text NOT NULL CHECK (status IN ('waiting', 'pending', 'running', 'done', 'failed', 'canceled')),
    run_at            timestamptz NOT NULL,
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      integer NOT NULL CHECK (max_attempts > 0),
    lease_owner       text,
    lease_expires_at  timestamptz,
    last_error        text,
    result            jsonb,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    CHECK ((status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK ((status IN ('done', 'failed', 'canceled')) = (finished_at IS NOT NULL))
);
-- A step is scheduled at most once per purchase and pipeline.
CREATE UNIQUE INDEX steps_purchase_pipeline_name_key ON steps (purchase_id, pipeline, name)
    WHERE purchase_id IS NOT NULL;
CREATE UNIQUE INDEX steps_global_pipeline_name_key ON steps (pipeline, name)
    WHERE purchase_id IS NULL;
CREATE INDEX steps_due_idx ON steps (run_at, id) WHERE status = 'pending';
CREATE INDEX steps_lease_idx ON steps (lease_expires_at) WHERE status = 'running';
CREATE INDEX steps_failed_idx ON steps (updated_at) WHERE status = 'failed';
CREATE INDEX steps_waiting_idx ON steps (purchase_id, pipeline, after_name) WHERE status = 'waiting';
CREATE INDEX steps_tags_idx ON steps USING gin (tags) WHERE status IN ('waiting', 'pending');

CREATE TABLE webhook_hints (
    event_id     text PRIMARY KEY,
    type         text NOT NULL,
    object_id    text NOT NULL,
    received_at  timestamptz NOT NULL,
    handled_at   timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX webhook_hints_unhandled_idx ON webhook_hints (received_at) WHERE handled_at IS NULL;
CREATE INDEX webhook_hints_object_idx ON webhook_hints (object_id);

CREATE TABLE reconcile_cursors (
    kind        text PRIMARY KEY,   -- events, checkout_sessions, refunds, disputes, pass:incremental, ...
    cursor      text NOT NULL DEFAULT '',
    position    timestamptz,
    updated_at  timestamptz NOT NULL
);

-- Objects the reconciler failed on; retried next pass.
CREATE TABLE reconcile_errors (
    kind        text NOT NULL,
    object_id   text NOT NULL,
    error       text NOT NULL,
    attempts    integer NOT NULL DEFAULT 1,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (kind, object_id)
);

CREATE TABLE unsubscribes (
    email       text PRIMARY KEY,   -- lower-cased
    created_at  timestamptz NOT NULL
);
