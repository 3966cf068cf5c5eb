// Reconciler state: webhook hints waiting to be handled, cursors into
// Stripe's listings, objects that failed and are retried next pass, and the
// open purchases due for a check.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// HintsChannel is the LISTEN/NOTIFY channel that carries the object id of
// every new webhook hint.
const HintsChannel = "paymentd_hints"

// Hint is one stored webhook event: only its identity, never its payload.
type Hint struct {
	EventID    string
	Type       string
	ObjectID   string
	ReceivedAt time.Time
	Attempts   int
	// Failing: a failure of its object is recorded in reconcile_errors,
	// which a successful reconcile of the object must clear.
	Failing bool
}

// UnhandledHints returns up to limit hints not yet handled, oldest first,
// leaving out those about an object that is backing off after failures
// (see RecordReconcileError) unless the hint arrived after its last
// failure: a fresh hint always gets a look.
func (q *Queries) UnhandledHints(ctx context.Context, now time.Time, limit int) ([]Hint, error) {
	rows, err := q.db.Query(ctx, `SELECT h.event_id, h.type, h.object_id, h.received_at, h.attempts,
			EXISTS (SELECT 1 FROM reconcile_errors e WHERE e.object_id = h.object_id)
		FROM webhook_hints h
		WHERE h.handled_at IS NULL AND NOT EXISTS (SELECT 1 FROM reconcile_errors e
			WHERE e.object_id = h.object_id AND e.next_attempt_at > $1 AND h.received_at <= e.last_seen)
		ORDER BY h.received_at LIMIT $2`, now.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("list unhandled hints: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Hint, error) {
		var h Hint
		err := row.Scan(&h.EventID, &h.Type, &h.ObjectID, &h.ReceivedAt, &h.Attempts, &h.Failing)
		return h, err
	})
}

// MarkHintsHandled marks every unhandled hint about the objects handled, in
// one statement; call it only after their reconciles committed.
func (q *Queries) MarkHintsHandled(ctx context.Context, now time.Time, objectIDs ...string) error {
	if len(objectIDs) == 0 {
		return nil
	}
	_, err := q.db.Exec(ctx, `UPDATE webhook_hints SET handled_at = $2, attempts = attempts + 1, last_error = NULL
		WHERE object_id = ANY($1) AND handled_at IS NULL`, objectIDs, now.UTC())
	if err != nil {
		return fmt.Errorf("mark hints handled: %w", err)
	}
	return nil
}

// MarkHintsFailed records a failed attempt on the unhandled hints about
// objectID; they stay unhandled and are retried.
func (q *Queries) MarkHintsFailed(ctx context.Context, objectID, errText string) error {
	_, err := q.db.Exec(ctx, `UPDATE webhook_hints SET attempts = attempts + 1, last_error = $2
		WHERE object_id = $1 AND handled_at IS NULL`, objectID, errText)
	if err != nil {
		return fmt.Errorf("mark hints failed: %w", err)
	}
	return nil
}

// HasHint reports whether any webhook ever announced objectID.
func (q *Queries) HasHint(ctx context.Context, objectID string) (bool, error) {
	var yes bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_hints WHERE object_id = $1)`, objectID).Scan(&yes)
	if err != nil {
		return false, fmt.Errorf("look up hint: %w", err)
	}
	return yes, nil
}

// Cursor is how far one Stripe listing has been read.
type Cursor struct {
	Kind     string
	Cursor   string
	Position *time.Time
}

// GetCursor returns the cursor of kind; a missing one is the zero Cursor.
func (q *Queries) GetCursor(ctx context.Context, kind string) (Cursor, error) {
	c := Cursor{Kind: kind}
	err := q.db.QueryRow(ctx, `SELECT cursor, position FROM reconcile_cursors WHERE kind = $1`, kind).
		Scan(&c.Cursor, &c.Position)
	if err == pgx.ErrNoRows {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("get cursor %s: %w", kind, err)
	}
	return c, nil
}

// DeleteCursor forgets the cursor of kind.
func (q *Queries) DeleteCursor(ctx context.Context, kind string) error {
	if _, err := q.db.Exec(ctx, `DELETE FROM reconcile_cursors WHERE kind = $1`, kind); err != nil {
		return fmt.Errorf("delete cursor %s: %w", kind, err)
	}
	return nil
}

// SetCursor stores a cursor.
func (q *Queries) SetCursor(ctx context.Context, c Cursor, now time.Time) error {
	_, err := q.db.Exec(ctx, `INSERT INTO reconcile_cursors (kind, cursor, position, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (kind) DO UPDATE SET cursor = $2, position = $3, updated_at = $4`,
		c.Kind, c.Cursor, c.Position, now.UTC())
	if err != nil {
		return fmt.Errorf("set cursor %s: %w", c.Kind, err)
	}
	return nil
}

// ReconcileError is an object the reconciler failed on, retried from
// NextAttempt.
type ReconcileError struct {
	Kind, ObjectID, Error string
	Attempts              int
	FirstSeen, LastSeen   time.Time
	NextAttempt           time.Time
}

const reconcileErrorColumns = `kind, object_id, error, attempts, first_seen, last_seen, next_attempt_at`

func scanReconcileError(row pgx.CollectableRow) (ReconcileError, error) {
	var e ReconcileError
	err := row.Scan(&e.Kind, &e.ObjectID, &e.Error, &e.Attempts, &e.FirstSeen, &e.LastSeen, &e.NextAttempt)
	return e, err
}

// RecordReconcileError remembers that reconciling an object failed once
// more, due again at next, and returns its row: how many failures in a
// row, since when.
func (q *Queries) RecordReconcileError(ctx context.Context, kind, objectID, errText string, now, next time.Time) (ReconcileError, error) {
	rows, err := q.db.Query(ctx, `INSERT INTO reconcile_errors (kind, object_id, error, first_seen, last_seen, next_attempt_at)
		VALUES ($1, $2, $3, $4, $4, $5)
		ON CONFLICT (kind, object_id) DO UPDATE SET error = $3, attempts = reconcile_errors.attempts + 1, last_seen = $4,
			next_attempt_at = $5
		RETURNING `+reconcileErrorColumns, kind, objectID, errText, now.UTC(), next.UTC())
	if err != nil {
		return ReconcileError{}, fmt.Errorf("record reconcile error: %w", err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanReconcileError)
	if err != nil {
		return e, fmt.Errorf("record reconcile error: %w", err)
	}
	return e, nil
}

// SetReconcileRetry moves an object's next attempt to at.
func (q *Queries) SetReconcileRetry(ctx context.Context, kind, objectID string, at time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE reconcile_errors SET next_attempt_at = $3 WHERE kind = $1 AND object_id = $2`,
		kind, objectID, at.UTC())
	if err != nil {
		return fmt.Errorf("set reconcile retry: %w", err)
	}
	return nil
}

