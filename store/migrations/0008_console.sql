-- The operator console: its sessions, the audit of every operator action,
-- the reconciler's pass summaries, and the indexes its pages need to answer
-- quickly with hundreds of thousands of purchases and millions of steps.

-- One row per signed-in browser. The cookie carries a random token; only its
-- SHA-256 is stored, so a copy of this table signs no one in. csrf_token is
-- the value every state-changing form of the session must carry.
CREATE TABLE console_sessions (
    token_hash    text PRIMARY KEY,
    operator      text NOT NULL,
    source        text NOT NULL CHECK (source IN ('password', 'jwt')),
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

-- Every operator action: who, what, on which object, when, and the object
-- before and after. Rows are only ever inserted.
CREATE TABLE operator_audit (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL,
    operator     text NOT NULL,
    action       text NOT NULL,
    object_kind  text NOT NULL,          -- step, purchase
    object_id    text NOT NULL,
    purchase_id  uuid REFERENCES purchases (id),
    before       jsonb,
    after        jsonb,
    note         text NOT NULL DEFAULT ''
);
CREATE INDEX operator_audit_purchase_idx ON operator_audit (purchase_id, id DESC) WHERE purchase_id IS NOT NULL;
CREATE INDEX operator_audit_object_idx ON operator_audit (object_kind, object_id, id DESC);

-- A summary of each reconcile pass: what the overview shows as "the last
-- passes". The reconciler records its passes here (RecordReconcilePass).
CREATE TABLE reconcile_passes (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,         -- incremental, deep, access, hints, manual, targeted
    started_at    timestamptz NOT NULL,
    duration_us   bigint NOT NULL CHECK (duration_us >= 0),
    seen          integer NOT NULL DEFAULT 0,
    changes       integer NOT NULL DEFAULT 0,
    healed        integer NOT NULL DEFAULT 0,  -- changes no webhook had announced
    errors        integer NOT NULL DEFAULT 0,
    dry_run       boolean NOT NULL DEFAULT false,
    summary       text NOT NULL DEFAULT ''
);
CREATE INDEX reconcile_passes_started_idx ON reconcile_passes (started_at DESC, id DESC);

-- Search and lists: newest first, by keyset (created_at, id), with or
-- without a status; and the Stripe ids that had no index yet. Most
-- purchases are completed, so a list of completed ones walks
-- purchases_created_idx and finds a page at once; the other statuses have
-- their own index, which also counts them for the overview. Leaving
-- completed out keeps it small and keeps the planner from driving lookups
-- of paid purchases (such as GrantsToGitHubUser's) from it.
CREATE INDEX purchases_created_idx ON purchases (created_at DESC, id DESC);
CREATE INDEX purchases_status_created_idx ON purchases (status, created_at DESC, id DESC)
    WHERE status <> 'completed';
-- The overview counts the completed from this one: every key is the same,
-- so B-tree deduplication keeps it to a few bytes a row, and an index-only
-- count reads a seventh of what counting the table's smallest other index
-- would.
CREATE INDEX purchases_completed_idx ON purchases (status) WHERE status = 'completed';
CREATE INDEX purchases_charge_idx ON purchases (stripe_charge_id) WHERE stripe_charge_id IS NOT NULL;
CREATE INDEX purchases_customer_idx ON purchases (stripe_customer_id, created_at DESC)
    WHERE stripe_customer_id IS NOT NULL;

-- The overview's alerts: the newest operator_alert steps.
CREATE INDEX steps_alerts_idx ON steps (created_at DESC, id DESC) WHERE name = 'operator_alert';
