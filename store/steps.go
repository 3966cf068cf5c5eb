// Steps: the rows of the durable step engine. Claiming uses one UPDATE over
// a SELECT ... FOR UPDATE SKIP LOCKED, so any number of workers on any number
// of replicas share the table without taking each other's work. Every claim
// draws a fresh token, and every write to a running step is fenced by it: a
// worker that lost its claim (its lease lapsed and another worker took the
// step) can no longer complete, retry, fail, release or renew it.
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

// SubjectKind says what a step belongs to: the table its subject id names,
// or none for a global step. The steps table's CHECK lists the same values
// (TestStatesMatchChecks).
type SubjectKind string

// Subject kinds.
const (
	SubjectPurchase     SubjectKind = "purchase"
	SubjectSubscription SubjectKind = "subscription"
	SubjectOrder        SubjectKind = "order"
	SubjectGlobal       SubjectKind = "global" // no subject id
)

// SubjectKinds lists every SubjectKind.
var SubjectKinds = []SubjectKind{SubjectPurchase, SubjectSubscription, SubjectOrder, SubjectGlobal}

// subjectTables names the table that holds each kind's subjects, by id.
var subjectTables = map[SubjectKind]string{
	SubjectPurchase:     "purchases",
	SubjectSubscription: "subscriptions",
	SubjectOrder:        "orders",
}

// StepsChannel is the LISTEN/NOTIFY channel that announces new due work.
const StepsChannel = "paymentd_steps"

