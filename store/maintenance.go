// Maintenance: retention. Finished steps and handled webhook hints are
// deleted once older than the retention, in bounded batches, each its own
// short transaction, so pruning never holds many locks for long.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MaintenanceLockKey is the advisory lock the replica running maintenance
// (retention) holds, so one replica prunes at a time.
const MaintenanceLockKey int64 = 0x7061796d656e76

// PruneCursor is how far a prune pass has read: finished steps are visited in
// (finished_at, id) order. The zero cursor starts from the oldest.
type PruneCursor struct {
	FinishedAt time.Time
	ID         int64
}

// PruneSteps visits the next limit done or canceled steps after cursor that
// finished before cutoff, and deletes the steps of every purchase (or global
// pipeline) among them whose steps are all done or canceled and all finished
// before cutoff. Nothing else is deleted: a purchase with a step still open,
// failed, or finished recently keeps every step, because later steps read
// earlier results (Job.Prior) and pipelines are named by what exists.
//
// It runs in one short transaction, which first locks the purchases it
// considers (skipping those another transaction holds): step scheduling
// happens under the purchase's row lock, so no step is added to a purchase
// while its old ones go. It returns how many steps it deleted, the cursor
// for the next call, and whether more candidates may follow.
func (db *DB) PruneSteps(ctx context.Context, cutoff time.Time, after PruneCursor, limit int) (deleted int, next PruneCursor, more bool, err error) {
	next = after
	err = db.InTx(ctx, func(q *Queries) error {
		deleted = 0
		rows, err := q.db.Query(ctx, `
			SELECT id, purchase_id, pipeline, finished_at FROM steps
			WHERE status IN ('done', 'canceled') AND finished_at < $1 AND (finished_at, id) > ($2, $3)
			ORDER BY finished_at, id LIMIT $4`, cutoff.UTC(), after.FinishedAt.UTC(), after.ID, limit)
		if err != nil {
			return err
		}
		var purchases, pipelines []string
		seenP, seenG := map[string]bool{}, map[string]bool{}
		n := 0
		var purchase *string
		var pipeline string
		_, err = pgx.ForEachRow(rows, []any{&next.ID, &purchase, &pipeline, &next.FinishedAt}, func() error {
			n++
			switch {
			case purchase != nil && !seenP[*purchase]:
				seenP[*purchase] = true
				purchases = append(purchases, *purchase)
			case purchase == nil && !seenG[pipeline]:
				seenG[pipeline] = true
				pipelines = append(pipelines, pipeline)
			}
			return nil
		})
		if err != nil {
			return err
		}
		more = n == limit
		if len(purchases) > 0 {
			rows, err := q.db.Query(ctx, `SELECT id::text FROM purchases WHERE id = ANY($1::uuid[]) FOR UPDATE SKIP LOCKED`, purchases)
			if err != nil {
				return err
			}
			locked, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			tag, err := q.db.Exec(ctx, `
				DELETE FROM steps s WHERE s.purchase_id = ANY($1::uuid[])
					AND NOT EXISTS (SELECT 1 FROM steps o WHERE o.purchase_id = s.purchase_id
						AND (o.status NOT IN ('done', 'canceled') OR o.finished_at >= $2))`, locked, cutoff.UTC())
			if err != nil {
				return err
			}
			deleted += int(tag.RowsAffected())
		}
		if len(pipelines) > 0 {
			tag, err := q.db.Exec(ctx, `
				DELETE FROM steps s WHERE s.purchase_id IS NULL AND s.pipeline = ANY($1)
					AND NOT EXISTS (SELECT 1 FROM steps o WHERE o.purchase_id IS NULL AND o.pipeline = s.pipeline
						AND (o.status NOT IN ('done', 'canceled') OR o.finished_at >= $2))`, pipelines, cutoff.UTC())
			if err != nil {
				return err
			}
			deleted += int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return 0, after, false, fmt.Errorf("prune steps: %w", err)
	}
	return deleted, next, more, nil
}
