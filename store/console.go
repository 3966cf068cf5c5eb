// The operator console's queries: its sessions, the audit of operator
// actions, the overview's counts in one round trip, keyset-paginated
// searches over purchases and steps, and the one step action the engine
// has no statement for (canceling a step that has not run). Retrying goes
// through RetryFailedStep, the statement the CLI uses.
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// SessionSource is how an operator signed in. The console_sessions table's
// CHECK lists the same values.
type SessionSource string

// Session sources.
const (
	SourcePassword SessionSource = "password" // an operator listed in config with a password hash
	SourceJWT      SessionSource = "jwt"      // a token from the users' JWKS with the operator role
)

// SessionSources lists every SessionSource.
var SessionSources = []SessionSource{SourcePassword, SourceJWT}

// ConsoleSession is one signed-in browser. TokenHash is the SHA-256 (hex)
// of the cookie's token; the token itself is never stored.
type ConsoleSession struct {
	TokenHash string
	Operator  string
	Source    SessionSource
	CSRFToken string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CreateConsoleSession records a new session.
func (q *Queries) CreateConsoleSession(ctx context.Context, s ConsoleSession) error {
	_, err := q.db.Exec(ctx, `INSERT INTO console_sessions (token_hash, operator, source, csrf_token, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, s.TokenHash, s.Operator, s.Source, s.CSRFToken, s.CreatedAt.UTC(), s.ExpiresAt.UTC())
	if err != nil {
		return fmt.Errorf("create console session: %w", err)
	}
	return nil
}

// ConsoleSessionByHash returns the session whose token hashes to hash,
// unless it has expired at now (ErrNotFound either way).
func (q *Queries) ConsoleSessionByHash(ctx context.Context, hash string, now time.Time) (ConsoleSession, error) {
	var s ConsoleSession
	err := q.db.QueryRow(ctx, `SELECT token_hash, operator, source, csrf_token, created_at, expires_at
		FROM console_sessions WHERE token_hash = $1 AND expires_at > $2`, hash, now.UTC()).
		Scan(&s.TokenHash, &s.Operator, &s.Source, &s.CSRFToken, &s.CreatedAt, &s.ExpiresAt)
	if err != nil {
		return s, notFound(err)
	}
	return s, nil
}

// DeleteConsoleSession ends a session (logout).
func (q *Queries) DeleteConsoleSession(ctx context.Context, hash string) error {
	if _, err := q.db.Exec(ctx, `DELETE FROM console_sessions WHERE token_hash = $1`, hash); err != nil {
		return fmt.Errorf("delete console session: %w", err)
	}
	return nil
}

// DeleteExpiredConsoleSessions forgets the sessions expired at now and
// returns how many there were.
func (q *Queries) DeleteExpiredConsoleSessions(ctx context.Context, now time.Time) (int, error) {
	tag, err := q.db.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at <= $1`, now.UTC())
	if err != nil {
		return 0, fmt.Errorf("delete expired console sessions: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// AuditEntry is one operator action: who did what to which object, when,
// and the object before and after (JSON snapshots, null when there was
// none).
type AuditEntry struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	Operator   string          `json:"operator"`
	Action     string          `json:"action"`
	ObjectKind string          `json:"object_kind"`
	ObjectID   string          `json:"object_id"`
	PurchaseID *string         `json:"purchase_id,omitempty"`
	Before     json.RawMessage `json:"before,omitempty"`
	After      json.RawMessage `json:"after,omitempty"`
	Note       string          `json:"note,omitempty"`
}

const auditColumns = `id, at, operator, action, object_kind, object_id, purchase_id, before, after, note`

func scanAudit(row pgx.CollectableRow) (AuditEntry, error) {
	var a AuditEntry
	err := row.Scan(&a.ID, &a.At, &a.Operator, &a.Action, &a.ObjectKind, &a.ObjectID, &a.PurchaseID, &a.Before,
		&a.After, &a.Note)
	return a, err
}

func (q *Queries) audits(ctx context.Context, sql string, args ...any) ([]AuditEntry, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanAudit)
}

// InsertAudit records an operator action and returns it with its id.
func (q *Queries) InsertAudit(ctx context.Context, a AuditEntry) (AuditEntry, error) {
	rows, err := q.db.Query(ctx, `INSERT INTO operator_audit (at, operator, action, object_kind, object_id, purchase_id,
			before, after, note)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+auditColumns,
		a.At.UTC(), a.Operator, a.Action, a.ObjectKind, a.ObjectID, a.PurchaseID, nullJSON(a.Before), nullJSON(a.After),
		a.Note)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("insert audit: %w", err)
	}
	out, err := pgx.CollectExactlyOneRow(rows, scanAudit)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("insert audit: %w", err)
	}
	return out, nil
}

// nullJSON stores an empty snapshot as SQL NULL.
func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// PurchaseAudit returns the newest limit actions on a purchase or its steps.
func (q *Queries) PurchaseAudit(ctx context.Context, purchaseID string, limit int) ([]AuditEntry, error) {
	as, err := q.audits(ctx, `SELECT `+auditColumns+` FROM operator_audit WHERE purchase_id = $1
		ORDER BY id DESC LIMIT $2`, purchaseID, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit of %s: %w", purchaseID, err)
	}
	return as, nil
}

// RecentAudit returns the newest limit operator actions.
func (q *Queries) RecentAudit(ctx context.Context, limit int) ([]AuditEntry, error) {
	as, err := q.audits(ctx, `SELECT `+auditColumns+` FROM operator_audit ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return as, nil
}

// PassSummary is what one reconcile pass did, as the console lists it.
type PassSummary struct {
	ID        int64
	Kind      string
	StartedAt time.Time
	Duration  time.Duration
	Seen      int
	Changes   int
	// Healed counts the changes no webhook had announced.
	Healed  int
	Errors  int
	DryRun  bool
	Summary string
}

// RecordReconcilePass records the summary of a finished pass.
func (q *Queries) RecordReconcilePass(ctx context.Context, p PassSummary) error {
	_, err := q.db.Exec(ctx, `INSERT INTO reconcile_passes (kind, started_at, duration_us, seen, changes, healed, errors,
			dry_run, summary)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		p.Kind, p.StartedAt.UTC(), p.Duration.Microseconds(), p.Seen, p.Changes, p.Healed, p.Errors, p.DryRun, p.Summary)
	if err != nil {
		return fmt.Errorf("record reconcile pass: %w", err)
	}
	return nil
}

const passColumns = `id, kind, started_at, duration_us, seen, changes, healed, errors, dry_run, summary`

func scanPass(row pgx.CollectableRow) (PassSummary, error) {
	var p PassSummary
	var us int64
	err := row.Scan(&p.ID, &p.Kind, &p.StartedAt, &us, &p.Seen, &p.Changes, &p.Healed, &p.Errors, &p.DryRun, &p.Summary)
	p.Duration = time.Duration(us) * time.Microsecond
	return p, err
}

// RecentReconcilePasses returns the newest limit pass summaries.
func (q *Queries) RecentReconcilePasses(ctx context.Context, limit int) ([]PassSummary, error) {
	rows, err := q.db.Query(ctx, `SELECT `+passColumns+` FROM reconcile_passes ORDER BY started_at DESC, id DESC
		LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list reconcile passes: %w", err)
	}
	ps, err := pgx.CollectRows(rows, scanPass)
	if err != nil {
		return nil, fmt.Errorf("list reconcile passes: %w", err)
	}
	return ps, nil
}

// StepCounts counts unfinished and failed steps. Pending steps scheduled
// for later (follow-ups, days ahead) are not counted: they pile up with
// every purchase and say nothing about health.
type StepCounts struct {
	Waiting int64
	// Due are pending steps whose run_at has come.
	Due             int64
	Running, Failed int64
	// StuckRunning are running past their lease; StuckPending are pending
	// since before the stuck threshold.
	StuckRunning, StuckPending int64
}

// Overview is everything the console's front page shows, read in one
// round trip.
type Overview struct {
	Purchases     map[PurchaseStatus]int64
	Subscriptions map[SubscriptionStatus]int64
	Orders        map[OrderStatus]int64
	Steps         StepCounts
	Passes        []PassSummary
	// Failing are the objects the reconciler keeps failing on, most
	// failures first.
	Failing []ReconcileError
	// Alerts are the newest operator_alert steps.
	Alerts []Step
	Audit  []AuditEntry
}

// The overview's purchase counts; a test checks with EXPLAIN that each is
// an index-only scan.
const (
	countCompletedSQL = `SELECT count(*) FROM purchases WHERE status = 'completed'`
	countOthersSQL    = `SELECT status, count(*) FROM purchases WHERE status <> 'completed' GROUP BY status`
)

// ConsoleOverview reads the overview at now; a pending step due before
// stuckBefore counts as stuck. Each list holds at most limit rows. Every
// count is answered from an index, the step counts from partial ones, so
// their cost follows the number of unfinished steps, not the size of the
// table.
func (q *Queries) ConsoleOverview(ctx context.Context, now, stuckBefore time.Time, limit int) (Overview, error) {
	o := Overview{Purchases: map[PurchaseStatus]int64{}, Subscriptions: map[SubscriptionStatus]int64{},
		Orders: map[OrderStatus]int64{}}
	b := &pgx.Batch{}
	// Each count is an index-only scan of a partial index: the completed
	// (most purchases) from a deduplicated one, the others from theirs.
	var completed int64
	b.Queue(countCompletedSQL).QueryRow(func(row pgx.Row) error {
		return row.Scan(&completed)
	})
	b.Queue(countOthersSQL).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var s PurchaseStatus
			var n int64
			if err := rows.Scan(&s, &n); err != nil {
				return err
			}
			o.Purchases[s] = n
		}
		return rows.Err()
	})
	b.Queue(countSubscriptionsSQL).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var s SubscriptionStatus
			var n int64
			if err := rows.Scan(&s, &n); err != nil {
				return err
			}
			o.Subscriptions[s] = n
		}
		return rows.Err()
	})
	b.Queue(countOrdersSQL).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var s OrderStatus
			var n int64
			if err := rows.Scan(&s, &n); err != nil {
				return err
			}
			o.Orders[s] = n
		}
		return rows.Err()
	})
	b.Queue(`SELECT
			(SELECT count(*) FROM steps WHERE status = 'waiting'),
			(SELECT count(*) FROM steps WHERE status = 'pending' AND run_at <= $1),
			(SELECT count(*) FROM steps WHERE status = 'running'),
			(SELECT count(*) FROM steps WHERE status = 'failed'),
			(SELECT count(*) FROM steps WHERE status = 'running' AND lease_expires_at < $1),
			(SELECT count(*) FROM steps WHERE status = 'pending' AND run_at < $2)`, now.UTC(), stuckBefore.UTC()).
		QueryRow(func(row pgx.Row) error {
			s := &o.Steps
			return row.Scan(&s.Waiting, &s.Due, &s.Running, &s.Failed, &s.StuckRunning, &s.StuckPending)
		})
	b.Queue(`SELECT `+passColumns+` FROM reconcile_passes ORDER BY started_at DESC, id DESC LIMIT $1`, limit).
		Query(func(rows pgx.Rows) (err error) {
			o.Passes, err = pgx.CollectRows(rows, scanPass)
			return err
		})
	b.Queue(`SELECT kind, object_id, error, attempts, first_seen, last_seen FROM reconcile_errors
		ORDER BY attempts DESC, last_seen DESC LIMIT $1`, limit).Query(func(rows pgx.Rows) (err error) {
		o.Failing, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (ReconcileError, error) {
			var e ReconcileError
			err := row.Scan(&e.Kind, &e.ObjectID, &e.Error, &e.Attempts, &e.FirstSeen, &e.LastSeen)
			return e, err
		})
		return err
	})
	b.Queue(`SELECT `+stepColumns+` FROM steps WHERE name = 'operator_alert' ORDER BY created_at DESC, id DESC
		LIMIT $1`, limit).Query(func(rows pgx.Rows) (err error) {
		o.Alerts, err = pgx.CollectRows(rows, scanStep)
		return err
	})
	b.Queue(`SELECT `+auditColumns+` FROM operator_audit ORDER BY id DESC LIMIT $1`, limit).
		Query(func(rows pgx.Rows) (err error) {
			o.Audit, err = pgx.CollectRows(rows, scanAudit)
			return err
		})
	if err := q.db.SendBatch(ctx, b).Close(); err != nil {
		return o, fmt.Errorf("read console overview: %w", err)
	}
	if completed > 0 {
		o.Purchases[PurchaseCompleted] = completed
	}
	return o, nil
}