// Step is one row of the steps table.
type Step struct {
	ID          int64       `json:"id"`
	SubjectKind SubjectKind `json:"subject_kind"`
	SubjectID   *string     `json:"subject_id"` // nil for a global step
	// PurchaseID is SubjectID for a purchase's step, nil for any other.
	PurchaseID     *string         `json:"purchase_id,omitempty"`
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
	ClaimToken     *int64          `json:"-"`
	LastError      *string         `json:"last_error,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
}

const stepColumns = `id, subject_kind, subject_id, pipeline, name, after_name, blocking, tags, args, status, run_at, attempts,
	max_attempts, lease_owner, lease_expires_at, claim_token, last_error, result, created_at, updated_at, finished_at`

func scanStep(row pgx.CollectableRow) (Step, error) {
	var s Step
	err := row.Scan(&s.ID, &s.SubjectKind, &s.SubjectID, &s.Pipeline, &s.Name, &s.AfterName, &s.Blocking, &s.Tags, &s.Args, &s.Status,
		&s.RunAt, &s.Attempts, &s.MaxAttempts, &s.LeaseOwner, &s.LeaseExpiresAt, &s.ClaimToken, &s.LastError, &s.Result,
		&s.CreatedAt, &s.UpdatedAt, &s.FinishedAt)
	if s.SubjectKind == SubjectPurchase {
		s.PurchaseID = s.SubjectID
	}
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
	SubjectKind SubjectKind // "" with no SubjectID: global
	SubjectID   string      // "" for a global step
	PurchaseID  string      // shorthand for SubjectKind purchase and SubjectID
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
// subject, pipeline and name, and returns how many it inserted. A step with
// After set starts waiting; the others are pending at RunAt. When a step
// became due it notifies StepsChannel at commit.
func (q *Queries) InsertSteps(ctx context.Context, now time.Time, steps []NewStep) (int, error) {
	if len(steps) == 0 {
		return 0, nil
	}
	n := len(steps)
	var (
		kinds, pipelines, names, statuses = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		subjects, afters                  = make([]*string, n), make([]*string, n)
		blocking                          = make([]bool, n)
		tags, args                        = make([][]byte, n), make([][]byte, n)
		runAt                             = make([]time.Time, n)
		maxAttempts                       = make([]int32, n)
	)
	for i, s := range steps {
		statuses[i] = string(StepPending)
		if s.After != "" {
			statuses[i], afters[i] = string(StepWaiting), &s.After
		}
		kind, id := s.SubjectKind, s.SubjectID
		if s.PurchaseID != "" {
			kind, id = SubjectPurchase, s.PurchaseID
		}
		if id != "" {
			subjects[i] = &id
		}
		if kind == "" && id == "" {
			kind = SubjectGlobal
		}
		kinds[i], pipelines[i], names[i], blocking[i] = string(kind), s.Pipeline, s.Name, s.Blocking
		args[i] = s.Args
		if len(args[i]) == 0 {
			args[i] = []byte(`{}`)
		}
		t := s.Tags
		if t == nil {
			t = []string{}
		}
		var err error
		if tags[i], err = json.Marshal(t); err != nil {
			return 0, fmt.Errorf("insert steps: encode tags: %w", err)
		}
		runAt[i], maxAttempts[i] = s.RunAt.UTC(), int32(s.MaxAttempts)
	}
	var inserted, notified int
	err := q.db.QueryRow(ctx, insertStepsSQL, kinds, subjects, pipelines, names, afters, blocking, tags, args, statuses,
		runAt, maxAttempts, now.UTC(), StepsChannel).Scan(&inserted, &notified)
	if err != nil {
		return 0, fmt.Errorf("insert steps: %w", err)
	}
	return inserted, nil
}

// insertStepsSQL inserts a batch of steps in one statement (the arrays are
// the columns, one element a step; tags are a JSON array each, since an
// array of arrays cannot be unnested by row) and notifies StepsChannel when
// it inserted any: at commit, inside a transaction.
const insertStepsSQL = `
	WITH input AS (
		SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::boolean[], $7::jsonb[],
			$8::jsonb[], $9::text[], $10::timestamptz[], $11::integer[])
			AS i (subject_kind, subject_id, pipeline, name, after_name, blocking, tags, args, status, run_at, max_attempts)
	), ins AS (
		INSERT INTO steps (subject_kind, subject_id, pipeline, name, after_name, blocking, tags, args, status,
			run_at, max_attempts, created_at, updated_at)
		SELECT subject_kind, subject_id, pipeline, name, after_name, blocking,
			ARRAY(SELECT jsonb_array_elements_text(tags)), args, status, run_at, max_attempts, $12, $12
		FROM input
		ON CONFLICT DO NOTHING
		RETURNING 1
	)
	SELECT (SELECT count(*) FROM ins), (SELECT count(pg_notify($13, '')) FROM (SELECT 1 FROM ins LIMIT 1) one)`

// NotifySteps tells listening workers that there may be due steps; inside a
// transaction the notification is delivered at commit.
func (q *Queries) NotifySteps(ctx context.Context) error {
	if _, err := q.db.Exec(ctx, `SELECT pg_notify($1, '')`, StepsChannel); err != nil {
		return fmt.Errorf("notify steps: %w", err)
	}
	return nil
}

// Claim identifies one claim of a running step: the step and the token drawn
// when it was claimed. A step claimed again (after its lease lapsed, or after
// it was released) has a new token, so an old claim fences nothing in.
type Claim struct {
	ID    int64
	Token int64
}

// Claim returns the claim under which s is running; the zero Claim (which
// matches no row) when s is not running.
func (s Step) Claim() Claim {
	if s.ClaimToken == nil {
		return Claim{ID: s.ID}
	}
	return Claim{ID: s.ID, Token: *s.ClaimToken}
}

// micros turns a duration into the microseconds the lease statements
// multiply by interval '1 microsecond'.
func micros(d time.Duration) int64 { return d.Microseconds() }

// ClaimSteps leases up to limit steps due at now to owner, counting an
// attempt on each, oldest due first. Each claim draws a fresh token, and its
// lease runs for lease from the database's clock: leases are compared with
// that clock only, so replicas whose clocks disagree still agree on them.
func (q *Queries) ClaimSteps(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Step, error) {
	if limit < 1 {
		return nil, nil
	}
	steps, err := q.collectSteps(ctx, claimSQL(limit), now.UTC(), owner, micros(lease))
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
			lease_expires_at = clock_timestamp() + $3 * interval '1 microsecond',
			claim_token = nextval('steps_claim_seq'), updated_at = $1
		FROM due WHERE s.id = due.id
		RETURNING ` + prefixed("s.", stepColumns)
}

