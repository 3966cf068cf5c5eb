// Walks: where an unfinished walk of Stripe's resource lists stands, so a
// pass stopped by its time budget or by a restart resumes there.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// WalkPhase is the list a walk is in: sessions first, then refunds, then
// disputes. The reconcile_walks table's CHECK lists the same values.
type WalkPhase string

// Walk phases, in walking order.
const (
	WalkSessions WalkPhase = "sessions"
	WalkRefunds  WalkPhase = "refunds"
	WalkDisputes WalkPhase = "disputes"
)

// WalkPhases lists every WalkPhase in walking order.
var WalkPhases = []WalkPhase{WalkSessions, WalkRefunds, WalkDisputes}

// Walk is one row of reconcile_walks.
type Walk struct {
	Name string
	// Since is the window: objects created at or after it.
	Since time.Time
	// StartedAt is when the walk began.
	StartedAt time.Time
	Phase     WalkPhase
	// StartingAfter is the last object of the last page written in Phase
	// ("" at the phase's start).
	StartingAfter string
	// Seen counts the objects listed so far.
	Seen int64
}

// GetWalk returns the unfinished walk name, or ErrNotFound.
func (q *Queries) GetWalk(ctx context.Context, name string) (Walk, error) {
	rows, err := q.db.Query(ctx, `SELECT name, since, started_at, phase, starting_after, seen FROM reconcile_walks
		WHERE name = $1`, name)
	if err != nil {
		return Walk{}, fmt.Errorf("get walk %s: %w", name, err)
	}
	w, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (Walk, error) {
		var w Walk
		err := row.Scan(&w.Name, &w.Since, &w.StartedAt, &w.Phase, &w.StartingAfter, &w.Seen)
		return w, err
	})
	if err = notFound(err); err != nil && !errors.Is(err, ErrNotFound) {
		return w, fmt.Errorf("get walk %s: %w", name, err)
	}
	return w, err
}

// SaveWalk records where a walk stands.
func (q *Queries) SaveWalk(ctx context.Context, w Walk, now time.Time) error {
	_, err := q.db.Exec(ctx, `INSERT INTO reconcile_walks (name, since, started_at, phase, starting_after, seen, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (name) DO UPDATE SET since = $2, started_at = $3, phase = $4, starting_after = $5, seen = $6, updated_at = $7`,
		w.Name, w.Since.UTC(), w.StartedAt.UTC(), w.Phase, w.StartingAfter, w.Seen, now.UTC())
	if err != nil {
		return fmt.Errorf("save walk %s: %w", w.Name, err)
	}
	return nil
}

// DeleteWalk forgets a walk that ended.
func (q *Queries) DeleteWalk(ctx context.Context, name string) error {
	if _, err := q.db.Exec(ctx, `DELETE FROM reconcile_walks WHERE name = $1`, name); err != nil {
		return fmt.Errorf("delete walk %s: %w", name, err)
	}
	return nil
}
