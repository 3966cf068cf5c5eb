// Steps: the rows of the durable step engine. Claiming uses one UPDATE over
// a SELECT ... FOR UPDATE SKIP LOCKED, so any number of workers on any number
// of replicas share the table without taking each other's work; every write
// to a running step is fenced by its lease owner.
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// StepStatus is where a step is in the engine's state machine. The steps
// table's CHECK lists the same values (TestStatesMatchChecks).
type StepStatus string

// Step statuses.
const (
	StepWaiting  StepStatus = "waiting"
	StepPending  StepStatus = "pending"
	StepRunning  StepStatus = "running"
	StepDone     StepStatus = "done"
	StepFailed   StepStatus = "failed"
	StepCanceled StepStatus = "canceled"
)

// StepStatuses lists every StepStatus.
var StepStatuses = []StepStatus{StepWaiting, StepPending, StepRunning, StepDone, StepFailed, StepCanceled}

// Final reports whether a step in status s will never run again.
func (s StepStatus) Final() bool { return s == StepDone || s == StepFailed || s == StepCanceled }

// StepsChannel is the LISTEN/NOTIFY channel that announces new due work.
const StepsChannel = "paymentd_steps"

// Step is one row of the steps table.
type Step struct {
	ID             int64           `json:"id"`
	PurchaseID     *string         `json:"purchase_id"`
	Pipeline       string          `json:"pipeline"`
	Name           string          `json:"name"`
	AfterName      *string         `json:"after,omitempty"`
	Blocking       bool            `json:"-"`
	Tags           []string        `json:"tags"`
	Args           json.RawMessage `json:"args"`
	Status         StepStatus      `json:"status"`
	RunAt          time.Time       `json:"run_at"`
	Attempts       int             `json:"attempts"`
	MaxAttempts    int             `json:"max_attempts"`
	LeaseOwner     *string         `json:"lease_owner,omitempty"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at,omitempty"`
	LastError      *string         `json:"last_error,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
}

const stepColumns = `id, purchase_id, pipeline, name, after_name, blocking, tags, args, status, run_at, attempts,
	max_attempts, lease_owner, lease_expires_at, last_error, result, created_at, updated_at, finished_at`

func scanStep(row pgx.CollectableRow) (Step, error) {
	var s Step
	err := row.Scan(&s.ID, &s.PurchaseID, &s.Pipeline, &s.Name, &s.AfterName, &s.Blocking, &s.Tags, &s.Args, &s.Status,
		&s.RunAt, &s.Attempts, &s.MaxAttempts, &s.LeaseOwner, &s.LeaseExpiresAt, &s.LastError, &s.Result,
		&s.CreatedAt, &s.UpdatedAt, &s.FinishedAt)
	return s, err
}

func (q *Queries) collectSteps(ctx context.Context, sql string, args ...any) ([]Step, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanStep)
}

// NewStep is a step to record.
type NewStep struct {
	PurchaseID  string // "" for a global step
	Pipeline    string
	Name        string
	After       string // "" when the step does not wait for another
	Blocking    bool   // another step of the pipeline waits for this one
	Tags        []string
	Args        json.RawMessage
	RunAt       time.Time
	MaxAttempts int
}

// InsertSteps records steps, skipping any already recorded under the same
// purchase, pipeline and name, and returns how many it inserted. A step with
// After set starts waiting; the others are pending at RunAt. When a step
// became due it notifies StepsChannel at commit.
func (q *Queries) InsertSteps(ctx context.Context, now time.Time, steps []NewStep) (int, error) {
	if len(steps) == 0 {
		return 0, nil
	}
	batch := &pgx.Batch{}
	for _, s := range steps {
		status := StepPending
		var after *string
		if s.After != "" {
			status, after = StepWaiting, &s.After
		}
		var purchase *string
		if s.PurchaseID != "" {
			purchase = &s.PurchaseID
		}
		args := s.Args
		if len(args) == 0 {
			args = json.RawMessage(`{}`)
		}
		tags := s.Tags
		if tags == nil {
			tags = []string{}
		}
		batch.Queue(`INSERT INTO steps (purchase_id, pipeline, name, after_name, blocking, tags, args, status, run_at,
				max_attempts, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
			ON CONFLICT DO NOTHING`,
			purchase, s.Pipeline, s.Name, after, s.Blocking, tags, args, status, s.RunAt.UTC(), s.MaxAttempts, now.UTC())
	}
	res := q.db.SendBatch(ctx, batch)
	inserted := 0
	for range steps {
		tag, err := res.Exec()
		if err != nil {
			res.Close()
			return inserted, fmt.Errorf("insert step: %w", err)
		}
		inserted += int(tag.RowsAffected())
	}
	if err := res.Close(); err != nil {
		return inserted, fmt.Errorf("insert steps: %w", err)
	}
	if inserted > 0 {
		if err := q.NotifySteps(ctx); err != nil {
			return inserted, err
		}
	}
	return inserted, nil
}

// NotifySteps tells listening workers that there may be due steps; inside a
// transaction the notification is delivered at commit.
func (q *Queries) NotifySteps(ctx context.Context) error {
	if _, err := q.db.Exec(ctx, `SELECT pg_notify($1, '')`, StepsChannel); err != nil {
		return fmt.Errorf("notify steps: %w", err)
	}
	return nil
}

// ClaimSteps leases up to limit due steps to owner until now+lease, counting
// an attempt on each, oldest due first.
func (q *Queries) ClaimSteps(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Step, error) {
	steps, err := q.collectSteps(ctx, claimSQL(limit), now.UTC(), owner, now.Add(lease).UTC())
	if err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	return steps, nil
}

// claimSQL is the claim statement. The limit is part of its text, not a
// parameter: a cached generic plan with an unknown LIMIT sorts every due row
// instead of walking the due index.
func claimSQL(limit int) string {
	return `
		WITH due AS (
			SELECT id FROM steps
			WHERE status = 'pending' AND run_at <= $1
			ORDER BY run_at, id
			LIMIT ` + strconv.Itoa(limit) + `
			FOR UPDATE SKIP LOCKED
		)
		UPDATE steps s SET status = 'running', attempts = s.attempts + 1, lease_owner = $2,
			lease_expires_at = $3, updated_at = $1
		FROM due WHERE s.id = due.id
		RETURNING ` + prefixed("s.", stepColumns)
}

const completeSQL = `UPDATE steps SET status = 'done', result = $4, lease_owner = NULL,
		lease_expires_at = NULL, last_error = NULL, updated_at = $3, finished_at = $3
	WHERE id = $1 AND lease_owner = $2 AND status = 'running'`

// completeReleaseSQL also makes due the steps that waited for this one, and
// notifies listeners when any of them is due now.
const completeReleaseSQL = `
	WITH done AS (
		UPDATE steps SET status = 'done', result = $4, lease_owner = NULL, lease_expires_at = NULL,
			last_error = NULL, updated_at = $3, finished_at = $3
		WHERE id = $1 AND lease_owner = $2 AND status = 'running'
		RETURNING purchase_id, pipeline, name
	), released AS (
		UPDATE steps s SET status = 'pending', run_at = greatest(s.run_at, $3), updated_at = $3
		FROM done
		WHERE s.status = 'waiting' AND s.pipeline = done.pipeline AND s.after_name = done.name
			AND s.purchase_id IS NOT DISTINCT FROM done.purchase_id
		RETURNING s.run_at
	)
	SELECT (SELECT count(*) FROM done),
		(SELECT count(pg_notify($5, '')) FROM (SELECT 1 FROM released WHERE run_at <= $3 LIMIT 1) due)`

// CompleteStep marks a running step done with its result, and makes due the
// steps of its pipeline that waited for it. It reports false when owner no
// longer holds the lease (the step was rescued and belongs to another worker).
func (q *Queries) CompleteStep(ctx context.Context, s Step, owner string, now time.Time, result json.RawMessage) (bool, error) {
	var done int64
	var err error
	if s.Blocking {
		err = q.db.QueryRow(ctx, completeReleaseSQL, s.ID, owner, now.UTC(), result, StepsChannel).Scan(&done, new(int))
	} else {
		// Nothing waits for it: the common case is one plain update.
		var tag pgconn.CommandTag
		tag, err = q.db.Exec(ctx, completeSQL, s.ID, owner, now.UTC(), result)
		done = tag.RowsAffected()
	}
	if err != nil {
		return false, fmt.Errorf("complete step %d: %w", s.ID, err)
	}
	return done == 1, nil
}

// CompleteAndClaim is CompleteStep followed by ClaimSteps for one more
// step, sent together in one round trip and run in one implicit transaction.
func (q *Queries) CompleteAndClaim(ctx context.Context, s Step, owner string, now time.Time, result json.RawMessage,
	lease time.Duration) (completed bool, next []Step, err error) {
	batch := &pgx.Batch{}
	var done int64
	if s.Blocking {
		batch.Queue(completeReleaseSQL, s.ID, owner, now.UTC(), result, StepsChannel).QueryRow(func(row pgx.Row) error {
			return row.Scan(&done, new(int))
		})
	} else {
		batch.Queue(completeSQL, s.ID, owner, now.UTC(), result).Exec(func(tag pgconn.CommandTag) error {
			done = tag.RowsAffected()
			return nil
		})
	}
	batch.Queue(claimSQL(1), now.UTC(), owner, now.Add(lease).UTC()).Query(func(rows pgx.Rows) error {
		next, err = pgx.CollectRows(rows, scanStep)
		return err
	})
	if err := q.db.SendBatch(ctx, batch).Close(); err != nil {
		return false, nil, fmt.Errorf("complete step %d and claim: %w", s.ID, err)
	}
	return done == 1, next, nil
}

// RetryStep puts a running step back to pending at runAt with its error.
func (q *Queries) RetryStep(ctx context.Context, id int64, owner string, now, runAt time.Time, errText string) (bool, error) {
	tag, err := q.db.Exec(ctx, `
		UPDATE steps SET status = 'pending', run_at = $4, last_error = $5, lease_owner = NULL,
			lease_expires_at = NULL, updated_at = $3
		WHERE id = $1 AND lease_owner = $2 AND status = 'running'`,
		id, owner, now.UTC(), runAt.UTC(), errText)
	if err != nil {
		return false, fmt.Errorf("retry step %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// FailStep marks a running step failed for good.
func (q *Queries) FailStep(ctx context.Context, id int64, owner string, now time.Time, errText string) (bool, error) {
	tag, err := q.db.Exec(ctx, `
		UPDATE steps SET status = 'failed', last_error = $4, lease_owner = NULL, lease_expires_at = NULL,
			updated_at = $3, finished_at = $3
		WHERE id = $1 AND lease_owner = $2 AND status = 'running'`,
		id, owner, now.UTC(), errText)
	if err != nil {
		return false, fmt.Errorf("fail step %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseStep hands a running step back without spending its attempt, for a
// worker that is shutting down before the handler finished.
func (q *Queries) ReleaseStep(ctx context.Context, id int64, owner string, now time.Time) (bool, error) {
	tag, err := q.db.Exec(ctx, `
		UPDATE steps SET status = 'pending', attempts = greatest(attempts - 1, 0), run_at = $3,
			lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
		WHERE id = $1 AND lease_owner = $2 AND status = 'running'`,
		id, owner, now.UTC())
	if err != nil {
		return false, fmt.Errorf("release step %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// RescueExpiredSteps returns running steps whose lease lapsed (their worker
// died) to pending, or to failed when they have no attempts left, and
// returns the rows it changed.
func (q *Queries) RescueExpiredSteps(ctx context.Context, now time.Time) ([]Step, error) {
	steps, err := q.collectSteps(ctx, `
		WITH expired AS (
			SELECT id FROM steps WHERE status = 'running' AND lease_expires_at < $1
			FOR UPDATE SKIP LOCKED
		)
		UPDATE steps s SET
			status = CASE WHEN s.attempts >= s.max_attempts THEN 'failed' ELSE 'pending' END,
			finished_at = CASE WHEN s.attempts >= s.max_attempts THEN $1::timestamptz END,
			last_error = coalesce(s.last_error || '; ', '') || 'lease expired (worker ' || s.lease_owner || ' lost)',
			run_at = $1, lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
		FROM expired WHERE s.id = expired.id
		RETURNING `+prefixed("s.", stepColumns), now.UTC())
	if err != nil {
		return nil, fmt.Errorf("rescue expired steps: %w", err)
	}
	return steps, nil
}

// CancelSteps cancels the not-yet-run steps of a purchase that carry tag.
func (q *Queries) CancelSteps(ctx context.Context, purchaseID, tag string, now time.Time) (int, error) {
	res, err := q.db.Exec(ctx, `
		UPDATE steps SET status = 'canceled', updated_at = $3, finished_at = $3,
			last_error = 'canceled: ' || $2
		WHERE purchase_id = $1 AND $2 = ANY(tags) AND status IN ('waiting', 'pending')`,
		purchaseID, tag, now.UTC())
	if err != nil {
		return 0, fmt.Errorf("cancel steps: %w", err)
	}
	return int(res.RowsAffected()), nil
}

// StepResult returns the stored result of a done step of the same pipeline.
func (q *Queries) StepResult(ctx context.Context, purchaseID, pipeline, name string) (json.RawMessage, error) {
	var result json.RawMessage
	var purchase *string
	if purchaseID != "" {
		purchase = &purchaseID
	}
	err := q.db.QueryRow(ctx, `
		SELECT result FROM steps
		WHERE purchase_id IS NOT DISTINCT FROM $1 AND pipeline = $2 AND name = $3 AND status = 'done'`,
		purchase, pipeline, name).Scan(&result)
	if err != nil {
		return nil, notFound(err)
	}
	return result, nil
}

// GetStep returns one step by id.
func (q *Queries) GetStep(ctx context.Context, id int64) (Step, error) {
	rows, err := q.db.Query(ctx, `SELECT `+stepColumns+` FROM steps WHERE id = $1`, id)
	if err != nil {
		return Step{}, fmt.Errorf("get step %d: %w", id, err)
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanStep)
	if err != nil {
		return Step{}, notFound(err)
	}
	return s, nil
}

// PurchaseSteps returns every step of a purchase, in the order they were recorded.
func (q *Queries) PurchaseSteps(ctx context.Context, purchaseID string) ([]Step, error) {
	steps, err := q.collectSteps(ctx, `SELECT `+stepColumns+` FROM steps WHERE purchase_id = $1 ORDER BY id`, purchaseID)
	if err != nil {
		return nil, fmt.Errorf("list purchase steps: %w", err)
	}
	return steps, nil
}

// StepsByStatus returns up to limit steps in status, most recently updated first.
func (q *Queries) StepsByStatus(ctx context.Context, status StepStatus, limit int) ([]Step, error) {
	steps, err := q.collectSteps(ctx, `SELECT `+stepColumns+` FROM steps WHERE status = $1
		ORDER BY updated_at DESC, id DESC LIMIT $2`, status, limit)
	if err != nil {
		return nil, fmt.Errorf("list %s steps: %w", status, err)
	}
	return steps, nil
}

// RetryFailedStep makes a failed step pending again with a fresh set of
// attempts. It reports false when the step is not failed.
func (q *Queries) RetryFailedStep(ctx context.Context, id int64, now time.Time) (bool, error) {
	tag, err := q.db.Exec(ctx, `
		UPDATE steps SET status = 'pending', attempts = 0, run_at = $2, finished_at = NULL, updated_at = $2
		WHERE id = $1 AND status = 'failed'`, id, now.UTC())
	if err != nil {
		return false, fmt.Errorf("retry failed step %d: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		return true, q.NotifySteps(ctx)
	}
	return false, nil
}

// StepStats summarises the table for metrics and readiness.
type StepStats struct {
	Pending, Running, Failed int64
	OldestDue                *time.Time
}

// StepStats counts steps by status and finds the oldest due step.
func (q *Queries) StepStats(ctx context.Context, now time.Time) (StepStats, error) {
	var s StepStats
	err := q.db.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM steps WHERE status = 'pending' AND run_at <= $1),
			(SELECT count(*) FROM steps WHERE status = 'running'),
			(SELECT count(*) FROM steps WHERE status = 'failed'),
			(SELECT min(run_at) FROM steps WHERE status = 'pending' AND run_at <= $1)`, now.UTC()).
		Scan(&s.Pending, &s.Running, &s.Failed, &s.OldestDue)
	if err != nil {
		return s, fmt.Errorf("step stats: %w", err)
	}
	return s, nil
}

// prefixed qualifies each column of a comma-separated list with prefix.
func prefixed(prefix, columns string) string {
	fields := strings.FieldsFunc(columns, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
	for i, f := range fields {
		fields[i] = prefix + f
	}
	return strings.Join(fields, ", ")
}

// RetryAllFailedSteps makes every failed step pending again with a fresh set
// of attempts and returns their ids.
func (q *Queries) RetryAllFailedSteps(ctx context.Context, now time.Time) ([]int64, error) {
	rows, err := q.db.Query(ctx, `
		UPDATE steps SET status = 'pending', attempts = 0, run_at = $1, finished_at = NULL, updated_at = $1
		WHERE status = 'failed' RETURNING id`, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("retry failed steps: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("retry failed steps: %w", err)
	}
	if len(ids) > 0 {
		return ids, q.NotifySteps(ctx)
	}
	return ids, nil
}