// Completion is the successful outcome of one claim: the result to store.
// Blocking says another step waits for this one (Step.Blocking).
type Completion struct {
	Claim
	Blocking bool
	Result   json.RawMessage
}

// completeSQL marks the claimed steps done, fenced by their tokens. The
// input arrives as arrays, so a whole batch is one statement. A step has a
// claim token only while running (a CHECK), so the token match implies
// status = 'running'; saying so in the join would let the planner walk the
// lease index, whose dead entries pile up on a busy queue, instead of looking
// each id up by primary key.
const completeSQL = `
	WITH input AS (
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::jsonb[]) AS i (id, token, result)
	), done AS (
		UPDATE steps s SET status = 'done', result = i.result, lease_owner = NULL, lease_expires_at = NULL,
			claim_token = NULL, last_error = NULL, updated_at = $4, finished_at = $4
		FROM input i
		WHERE s.id = i.id AND s.claim_token = i.token
		RETURNING s.id, s.subject_id, s.pipeline, s.name, s.blocking
	)`

// completeOneSQL is completeSQL for a single step, the common case when
// steps are few; a plain update by primary key costs less than unnesting
// arrays.
const completeOneSQL = `
	WITH done AS (
		UPDATE steps SET status = 'done', result = $3, lease_owner = NULL, lease_expires_at = NULL,
			claim_token = NULL, last_error = NULL, updated_at = $4, finished_at = $4
		WHERE id = $1 AND claim_token = $2
		RETURNING id, subject_id, pipeline, name, blocking
	)`

// releaseSQL, after completeSQL or completeOneSQL, makes due the steps that
// waited for the completed ones, notifies listeners when any of them is due
// now, and returns the ids completed. A subject's waiting steps are found
// by equality on all three columns of steps_waiting_idx, and a global
// step's (no subject) by IS NULL, separately: one condition for both (an
// OR, or IS NOT DISTINCT FROM) let the planner read every waiting step of
// the pipeline, a hundred or more per completion in a burst. They are
// locked as they are found (a step canceled meanwhile is rechecked and left
// out), so the update needs no condition but their primary keys: with one
// on status too, the planner chose to read every waiting step through the
// partial index and filter them by id (1.4 ms a completion in a burst,
// against 0.2).
const releaseSQL = `, waiting AS (
		SELECT w.id FROM done d JOIN steps w ON w.status = 'waiting' AND w.subject_id = d.subject_id
			AND w.pipeline = d.pipeline AND w.after_name = d.name
		WHERE d.blocking FOR UPDATE OF w
	), waiting_global AS (
		SELECT w.id FROM done d JOIN steps w ON w.status = 'waiting' AND w.subject_id IS NULL
			AND w.pipeline = d.pipeline AND w.after_name = d.name
		WHERE d.blocking AND d.subject_id IS NULL FOR UPDATE OF w
	), released AS (
		UPDATE steps w SET status = 'pending', run_at = greatest(w.run_at, $4), updated_at = $4
		WHERE w.id = ANY (ARRAY(SELECT id FROM waiting UNION ALL SELECT id FROM waiting_global))
		RETURNING w.run_at
	)
	SELECT id, (SELECT count(pg_notify($5, '')) FROM (SELECT 1 FROM released WHERE run_at <= $4 LIMIT 1) due)
	FROM done`

// completeBatchMin is the smallest batch of completions recorded by one
// statement over arrays. Smaller ones are a statement per step, queued
// together (one round trip all the same): Postgres plans a statement over
// arrays anew at every execution (the arrays' length changes the custom
// plan's cost, so the cached generic plan is never chosen), which cost more
// than two or three updates themselves in the e2e run (0.43 ms of planning
// for 0.40 ms of execution); a statement by primary key reuses its plan.
// From four on, one statement costs less than as many (make bench: 16 cost
// a fifth of the no-op throughput at 8 workers).
const completeBatchMin = 4

