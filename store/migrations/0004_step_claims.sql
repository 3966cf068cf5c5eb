-- Steps are fenced by their claim, not by the engine that claimed them: every
-- claim draws a fresh claim_token, and every write to a running step names
-- it. lease_owner stays, to say which engine holds a step. A lease's expiry
-- is now set from the database's clock.
CREATE SEQUENCE steps_claim_seq;
ALTER TABLE steps ADD COLUMN claim_token bigint;
-- Steps running while this migration applies get a token, so the CHECK holds;
-- their (older) workers can no longer write them, and the rescuer returns
-- them when their lease lapses.
UPDATE steps SET claim_token = nextval('steps_claim_seq') WHERE status = 'running';
ALTER TABLE steps ADD CONSTRAINT steps_claim_token_check CHECK ((status = 'running') = (claim_token IS NOT NULL));

-- A step that fails for good cancels the steps waiting on it, directly or
-- not; canceled_by names the failed step, so retrying that step (paymentd
-- steps retry) puts them back to waiting.
ALTER TABLE steps ADD COLUMN canceled_by bigint;
CREATE INDEX steps_canceled_by_idx ON steps (canceled_by) WHERE canceled_by IS NOT NULL;

-- Retention prunes done and canceled steps by age, oldest first.
CREATE INDEX steps_finished_idx ON steps (finished_at, id) WHERE status IN ('done', 'canceled');
-- ... and handled webhook hints.
CREATE INDEX webhook_hints_handled_idx ON webhook_hints (handled_at) WHERE handled_at IS NOT NULL;

-- Canceling a purchase's tagged steps goes by purchase (the unique index on
-- purchase_id, pipeline, name), which finds a handful of rows; no plan ever
-- chose the GIN index on tags, and every new or released step paid to
-- maintain it.
DROP INDEX steps_tags_idx;