// SearchField is what a purchase search matches on.
type SearchField string

// Search fields. SearchAny lists every purchase.
const (
	SearchAny           SearchField = ""
	SearchEmail         SearchField = "email"
	SearchUserID        SearchField = "user_id"
	SearchPurchaseID    SearchField = "purchase_id"
	SearchSession       SearchField = "session"
	SearchPaymentIntent SearchField = "payment_intent"
	SearchCharge        SearchField = "charge"
	SearchCustomer      SearchField = "customer"
)

// searchConditions is the WHERE condition of each field; $1 is the value.
var searchConditions = map[SearchField]string{
	SearchEmail:         `lower(email) = lower($1) AND email IS NOT NULL`,
	SearchUserID:        `user_id = $1 AND user_id IS NOT NULL`,
	SearchPurchaseID:    `id = $1::uuid`,
	SearchSession:       `stripe_session_id = $1`,
	SearchPaymentIntent: `stripe_payment_intent_id = $1 AND stripe_payment_intent_id IS NOT NULL`,
	SearchCharge:        `stripe_charge_id = $1 AND stripe_charge_id IS NOT NULL`,
	SearchCustomer:      `stripe_customer_id = $1 AND stripe_customer_id IS NOT NULL`,
}

// PurchaseCursor is where a page of purchases ends: the next page starts
// after it (newest first).
type PurchaseCursor struct {
	CreatedAt time.Time
	ID        string
}

