// Webhook hints: a Stripe webhook delivery reduced to the identity of the
// object it concerns. A hint only tells the reconciler which object to
// fetch from Stripe; nothing in the delivery's payload is trusted or kept.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// NewHint is a webhook hint to record.
type NewHint struct {
	EventID, Type, ObjectID string
	ReceivedAt              time.Time
}

// InsertHint records one webhook hint: InsertHints for one.
func (q *Queries) InsertHint(ctx context.Context, eventID, eventType, objectID string, receivedAt time.Time) (inserted bool, err error) {
	ins, err := q.InsertHints(ctx, []NewHint{{EventID: eventID, Type: eventType, ObjectID: objectID, ReceivedAt: receivedAt}})
	if err != nil {
		return false, err
	}
	return ins[0], nil
}

// InsertHints records webhook hints in one statement and, for each new
// event, notifies the 'paymentd_hints' channel with its object id in the
// same statement, so the notifications are delivered exactly when the rows
// commit. inserted[i] reports whether hints[i] was new: a redelivered event
// (an id already stored, or one earlier in hints) is left alone.
func (q *Queries) InsertHints(ctx context.Context, hints []NewHint) (inserted []bool, err error) {
	inserted = make([]bool, len(hints))
	first := make(map[string]int, len(hints)) // event id -> index of its first occurrence
	var ids, types, objects []string
	var times []time.Time
	for i, h := range hints {
		if _, dup := first[h.EventID]; dup {
			continue
		}
		first[h.EventID] = i
		ids, types, objects = append(ids, h.EventID), append(types, h.Type), append(objects, h.ObjectID)
		times = append(times, h.ReceivedAt.UTC())
	}
	rows, err := q.db.Query(ctx, `
		WITH ins AS (
			INSERT INTO webhook_hints (event_id, type, object_id, received_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
			ON CONFLICT (event_id) DO NOTHING
			RETURNING event_id, object_id)
		SELECT event_id, pg_notify('paymentd_hints', object_id) FROM ins`,
		ids, types, objects, times)
	if err != nil {
		return nil, fmt.Errorf("insert %d hints: %w", len(ids), err)
	}
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id, nil}, func() error {
		inserted[first[id]] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert %d hints: %w", len(ids), err)
	}
	return inserted, nil
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
