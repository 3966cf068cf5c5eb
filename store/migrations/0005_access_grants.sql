-- access_grants: what paymentd gave a purchase's buyer through an access
-- provider, one row per purchase, provider and GitHub account. A GitHub
-- grant records the account's numeric id, which never changes, beside the
-- login it had: a revocation finds the account's current login from the id,
-- so a buyer who renamed is still removed and a stranger who took the old
-- login is never touched. purchases.access_state stays the summary the API
-- shows.
--   pending:  a grant was attempted and may have taken effect: a
--             revocation must still reach the provider
--   granted:  the grant completed while the purchase was paid for
--   revoked:  taken back (or, for a preexisting collaborator, let go of
--             without touching GitHub)
-- preexisting marks a buyer who already had access to the repository before
-- paymentd granted any: paymentd never removes them.
CREATE TABLE access_grants (
    id              bigserial PRIMARY KEY,
    purchase_id     uuid NOT NULL REFERENCES purchases (id),
    provider        text NOT NULL CHECK (provider IN ('github', 'webhook')),
    github_user_id  bigint,
    github_login    text,
    invitation_id   bigint,
    preexisting     boolean NOT NULL DEFAULT false,
    state           text NOT NULL CHECK (state IN ('pending', 'granted', 'revoked')),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CHECK (provider = 'github' OR (github_user_id IS NULL AND github_login IS NULL AND NOT preexisting))
);
-- One grant per purchase, provider and account; a grant attempted again
-- (a retry, a repair, a restore after a reversed refund) reuses its row.
CREATE UNIQUE INDEX access_grants_purchase_key ON access_grants (purchase_id, provider, (coalesce(github_user_id, 0)));
-- Who else holds access for the same GitHub account, by id; and by login for
-- grants recorded before ids were (github_user_id IS NULL).
CREATE INDEX access_grants_github_user_idx ON access_grants (github_user_id)
    WHERE github_user_id IS NOT NULL AND state IN ('pending', 'granted');
CREATE INDEX access_grants_github_login_idx ON access_grants (lower(github_login))
    WHERE github_user_id IS NULL AND state IN ('pending', 'granted');

-- Access granted before this table existed becomes a grant without an id;
-- its id is looked up from the login when it is first needed.
INSERT INTO access_grants (purchase_id, provider, github_user_id, github_login, invitation_id, preexisting, state,
        created_at, updated_at)
    SELECT id, CASE WHEN github_username IS NOT NULL THEN 'github' ELSE 'webhook' END, NULL, github_username,
        CASE WHEN github_username IS NOT NULL AND access_ref ~ '^[0-9]{1,18}$' THEN access_ref::bigint END,
        false, 'granted', updated_at, updated_at
    FROM purchases WHERE access_state = 'granted';