// queueComplete queues on b the statements that record cs (nothing waits
// for the steps: skip the search for waiting steps; fewer than
// completeBatchMin: no arrays), which append the ids they completed to done.
func queueComplete(b *pgx.Batch, now time.Time, cs []Completion, done *[]int64) {
	if len(cs) > 1 && len(cs) < completeBatchMin {
		for i := range cs {
			queueComplete(b, now, cs[i:i+1], done)
		}
		return
	}
	blocking := false
	for _, c := range cs {
		blocking = blocking || c.Blocking
	}
	result := func(r json.RawMessage) json.RawMessage {
		if len(r) == 0 {
			return json.RawMessage("null")
		}
		return r
	}
	switch {
	case len(cs) == 1 && !blocking:
		c := cs[0]
		b.Queue(`UPDATE steps SET status = 'done', result = $3, lease_owner = NULL, lease_expires_at = NULL,
				claim_token = NULL, last_error = NULL, updated_at = $4, finished_at = $4
			WHERE id = $1 AND claim_token = $2`, c.ID, c.Token, result(c.Result), now.UTC()).
			Exec(func(tag pgconn.CommandTag) error {
				if tag.RowsAffected() == 1 {
					*done = append(*done, c.ID)
				}
				return nil
			})
		return
	case len(cs) == 1:
		c := cs[0]
		b.Queue(completeOneSQL+releaseSQL, c.ID, c.Token, result(c.Result), now.UTC(), StepsChannel).
			Query(func(rows pgx.Rows) error { return collectIDs(rows, done) })
		return
	}
	ids, tokens := make([]int64, len(cs)), make([]int64, len(cs))
	results := make([]json.RawMessage, len(cs))
	for i, c := range cs {
		ids[i], tokens[i], results[i] = c.ID, c.Token, result(c.Result)
	}
	if blocking {
		b.Queue(completeSQL+releaseSQL, ids, tokens, results, now.UTC(), StepsChannel).
			Query(func(rows pgx.Rows) error { return collectIDs(rows, done) })
		return
	}
	b.Queue(completeSQL+` SELECT id, 0 FROM done`, ids, tokens, results, now.UTC()).
		Query(func(rows pgx.Rows) error { return collectIDs(rows, done) })
}

// collectIDs appends the first column of rows (id, notified) to ids.
func collectIDs(rows pgx.Rows, ids *[]int64) error {
	var id int64
	_, err := pgx.ForEachRow(rows, []any{&id, new(int64)}, func() error {
		*ids = append(*ids, id)
		return nil
	})
	return err
}

// CompleteSteps marks each claimed step done with its result, in one
// statement, and makes due the steps that waited for them. It returns the ids
// it completed; a claim missing from them was lost (another worker holds the
// step now, or it is no longer running) and changed nothing.
func (q *Queries) CompleteSteps(ctx context.Context, now time.Time, cs []Completion) ([]int64, error) {
	done, _, err := q.CompleteAndClaim(ctx, now, cs, "", 0, 0)
	return done, err
}

// CompleteAndClaim records completions (as CompleteSteps) and claims up to
// limit more steps for owner (as ClaimSteps) in one round trip and one
// implicit transaction: a step the completions made due may be claimed at
// once. Either part may be empty.
func (q *Queries) CompleteAndClaim(ctx context.Context, now time.Time, cs []Completion, owner string, lease time.Duration,
	limit int) (done []int64, claimed []Step, err error) {
	if len(cs) == 0 && limit < 1 {
		return nil, nil, nil
	}
	batch := &pgx.Batch{}
	if len(cs) > 0 {
		queueComplete(batch, now, cs, &done)
	}
	if limit > 0 {
		batch.Queue(claimSQL(limit), now.UTC(), owner, micros(lease)).Query(func(rows pgx.Rows) error {
			claimed, err = pgx.CollectRows(rows, scanStep)
			return err
		})
	}
	if err := q.db.SendBatch(ctx, batch).Close(); err != nil {
		return nil, nil, fmt.Errorf("complete %d steps and claim %d: %w", len(cs), limit, err)
	}
	return done, claimed, nil
}

