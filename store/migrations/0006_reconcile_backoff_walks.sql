-- Objects that keep failing back off: each failure pushes the object's next
-- attempt further out (capped), and the retries of a pass take only those
-- due. (The operator is alerted once, after several failures, through a
-- global alert step keyed by the object and when its failures began.)
ALTER TABLE reconcile_errors ADD COLUMN next_attempt_at timestamptz;
UPDATE reconcile_errors SET next_attempt_at = last_seen;
ALTER TABLE reconcile_errors ALTER COLUMN next_attempt_at SET NOT NULL;
CREATE INDEX reconcile_errors_due_idx ON reconcile_errors (next_attempt_at);
-- Hints and open purchases look up whether their object is backing off.
CREATE INDEX reconcile_errors_object_idx ON reconcile_errors (object_id);

-- Where an unfinished walk of Stripe's resource lists stands, so a pass
-- stopped by its time budget or by a restart resumes there instead of
-- starting over. One row per walk, deleted when the walk ends.
CREATE TABLE reconcile_walks (
    name            text PRIMARY KEY,          -- 'lists'
    since           timestamptz NOT NULL,      -- the window: objects created at or after
    started_at      timestamptz NOT NULL,      -- when the walk began; the lists cursor moves here when it ends
    phase           text NOT NULL CHECK (phase IN ('sessions', 'refunds', 'disputes')),
    starting_after  text NOT NULL DEFAULT '',  -- the last object of the last page written in this phase
    seen            bigint NOT NULL DEFAULT 0, -- objects listed so far, for progress
    updated_at      timestamptz NOT NULL
);