// PurchaseSearch selects a page of purchases, newest first. The zero value
// lists every purchase. From and To bound created_at (From inclusive, To
// exclusive; zero for no bound).
type PurchaseSearch struct {
	Field    SearchField
	Value    string
	Status   PurchaseStatus // "" for any
	From, To time.Time
	After    *PurchaseCursor
	Limit    int
}

// SearchPurchases returns a page of purchases matching s, newest first,
// and whether more follow. Pages are by keyset (created_at, id), so a deep
// page costs what the first does.
func (q *Queries) SearchPurchases(ctx context.Context, s PurchaseSearch) ([]Purchase, bool, error) {
	sql, args, err := searchSQL(s)
	if err != nil {
		return nil, false, err
	}
	ps, err := q.purchases(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("search purchases: %w", err)
	}
	more := len(ps) > s.Limit
	if more {
		ps = ps[:s.Limit]
	}
	return ps, more, nil
}

// searchSQL is SearchPurchases' statement and its arguments; a test checks
// with EXPLAIN that each kind of search walks an index.
func searchSQL(s PurchaseSearch) (string, []any, error) {
	if s.Limit <= 0 || s.Limit > 500 {
		return "", nil, fmt.Errorf("search purchases: limit %d out of 1..500", s.Limit)
	}
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if s.Field != SearchAny {
		cond, ok := searchConditions[s.Field]
		if !ok {
			return "", nil, fmt.Errorf("search purchases: unknown field %q", s.Field)
		}
		arg(s.Value) // $1
		conds = append(conds, cond)
	}
	if s.Status != "" {
		if !slices.Contains(PurchaseStatuses, s.Status) {
			return "", nil, fmt.Errorf("search purchases: unknown status %q", s.Status)
		}
		// A literal, not a parameter: the planner can then prove that
		// purchases_status_created_idx's predicate holds for it.
		conds = append(conds, "status = '"+string(s.Status)+"'")
	}
	if !s.From.IsZero() {
		conds = append(conds, "created_at >= "+arg(s.From.UTC()))
	}
	if !s.To.IsZero() {
		conds = append(conds, "created_at < "+arg(s.To.UTC()))
	}
	if s.After != nil {
		conds = append(conds, "(created_at, id) < ("+arg(s.After.CreatedAt.UTC())+", "+arg(s.After.ID)+"::uuid)")
	}
	sql := `SELECT ` + purchaseColumns + ` FROM purchases`
	if len(conds) > 0 {
		sql += ` WHERE ` + strings.Join(conds, " AND ")
	}
	// The limit is in the text, as in claimSQL: a generic plan with an
	// unknown LIMIT may sort every match instead of walking an index.
	return sql + ` ORDER BY created_at DESC, id DESC LIMIT ` + strconv.Itoa(s.Limit+1), args, nil
}

