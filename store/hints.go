// Webhook hints: a Stripe webhook delivery reduced to the identity of the
// object it concerns. A hint only tells the reconciler which object to
// fetch from Stripe; nothing in the delivery's payload is trusted or kept.
package store

import (
	"context"
	"fmt"
	"time"
)

// InsertHint records a webhook hint and, when the event is new, notifies
// the 'paymentd_hints' channel with the object id in the same statement, so
// the notification is delivered exactly when the row commits. A redelivered
// event (same event id) is left alone and reported by inserted=false.
func (q *Queries) InsertHint(ctx context.Context, eventID, eventType, objectID string, receivedAt time.Time) (inserted bool, err error) {
	rows, err := q.db.Query(ctx, `
		WITH ins AS (
			INSERT INTO webhook_hints (event_id, type, object_id, received_at)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (event_id) DO NOTHING
			RETURNING object_id)
		SELECT pg_notify('paymentd_hints', object_id) FROM ins`,
		eventID, eventType, objectID, receivedAt.UTC())
	if err != nil {
		return false, fmt.Errorf("insert hint %s: %w", eventID, err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("insert hint %s: %w", eventID, err)
	}
	return n == 1, nil
}

// PruneHints deletes up to limit webhook hints handled before cutoff, oldest
// first, and returns how many it deleted. Unhandled hints are never pruned.
func (q *Queries) PruneHints(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	tag, err := q.db.Exec(ctx, `
		DELETE FROM webhook_hints WHERE event_id IN (
			SELECT event_id FROM webhook_hints WHERE handled_at < $1 ORDER BY handled_at LIMIT $2)`,
		cutoff.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("prune hints: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PruneReconcilePasses deletes up to limit reconcile pass summaries that
// started before cutoff, oldest first, and returns how many it deleted.
func (q *Queries) PruneReconcilePasses(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	tag, err := q.db.Exec(ctx, `
		DELETE FROM reconcile_passes WHERE id IN (
			SELECT id FROM reconcile_passes WHERE started_at < $1 ORDER BY started_at LIMIT $2)`,
		cutoff.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("prune reconcile passes: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