// CompleteStep is CompleteSteps for one claim; it reports false when the
// claim was lost.
func (q *Queries) CompleteStep(ctx context.Context, c Completion, now time.Time) (bool, error) {
	done, err := q.CompleteSteps(ctx, now, []Completion{c})
	return len(done) == 1, err
}

// RetryStep puts a running step back to pending at runAt with its error. It
// reports false when the claim was lost.
func (q *Queries) RetryStep(ctx context.Context, c Claim, now, runAt time.Time, errText string) (bool, error) {
	tag, err := q.db.Exec(ctx, `
		UPDATE steps SET status = 'pending', run_at = $4, last_error = $5, lease_owner = NULL,
			lease_expires_at = NULL, claim_token = NULL, updated_at = $3
		WHERE id = $1 AND claim_token = $2 AND status = 'running'`,
		c.ID, c.Token, now.UTC(), runAt.UTC(), errText)
	if err != nil {
		return false, fmt.Errorf("retry step %d: %w", c.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// dependentsSQL extends a statement whose CTE "roots" yields steps that
// will never run, as they are now (id, subject_id, pipeline, name, status:
// failed or canceled): it cancels every step waiting on one of them,
// directly or through other waiting steps, naming the root in canceled_by
// and last_error. A root is never one of its dependents: a statement must
// not update a row twice. $1 is the time.
const dependentsSQL = `, waiting AS (
		SELECT w.id, w.subject_id, w.pipeline, w.name, r.id AS root_id, r.name AS root_name, r.status AS root_status
		FROM roots r JOIN steps w ON w.status = 'waiting' AND w.pipeline = r.pipeline AND w.after_name = r.name
			AND (w.subject_id = r.subject_id OR (w.subject_id IS NULL AND r.subject_id IS NULL))
		WHERE w.id NOT IN (SELECT id FROM roots)
		UNION
		SELECT w.id, w.subject_id, w.pipeline, w.name, d.root_id, d.root_name, d.root_status
		FROM waiting d JOIN steps w ON w.status = 'waiting' AND w.pipeline = d.pipeline AND w.after_name = d.name
			AND (w.subject_id = d.subject_id OR (w.subject_id IS NULL AND d.subject_id IS NULL))
		WHERE w.id NOT IN (SELECT id FROM roots)
	), canceled AS (
		UPDATE steps s SET status = 'canceled', canceled_by = w.root_id, updated_at = $1, finished_at = $1,
			last_error = 'canceled: ' || w.root_name || ' (step ' || w.root_id || ') ' || w.root_status
		FROM waiting w WHERE s.id = w.id AND s.status = 'waiting'
		RETURNING s.id
	)`

// FailStep marks a running step failed for good and, in the same
// statement, cancels the steps waiting on it (transitively): they would
// otherwise wait forever. It reports false when the claim was lost, and
// how many steps it canceled.
func (q *Queries) FailStep(ctx context.Context, c Claim, now time.Time, errText string) (ok bool, canceled int, err error) {
	var failed int
	err = q.db.QueryRow(ctx, `
		WITH RECURSIVE roots AS (
			UPDATE steps SET status = 'failed', last_error = $4, lease_owner = NULL, lease_expires_at = NULL,
				claim_token = NULL, updated_at = $1, finished_at = $1
			WHERE id = $2 AND claim_token = $3 AND status = 'running'
			RETURNING id, subject_id, pipeline, name, status
		)`+dependentsSQL+`
		SELECT (SELECT count(*) FROM roots), (SELECT count(*) FROM canceled)`,
		now.UTC(), c.ID, c.Token, errText).Scan(&failed, &canceled)
	if err != nil {
		return false, 0, fmt.Errorf("fail step %d: %w", c.ID, err)
	}
	return failed == 1, canceled, nil
}

// ReleaseStep hands a running step back without spending its attempt, for a
// worker that is shutting down before the handler finished. It reports false
// when the claim was lost.
func (q *Queries) ReleaseStep(ctx context.Context, c Claim, now time.Time) (bool, error) {
	tag, err := q.db.Exec(ctx, `
		UPDATE steps SET status = 'pending', attempts = greatest(attempts - 1, 0), run_at = $3,
			lease_owner = NULL, lease_expires_at = NULL, claim_token = NULL, updated_at = $3
		WHERE id = $1 AND claim_token = $2 AND status = 'running'`,
		c.ID, c.Token, now.UTC())
	if err != nil {
		return false, fmt.Errorf("release step %d: %w", c.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLostClaims hands back, without spending their attempt, the steps
// running under owner that a claim sent at one of claimedAt took (a claim
// sets updated_at to the time it is sent) and whose token is not in held:
// the claims of a round trip that committed but whose answer was lost (the
// connection dropped, or its deadline passed while the results were read).
// No worker holds them, so none would run or renew them, and they would
// wait a whole lease and spend an attempt without running. The caller must
// be sure no claim of owner is in flight, and hold every claim it knows of;
// a claim in held is never touched. It returns the ids it released.
func (q *Queries) ReleaseLostClaims(ctx context.Context, owner string, claimedAt []time.Time, held []int64,
	now time.Time) ([]int64, error) {
	if len(claimedAt) == 0 {
		return nil, nil
	}
	at := make([]time.Time, len(claimedAt))
	for i, t := range claimedAt {
		at[i] = t.UTC()
	}
	if held == nil {
		held = []int64{} // <> ALL of a NULL array is NULL, not true
	}
	rows, err := q.db.Query(ctx, `
		UPDATE steps SET status = 'pending', attempts = greatest(attempts - 1, 0), run_at = $4,
			lease_owner = NULL, lease_expires_at = NULL, claim_token = NULL, updated_at = $4
		WHERE status = 'running' AND lease_owner = $1 AND updated_at = ANY ($2::timestamptz[])
			AND claim_token <> ALL ($3::bigint[])
		RETURNING id`, owner, at, held, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("release lost claims: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("release lost claims: %w", err)
	}
	return ids, nil
}

// RenewLeases extends the lease of each claim to lease from the database's
// clock, and returns the ids it renewed; a claim missing from them was lost.
// As in completeSQL, the token match alone implies the step is running.
func (q *Queries) RenewLeases(ctx context.Context, claims []Claim, lease time.Duration) ([]int64, error) {
	if len(claims) == 0 {
		return nil, nil
	}
	ids, tokens := make([]int64, len(claims)), make([]int64, len(claims))
	for i, c := range claims {
		ids[i], tokens[i] = c.ID, c.Token
	}
	rows, err := q.db.Query(ctx, `
		UPDATE steps s SET lease_expires_at = clock_timestamp() + $3 * interval '1 microsecond'
		FROM unnest($1::bigint[], $2::bigint[]) AS c (id, token)
		WHERE s.id = c.id AND s.claim_token = c.token
		RETURNING s.id`, ids, tokens, micros(lease))
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	renewed, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return renewed, nil
}

// RescueExpiredSteps returns running steps whose lease lapsed by the
// database's clock (their worker died or stalled) to pending, or to failed
// when they have no attempts left, canceling the steps waiting on those that
// failed (a data-modifying CTE runs to completion, read or not). It returns
// the rows it rescued, as they are now.
func (q *Queries) RescueExpiredSteps(ctx context.Context, now time.Time) ([]Step, error) {
	steps, err := q.collectSteps(ctx, `
		WITH RECURSIVE expired AS (
			SELECT id FROM steps WHERE status = 'running' AND lease_expires_at < clock_timestamp()
			FOR UPDATE SKIP LOCKED
		), rescued AS (
			UPDATE steps s SET
				status = CASE WHEN s.attempts >= s.max_attempts THEN 'failed' ELSE 'pending' END,
				finished_at = CASE WHEN s.attempts >= s.max_attempts THEN $1::timestamptz END,
				last_error = coalesce(s.last_error || '; ', '') || 'lease expired (worker ' || s.lease_owner || ' lost)',
				run_at = $1, lease_owner = NULL, lease_expires_at = NULL, claim_token = NULL, updated_at = $1
			FROM expired WHERE s.id = expired.id
			RETURNING s.*
		), roots AS (
			SELECT id, subject_id, pipeline, name, status FROM rescued WHERE status = 'failed'
		)`+dependentsSQL+`
		SELECT `+stepColumns+` FROM rescued`, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("rescue expired steps: %w", err)
	}
	return steps, nil
}

// CancelSteps cancels the not-yet-run steps of a subject that carry tag and,
// in the same statement, the steps waiting on them (transitively), which
// could never run; it returns how many it canceled in all. It finds the
// tagged steps by subject (a handful of rows through the unique index on
// subject, pipeline and name; TestCancelByTagUsesAnIndex), then by tag.
// Subject ids are uuids, unique across kinds, so the id alone names one.
func (q *Queries) CancelSteps(ctx context.Context, subjectID, tag string, now time.Time) (int, error) {
	var tagged, waiting int
	if err := q.db.QueryRow(ctx, cancelByTagSQL, now.UTC(), subjectID, tag).Scan(&tagged, &waiting); err != nil {
		return 0, fmt.Errorf("cancel steps: %w", err)
	}
	return tagged + waiting, nil
}

// cancelByTagSQL cancels a subject's ($2) not-yet-run steps tagged $3 at $1,
// with the steps waiting on them, and counts both.
const cancelByTagSQL = `
	WITH RECURSIVE roots AS (
		UPDATE steps SET status = 'canceled', updated_at = $1, finished_at = $1, last_error = 'canceled: ' || $3
		WHERE subject_id = $2 AND status IN ('waiting', 'pending') AND tags @> ARRAY[$3::text]
		RETURNING id, subject_id, pipeline, name, status
	)` + dependentsSQL + `
	SELECT (SELECT count(*) FROM roots), (SELECT count(*) FROM canceled)`

// ReleaseHeldSteps makes the steps carrying tag that wait for a future
// run_at due now, removes the tag from them (a later release leaves them
// alone), and returns how many it released; when any, it notifies
// StepsChannel (at commit, inside a transaction). Steps already canceled
// (a refund's cancellation of a held grant) or run stay as they are. It
// finds them through the index of pending steps by run_at: only those
// still ahead of now.
func (q *Queries) ReleaseHeldSteps(ctx context.Context, tag string, now time.Time) (int, error) {
	var n, notified int
	err := q.db.QueryRow(ctx, releaseHeldSQL, tag, now.UTC(), StepsChannel).Scan(&n, &notified)
	if err != nil {
		return 0, fmt.Errorf("release %s steps: %w", tag, err)
	}
	return n, nil
}

const releaseHeldSQL = `
	WITH released AS (
		UPDATE steps SET run_at = $2, updated_at = $2, tags = array_remove(tags, $1::text)
		WHERE status = 'pending' AND run_at > $2 AND tags @> ARRAY[$1::text]
		RETURNING 1
	)
	SELECT (SELECT count(*) FROM released), (SELECT count(pg_notify($3, '')) FROM (SELECT 1 FROM released LIMIT 1) one)`

// StepResult returns the stored result of a done step of a subject's
// pipeline (subjectID "" for a global one).
func (q *Queries) StepResult(ctx context.Context, subjectID, pipeline, name string) (json.RawMessage, error) {
	var result json.RawMessage
	// Two statements, not "IS NOT DISTINCT FROM": that cannot use the
	// unique index, and a scan of every step per call was the largest cost
	// of the whole pipeline under load.
	var row pgx.Row
	if subjectID == "" {
		row = q.db.QueryRow(ctx, `SELECT result FROM steps
			WHERE subject_id IS NULL AND pipeline = $1 AND name = $2 AND status = 'done'`, pipeline, name)
	} else {
		row = q.db.QueryRow(ctx, `SELECT result FROM steps
			WHERE subject_id = $1 AND pipeline = $2 AND name = $3 AND status = 'done'`, subjectID, pipeline, name)
	}
	err := row.Scan(&result)
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
	return q.SubjectSteps(ctx, purchaseID)
}

// SubjectSteps returns every step of a subject (a purchase, a subscription,
// an order: ids are unique across kinds), in the order they were recorded.
func (q *Queries) SubjectSteps(ctx context.Context, subjectID string) ([]Step, error) {
	steps, err := q.collectSteps(ctx, `SELECT `+stepColumns+` FROM steps WHERE subject_id = $1 ORDER BY id`, subjectID)
	if err != nil {
		return nil, fmt.Errorf("list subject steps: %w", err)
	}
	return steps, nil
}

// StepsWithoutSubject returns the steps whose subject is not a row of its
// kind's table (every step of a kind whose table does not exist yet). It
// stands in for a foreign key, which cannot point into one of several
// tables: subjects are never deleted, so tests that run real flows assert it
// returns nothing.
func (q *Queries) StepsWithoutSubject(ctx context.Context) ([]Step, error) {
	var orphans []Step
	for _, kind := range SubjectKinds {
		table, ok := subjectTables[kind]
		if !ok {
			continue
		}
		exists, err := q.tableExists(ctx, table)
		if err != nil {
			return nil, err
		}
		sql := `SELECT ` + stepColumns + ` FROM steps s WHERE subject_kind = $1`
		if exists {
			sql += ` AND NOT EXISTS (SELECT 1 FROM ` + table + ` t WHERE t.id = s.subject_id)`
		}
		steps, err := q.collectSteps(ctx, sql+` ORDER BY id`, kind)
		if err != nil {
			return nil, fmt.Errorf("find %s steps without a subject: %w", kind, err)
		}
		orphans = append(orphans, steps...)
	}
	return orphans, nil
}

// tableExists reports whether the table is in the database (a subject kind's
// table may come with a later migration than the kind).
func (q *Queries) tableExists(ctx context.Context, table string) (bool, error) {
	var exists bool
	if err := q.db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up table %s: %w", table, err)
	}
	return exists, nil
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
// attempts, and puts the steps its failure canceled back to waiting on it.
// It reports false when the step is not failed.
func (q *Queries) RetryFailedStep(ctx context.Context, id int64, now time.Time) (bool, error) {
	ids, err := q.retryFailed(ctx, `id = $1`, id, now.UTC())
	if err != nil {
		return false, fmt.Errorf("retry failed step %d: %w", id, err)
	}
	return len(ids) == 1, nil
}

// retryFailedSQL makes the failed steps matching a condition on $1 pending
// at $2, and restores the steps their failure canceled (canceled_by).
const retryFailedSQL = `
	WITH retried AS (
		UPDATE steps SET status = 'pending', attempts = 0, run_at = $2, finished_at = NULL, updated_at = $2
		WHERE status = 'failed' AND %s
		RETURNING id
	), restored AS (
		UPDATE steps s SET status = 'waiting', canceled_by = NULL, finished_at = NULL, last_error = NULL, updated_at = $2
		FROM retried r WHERE s.canceled_by = r.id AND s.status = 'canceled'
	)
	SELECT id FROM retried`

func (q *Queries) retryFailed(ctx context.Context, cond string, arg any, now time.Time) ([]int64, error) {
	rows, err := q.db.Query(ctx, fmt.Sprintf(retryFailedSQL, cond), arg, now)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		return ids, q.NotifySteps(ctx)
	}
	return ids, nil
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
// of attempts (restoring the steps their failures canceled) and returns their
// ids.
func (q *Queries) RetryAllFailedSteps(ctx context.Context, now time.Time) ([]int64, error) {
	ids, err := q.retryFailed(ctx, `$1`, true, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("retry failed steps: %w", err)
	}
	return ids, nil
}