// PurchaseDisputes returns a purchase's disputes, oldest first.
func (q *Queries) PurchaseDisputes(ctx context.Context, purchaseID string) ([]Dispute, error) {
	rows, err := q.db.Query(ctx, `SELECT id, purchase_id, amount, currency, status, reason, created_at, updated_at
		FROM disputes WHERE purchase_id = $1 ORDER BY created_at, id`, purchaseID)
	if err != nil {
		return nil, fmt.Errorf("list disputes: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Dispute, error) {
		var d Dispute
		err := row.Scan(&d.ID, &d.PurchaseID, &d.Amount, &d.Currency, &d.Status, &d.Reason, &d.CreatedAt, &d.UpdatedAt)
		return d, err
	})
}

// StepCursor is where a page of steps ends.
type StepCursor struct {
	At time.Time
	ID int64
}

// FailedSteps returns a page of failed steps, most recently failed first,
// and whether more follow.
func (q *Queries) FailedSteps(ctx context.Context, after *StepCursor, limit int) ([]Step, bool, error) {
	sql := `SELECT ` + stepColumns + ` FROM steps WHERE status = 'failed'`
	args := []any{}
	if after != nil {
		sql += ` AND (updated_at, id) < ($1, $2)`
		args = append(args, after.At.UTC(), after.ID)
	}
	sql += ` ORDER BY updated_at DESC, id DESC LIMIT ` + strconv.Itoa(limit+1)
	steps, err := q.collectSteps(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list failed steps: %w", err)
	}
	more := len(steps) > limit
	if more {
		steps = steps[:limit]
	}
	return steps, more, nil
}