// ClearReconcileError forgets an object's failure once it reconciled.
func (q *Queries) ClearReconcileError(ctx context.Context, kind, objectID string) error {
	_, err := q.db.Exec(ctx, `DELETE FROM reconcile_errors WHERE kind = $1 AND object_id = $2`, kind, objectID)
	if err != nil {
		return fmt.Errorf("clear reconcile error: %w", err)
	}
	return nil
}

// ReconcileErrors returns up to limit objects whose next attempt is due at
// now, the longest due first.
func (q *Queries) ReconcileErrors(ctx context.Context, now time.Time, limit int) ([]ReconcileError, error) {
	rows, err := q.db.Query(ctx, `SELECT `+reconcileErrorColumns+` FROM reconcile_errors
		WHERE next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2`, now.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("list reconcile errors: %w", err)
	}
	es, err := pgx.CollectRows(rows, scanReconcileError)
	if err != nil {
		return nil, fmt.Errorf("list reconcile errors: %w", err)
	}
	return es, nil
}

// DuePendingPurchases returns pending purchases whose session may have
// changed without a signal: its expiry has passed, or it was last checked
// (or created) before checkBefore; those whose session is backing off
// after failures wait for their next attempt.
func (q *Queries) DuePendingPurchases(ctx context.Context, now, checkBefore time.Time, limit int) ([]Purchase, error) {
	ps, err := q.purchases(ctx, `SELECT `+purchaseColumns+` FROM purchases p
		WHERE status = 'pending' AND (coalesce(checked_at, created_at) <= $2 OR session_expires_at <= $1)
			AND coalesce(checked_at, created_at) < $1
			AND NOT EXISTS (SELECT 1 FROM reconcile_errors e WHERE e.object_id = p.stripe_session_id AND e.next_attempt_at > $1)
		ORDER BY coalesce(checked_at, created_at) LIMIT $3`, now.UTC(), checkBefore.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("list due pending purchases: %w", err)
	}
	return ps, nil
}

// MarkChecked records that the reconciler compared a purchase with Stripe.
func (q *Queries) MarkChecked(ctx context.Context, purchaseID string, now time.Time) error {
	_, err := q.db.Exec(ctx, `UPDATE purchases SET checked_at = $2 WHERE id = $1`, purchaseID, now.UTC())
	if err != nil {
		return fmt.Errorf("mark purchase checked: %w", err)
	}
	return nil
}

// PurchasesBySessions returns the purchases of the given sessions, keyed by session id.
func (q *Queries) PurchasesBySessions(ctx context.Context, sessionIDs []string) (map[string]Purchase, error) {
	ps, err := q.purchases(ctx, `SELECT `+purchaseColumns+` FROM purchases WHERE stripe_session_id = ANY($1)`, sessionIDs)
	if err != nil {
		return nil, fmt.Errorf("look up purchases by session: %w", err)
	}
	out := make(map[string]Purchase, len(ps))
	for _, p := range ps {
		out[p.StripeSessionID] = p
	}
	return out, nil
}

// AccessCandidates returns, after afterID, up to limit purchases of the
// given products that have or should have access: a GitHub username is
// known, or access was recorded.
func (q *Queries) AccessCandidates(ctx context.Context, productKeys []string, afterID string, limit int) ([]Purchase, error) {
	ps, err := q.purchases(ctx, `SELECT `+purchaseColumns+` FROM purchases
		WHERE product_key = ANY($1) AND (github_username IS NOT NULL OR access_state <> 'none') AND id > $2::uuid
		ORDER BY id LIMIT $3`, productKeys, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list access candidates: %w", err)
	}
	return ps, nil
}

// HasOpenWork reports whether a purchase has steps not yet run, other
// than follow-ups: work in flight that the access drift check must not
// second-guess.
func (q *Queries) HasOpenWork(ctx context.Context, purchaseID string) (bool, error) {
	var yes bool
	err := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM steps WHERE subject_id = $1
		AND status IN ('waiting', 'pending', 'running') AND NOT ('followup' = ANY(tags)))`, purchaseID).Scan(&yes)
	if err != nil {
		return false, fmt.Errorf("look up open steps: %w", err)
	}
	return yes, nil
}

// PollerLockKey is the advisory lock the replica polling Stripe holds.
const PollerLockKey int64 = 0x7061796d656e75

// HintsLockKey is the advisory lock the replica handling webhook hints
// holds; hints are handled beside a polling pass, not behind it.
const HintsLockKey int64 = 0x7061796d686e74