// StuckSteps returns a page of stuck steps, stuck longest first, and
// whether more follow: running steps whose lease lapsed before now (their
// worker is gone and the rescuer has not returned them yet), and pending
// steps due before pendingBefore (no worker is taking work). A step is
// ordered by when it got stuck: its lease's expiry, or its run_at.
func (q *Queries) StuckSteps(ctx context.Context, now, pendingBefore time.Time, after *StepCursor, limit int) ([]Step, bool, error) {
	afterAt, afterID := time.Time{}, int64(0)
	if after != nil {
		afterAt, afterID = after.At.UTC(), after.ID
	}
	n := strconv.Itoa(limit + 1)
	steps, err := q.collectSteps(ctx, `
		SELECT * FROM (
			(SELECT `+stepColumns+` FROM steps WHERE status = 'running' AND lease_expires_at < $1
				AND (lease_expires_at, id) > ($3, $4) ORDER BY lease_expires_at, id LIMIT `+n+`)
			UNION ALL
			(SELECT `+stepColumns+` FROM steps WHERE status = 'pending' AND run_at < $2
				AND (run_at, id) > ($3, $4) ORDER BY run_at, id LIMIT `+n+`)
		) stuck ORDER BY coalesce(lease_expires_at, run_at), id LIMIT `+n,
		now.UTC(), pendingBefore.UTC(), afterAt, afterID)
	if err != nil {
		return nil, false, fmt.Errorf("list stuck steps: %w", err)
	}
	more := len(steps) > limit
	if more {
		steps = steps[:limit]
	}
	return steps, more, nil
}

// CancelStep cancels step id if it has not run yet (waiting or pending),
// together with the steps of its pipeline that wait for it, directly or
// not: they could never run. It returns the ids it canceled, id first;
// none when the step was not waiting or pending.
func (q *Queries) CancelStep(ctx context.Context, id int64, now time.Time, reason string) ([]int64, error) {
	rows, err := q.db.Query(ctx, `
		WITH RECURSIVE target AS (
			SELECT id, subject_id, pipeline, name, 0 AS depth FROM steps
			WHERE id = $1 AND status IN ('waiting', 'pending')
			UNION
			SELECT s.id, s.subject_id, s.pipeline, s.name, t.depth + 1 FROM steps s JOIN target t
				ON s.status = 'waiting' AND s.pipeline = t.pipeline AND s.after_name = t.name
					AND (s.subject_id = t.subject_id OR (s.subject_id IS NULL AND t.subject_id IS NULL))
		)
		UPDATE steps SET status = 'canceled', updated_at = $2, finished_at = $2, last_error = $3
		FROM target WHERE steps.id = target.id AND steps.status IN ('waiting', 'pending')
		RETURNING steps.id, target.depth`, id, now.UTC(), reason)
	if err != nil {
		return nil, fmt.Errorf("cancel step %d: %w", id, err)
	}
	type canceled struct {
		id    int64
		depth int
	}
	cs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (canceled, error) {
		var c canceled
		err := row.Scan(&c.id, &c.depth)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("cancel step %d: %w", id, err)
	}
	ids := make([]int64, 0, len(cs))
	for _, c := range cs {
		if c.depth == 0 {
			ids = append([]int64{c.id}, ids...)
		} else {
			ids = append(ids, c.id)
		}
	}
	if len(ids) > 0 && ids[0] != id {
		return nil, fmt.Errorf("cancel step %d: canceled its dependents but not the step", id)
	}
	return ids, nil
}

// PeekRate reports what TakeRate would decide for key at now without
// counting an event: a caller that counts only failures (failed logins)
// checks first and takes after a failure.
func (q *Queries) PeekRate(ctx context.Context, key string, r Rate, now time.Time) (RateDecision, error) {
	if r.N < 1 || r.Per <= 0 {
		return RateDecision{}, fmt.Errorf("peek rate %s: invalid rate %d per %s", key, r.N, r.Per)
	}
	var tat time.Time
	err := q.db.QueryRow(ctx, `SELECT tat FROM rate_limits WHERE key = $1`, key).Scan(&tat)
	if err == pgx.ErrNoRows {
		return RateDecision{Allowed: true}, nil
	}
	if err != nil {
		return RateDecision{}, fmt.Errorf("peek rate %s: %w", key, err)
	}
	_, d := DecideRate(tat, now.UTC(), r)
	return d, nil
}

// AuditByIDs returns the audit entries with the given ids that operator
// recorded, oldest first: what the page after an action reports as done.
func (q *Queries) AuditByIDs(ctx context.Context, ids []int64, operator string) ([]AuditEntry, error) {
	as, err := q.audits(ctx, `SELECT `+auditColumns+` FROM operator_audit WHERE id = ANY($1) AND operator = $2
		ORDER BY id`, ids, operator)
	if err != nil {
		return nil, fmt.Errorf("look up audit entries: %w", err)
	}
	return as, nil
}
