package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

var consoleT0 = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

func TestSessionSourcesMatchTheCheck(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	var def string
	err := db.Pool.QueryRow(context.Background(), `SELECT pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'console_sessions'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%source = ANY%'`).Scan(&def)
	if err != nil {
		t.Fatal(err)
	}
	var checked, declared []string
	for _, m := range regexp.MustCompile(`'([a-z_]+)'::text`).FindAllStringSubmatch(def, -1) {
		checked = append(checked, m[1])
	}
	for _, s := range store.SessionSources {
		declared = append(declared, string(s))
	}
	slices.Sort(checked)
	slices.Sort(declared)
	if !slices.Equal(checked, declared) {
		t.Errorf("console_sessions.source: CHECK allows %v, Go declares %v", checked, declared)
	}
}

func TestConsoleSessionsExpireAndEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	s := store.ConsoleSession{TokenHash: "h1", Operator: "alice", Source: store.SourcePassword, CSRFToken: "c1",
		CreatedAt: consoleT0, ExpiresAt: consoleT0.Add(time.Hour)}
	if err := db.CreateConsoleSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err := db.ConsoleSessionByHash(ctx, "h1", consoleT0.Add(time.Minute))
	if err != nil || got.Operator != "alice" || got.CSRFToken != "c1" || got.Source != store.SourcePassword {
		t.Fatalf("session = %+v, %v", got, err)
	}
	if _, err := db.ConsoleSessionByHash(ctx, "h1", consoleT0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired session was found: %v", err)
	}
	if _, err := db.ConsoleSessionByHash(ctx, "nope", consoleT0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown session: %v", err)
	}
	if n, err := db.DeleteExpiredConsoleSessions(ctx, consoleT0.Add(2*time.Hour)); err != nil || n != 1 {
		t.Errorf("expired sessions deleted = %d, %v; want 1", n, err)
	}
	s.TokenHash = "h2"
	if err := db.CreateConsoleSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteConsoleSession(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ConsoleSessionByHash(ctx, "h2", consoleT0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a session was found after logout: %v", err)
	}
}

func TestAuditIsListedByPurchaseNewestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	pid := paidPurchase(t, db, store.PurchaseCompleted)
	for i, action := range []string{"retry_step", "cancel_step"} {
		a, err := db.InsertAudit(ctx, store.AuditEntry{At: consoleT0.Add(time.Duration(i) * time.Minute), Operator: "alice",
			Action: action, ObjectKind: "step", ObjectID: "7", PurchaseID: &pid,
			Before: json.RawMessage(`{"status":"failed"}`), After: json.RawMessage(`{"status":"pending"}`)})
		if err != nil || a.ID == 0 {
			t.Fatalf("insert audit: %+v, %v", a, err)
		}
	}
	if _, err := db.InsertAudit(ctx, store.AuditEntry{At: consoleT0, Operator: "bob", Action: "login",
		ObjectKind: "operator", ObjectID: "bob"}); err != nil {
		t.Fatal(err)
	}
	as, err := db.PurchaseAudit(ctx, pid, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[0].Action != "cancel_step" || as[1].Action != "retry_step" {
		t.Fatalf("purchase audit = %+v", as)
	}
	if string(as[1].Before) != `{"status": "failed"}` || as[0].Operator != "alice" {
		t.Errorf("audit row = %+v (before %s)", as[1], as[1].Before)
	}
	all, err := db.RecentAudit(ctx, 10)
	if err != nil || len(all) != 3 || all[0].Action != "login" || all[0].Before != nil {
		t.Errorf("recent audit = %+v, %v", all, err)
	}
}

// insertStep records one step of a purchase's pipeline in the given state.
func insertStep(t *testing.T, db *store.DB, purchaseID, pipeline, name, after string, status store.StepStatus,
	runAt time.Time) store.Step {
	t.Helper()
	ctx := context.Background()
	if _, err := db.InsertSteps(ctx, consoleT0, []store.NewStep{{PurchaseID: purchaseID, Pipeline: pipeline, Name: name,
		After: after, Blocking: true, RunAt: runAt, MaxAttempts: 3}}); err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := db.Pool.QueryRow(ctx, `SELECT id FROM steps WHERE subject_id = $1 AND pipeline = $2 AND name = $3`,
		purchaseID, pipeline, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	switch status {
	case store.StepWaiting, store.StepPending:
	case store.StepRunning:
		_, err := db.Pool.Exec(ctx, `UPDATE steps SET status = 'running', attempts = 1, lease_owner = 'w',
			lease_expires_at = $2, claim_token = nextval('steps_claim_seq') WHERE id = $1`, id, runAt.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
	default:
		_, err := db.Pool.Exec(ctx, `UPDATE steps SET status = $2, attempts = 1, finished_at = $3, updated_at = $3,
			last_error = CASE WHEN $2 = 'failed' THEN 'boom' END WHERE id = $1`, id, status, runAt)
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := db.GetStep(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCancelStepCancelsWhatWaitsForIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	pid := paidPurchase(t, db, store.PurchaseCompleted)
	grant := insertStep(t, db, pid, "purchase", "grant_access", "", store.StepPending, consoleT0)
	email := insertStep(t, db, pid, "purchase", "access_email", "grant_access", store.StepWaiting, consoleT0)
	next := insertStep(t, db, pid, "purchase", "later", "access_email", store.StepWaiting, consoleT0)
	other := insertStep(t, db, pid, "other", "access_email", "grant_access", store.StepWaiting, consoleT0)
	done := insertStep(t, db, pid, "purchase", "purchase_confirmation", "", store.StepDone, consoleT0)

	ids, err := db.CancelStep(ctx, grant.ID, consoleT0.Add(time.Hour), "canceled by alice")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids[1:])
	want := []int64{grant.ID, min(email.ID, next.ID), max(email.ID, next.ID)}
	if !slices.Equal(ids, want) {
		t.Fatalf("canceled %v, want %v", ids, want)
	}
	for _, c := range []struct {
		id   int64
		want store.StepStatus
	}{{grant.ID, store.StepCanceled}, {email.ID, store.StepCanceled}, {next.ID, store.StepCanceled},
		{other.ID, store.StepWaiting}, {done.ID, store.StepDone}} {
		s, err := db.GetStep(ctx, c.id)
		if err != nil || s.Status != c.want {
			t.Errorf("step %d (%s/%s) is %s, want %s (%v)", c.id, s.Pipeline, s.Name, s.Status, c.want, err)
		}
		if c.want == store.StepCanceled && (s.FinishedAt == nil || s.LastError == nil || *s.LastError != "canceled by alice") {
			t.Errorf("canceled step %d: finished %v, last error %v", c.id, s.FinishedAt, s.LastError)
		}
	}
	// A step that ran (or is running) cannot be canceled.
	if ids, err := db.CancelStep(ctx, done.ID, consoleT0, "x"); err != nil || len(ids) != 0 {
		t.Errorf("canceling a done step: %v, %v", ids, err)
	}
}

func TestSearchPurchasesPagesByKeysetWithFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	// 25 purchases a minute apart, alternating two buyers and two statuses.
	var ids []string
	for i := range 25 {
		at := consoleT0.Add(time.Duration(i) * time.Minute)
		email := "Ada@Example.com"
		if i%2 == 1 {
			email = "bob@example.com"
		}
		status, completed := store.PurchaseCompleted, &at
		if i%3 == 0 {
			status, completed = store.PurchasePending, nil
		}
		user, cus, pi, ch := fmt.Sprintf("user-%d", i%2), fmt.Sprintf("cus_%d", i%2), fmt.Sprintf("pi_%d", i),
			fmt.Sprintf("ch_%d", i)
		p := store.Purchase{ID: uuid.NewString(), UserID: &user, Email: &email, ProductKey: "pro", Quantity: 1,
			Status: status, StripeSessionID: fmt.Sprintf("cs_%d", i), StripeCustomerID: &cus,
			StripePaymentIntentID: &pi, StripeChargeID: &ch, AmountTotal: 100, Currency: "usd",
			AccessState: store.AccessNone, CreatedAt: at, UpdatedAt: at, CompletedAt: completed}
		if _, err := db.InsertPurchase(ctx, p); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	all := func(s store.PurchaseSearch) []string {
		t.Helper()
		var out []string
		for pages := 0; ; pages++ {
			if pages > 30 {
				t.Fatal("pagination does not end")
			}
			ps, more, err := db.SearchPurchases(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				out = append(out, p.ID)
			}
			if !more {
				return out
			}
			last := ps[len(ps)-1]
			s.After = &store.PurchaseCursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
	}
	reversed := func(pick func(i int) bool) []string {
		var out []string
		for i := len(ids) - 1; i >= 0; i-- {
			if pick(i) {
				out = append(out, ids[i])
			}
		}
		return out
	}
	for _, c := range []struct {
		name string
		s    store.PurchaseSearch
		want []string
	}{
		{"everything", store.PurchaseSearch{Limit: 7}, reversed(func(int) bool { return true })},
		{"email, any case", store.PurchaseSearch{Field: store.SearchEmail, Value: "ada@EXAMPLE.com", Limit: 4},
			reversed(func(i int) bool { return i%2 == 0 })},
		{"email and status", store.PurchaseSearch{Field: store.SearchEmail, Value: "bob@example.com",
			Status: store.PurchasePending, Limit: 2}, reversed(func(i int) bool { return i%2 == 1 && i%3 == 0 })},
		{"status and dates", store.PurchaseSearch{Status: store.PurchaseCompleted, From: consoleT0.Add(5 * time.Minute),
			To: consoleT0.Add(15 * time.Minute), Limit: 3}, reversed(func(i int) bool { return i >= 5 && i < 15 && i%3 != 0 })},
		{"user id", store.PurchaseSearch{Field: store.SearchUserID, Value: "user-1", Limit: 5},
			reversed(func(i int) bool { return i%2 == 1 })},
		{"customer", store.PurchaseSearch{Field: store.SearchCustomer, Value: "cus_0", Limit: 50},
			reversed(func(i int) bool { return i%2 == 0 })},
		{"session", store.PurchaseSearch{Field: store.SearchSession, Value: "cs_4", Limit: 5}, []string{ids[4]}},
		{"payment intent", store.PurchaseSearch{Field: store.SearchPaymentIntent, Value: "pi_7", Limit: 5}, []string{ids[7]}},
		{"charge", store.PurchaseSearch{Field: store.SearchCharge, Value: "ch_9", Limit: 5}, []string{ids[9]}},
		{"purchase id", store.PurchaseSearch{Field: store.SearchPurchaseID, Value: ids[3], Limit: 5}, []string{ids[3]}},
		{"nothing", store.PurchaseSearch{Field: store.SearchEmail, Value: "eve@example.com", Limit: 5}, nil},
	} {
		if got := all(c.s); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %d purchases %v, want %d %v", c.name, len(got), got, len(c.want), c.want)
		}
	}
	if _, _, err := db.SearchPurchases(ctx, store.PurchaseSearch{Field: "nickname", Value: "x", Limit: 5}); err == nil {
		t.Error("an unknown search field was accepted")
	}
}

func TestConsoleOverviewCountsAndLists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	now := consoleT0.Add(3 * time.Hour)
	p1 := paidPurchase(t, db, store.PurchaseCompleted)
	paidPurchase(t, db, store.PurchaseCompleted)
	paidPurchase(t, db, store.PurchaseRefunded)
	insertStep(t, db, p1, "purchase", "a", "", store.StepPending, now.Add(-time.Minute)) // due
	insertStep(t, db, p1, "purchase", "b", "", store.StepPending, now.Add(-2*time.Hour)) // due and stuck
	insertStep(t, db, p1, "purchase", "c", "", store.StepPending, now.Add(time.Hour))    // scheduled
	insertStep(t, db, p1, "purchase", "d", "c", store.StepWaiting, now)
	insertStep(t, db, p1, "purchase", "e", "", store.StepRunning, now.Add(-time.Hour)) // lease lapsed
	insertStep(t, db, p1, "purchase", "f", "", store.StepRunning, now)                 // lease holds
	insertStep(t, db, p1, "purchase", "g", "", store.StepFailed, now)
	insertStep(t, db, p1, "alert:9", "operator_alert", "", store.StepDone, now)
	if err := db.RecordReconcilePass(ctx, store.PassSummary{Kind: "incremental", StartedAt: now, Duration: 1500 * time.Millisecond,
		Seen: 12, Changes: 2, Healed: 1, Summary: "seen 12"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RecordReconcileError(ctx, "session", "cs_bad", "boom", now, now); err != nil {
		t.Fatal(err)
	}

	o, err := db.ConsoleOverview(ctx, now, now.Add(-time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if o.Purchases[store.PurchaseCompleted] != 2 || o.Purchases[store.PurchaseRefunded] != 1 || len(o.Purchases) != 2 {
		t.Errorf("purchases by status = %v", o.Purchases)
	}
	want := store.StepCounts{Waiting: 1, Due: 2, Running: 2, Failed: 1, StuckRunning: 1, StuckPending: 1}
	if o.Steps != want {
		t.Errorf("step counts = %+v, want %+v", o.Steps, want)
	}
	if len(o.Passes) != 1 || o.Passes[0].Duration != 1500*time.Millisecond || o.Passes[0].Healed != 1 {
		t.Errorf("passes = %+v", o.Passes)
	}
	if len(o.Failing) != 1 || o.Failing[0].ObjectID != "cs_bad" {
		t.Errorf("failing = %+v", o.Failing)
	}
	if len(o.Alerts) != 1 || o.Alerts[0].Pipeline != "alert:9" {
		t.Errorf("alerts = %+v", o.Alerts)
	}

	stuck, more, err := db.StuckSteps(ctx, now, now.Add(-time.Hour), nil, 10)
	if err != nil || more {
		t.Fatal(err, more)
	}
	var names []string
	for _, s := range stuck {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "b,e" {
		t.Errorf("stuck steps = %v, want b (pending since 2h), then e (lease lapsed 59m ago)", names)
	}
	failed, _, err := db.FailedSteps(ctx, nil, 10)
	if err != nil || len(failed) != 1 || failed[0].Name != "g" {
		t.Errorf("failed steps = %+v, %v", failed, err)
	}
}

func TestPeekRateCountsNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	r := store.Rate{N: 2, Per: time.Minute}
	for range 5 {
		if d, err := db.PeekRate(ctx, "k", r, consoleT0); err != nil || !d.Allowed {
			t.Fatalf("peek = %+v, %v", d, err)
		}
	}
	for range 2 {
		if _, err := db.TakeRate(ctx, "k", r, consoleT0); err != nil {
			t.Fatal(err)
		}
	}
	d, err := db.PeekRate(ctx, "k", r, consoleT0)
	if err != nil || d.Allowed || d.RetryAfter != 30*time.Second {
		t.Errorf("peek after the burst = %+v, %v; want refused for 30s", d, err)
	}
}

// explain returns the plan of sql, as a large table would get it: the
// tables are empty, so sequential scans are made to look expensive.
func explain(t *testing.T, db *store.DB, sql string, args ...any) string {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// The console's counts and searches each walk an index, so the overview
// and a search stay fast however many purchases there are (make bench
// measures them with 100,000 purchases and 1,000,000 steps).
func TestConsoleQueriesUseTheirIndexes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	for sql, idx := range map[string]string{
		store.CountCompletedSQL: "purchases_completed_idx",
		store.CountOthersSQL:    "purchases_status_created_idx",
	} {
		if plan := explain(t, db, sql); !strings.Contains(plan, idx) {
			t.Errorf("%s does not use %s:\n%s", sql, idx, plan)
		}
	}
	after := &store.PurchaseCursor{CreatedAt: consoleT0, ID: uuid.NewString()}
	for _, c := range []struct {
		s   store.PurchaseSearch
		idx string
	}{
		{store.PurchaseSearch{Limit: 50, After: after}, "purchases_created_idx"},
		{store.PurchaseSearch{Status: store.PurchaseRefunded, Limit: 50, After: after}, "purchases_status_created_idx"},
		{store.PurchaseSearch{Status: store.PurchasePending, Limit: 50, From: consoleT0}, "purchases_status_created_idx"},
		{store.PurchaseSearch{Field: store.SearchEmail, Value: "a@b.c", Limit: 50}, "purchases_email_idx"},
		{store.PurchaseSearch{Field: store.SearchUserID, Value: "u", Limit: 50}, "purchases_user_idx"},
		{store.PurchaseSearch{Field: store.SearchCharge, Value: "ch_1", Limit: 50}, "purchases_charge_idx"},
		{store.PurchaseSearch{Field: store.SearchCustomer, Value: "cus_1", Limit: 50}, "purchases_customer_idx"},
		{store.PurchaseSearch{Field: store.SearchPaymentIntent, Value: "pi_1", Limit: 50}, "purchases_payment_intent_idx"},
		{store.PurchaseSearch{Field: store.SearchSession, Value: "cs_1", Limit: 50}, "purchases_stripe_session_id_key"},
	} {
		sql, args, err := store.SearchSQL(c.s)
		if err != nil {
			t.Fatal(err)
		}
		if plan := explain(t, db, sql, args...); !strings.Contains(plan, c.idx) {
			t.Errorf("search %+v does not use %s:\n%s", c.s, c.idx, plan)
		}
	}
}

// The benchmarks' synthetic load has every kind of row the overview shows.
func TestSyntheticLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	now := time.Now()
	if err := db.GenerateSyntheticLoad(ctx, store.SyntheticLoad{Purchases: 2000, Buyers: 100, StepsPerPurchase: 10,
		Now: now}); err != nil {
		t.Fatal(err)
	}
	o, err := db.ConsoleOverview(ctx, now, now.Add(-time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	var purchases int64
	for _, n := range o.Purchases {
		purchases += n
	}
	if purchases != 2000 || o.Purchases[store.PurchaseCompleted] != 1700 {
		t.Errorf("purchases = %v", o.Purchases)
	}
	s := o.Steps
	if s.Failed == 0 || s.Waiting == 0 || s.Running == 0 || s.StuckRunning == 0 || s.StuckRunning == s.Running ||
		s.StuckPending == 0 || len(o.Alerts) != 10 || len(o.Passes) != 10 || len(o.Failing) != 10 || len(o.Audit) != 10 {
		t.Errorf("overview = %+v", o)
	}
	ps, _, err := db.SearchPurchases(ctx, store.PurchaseSearch{Field: store.SearchEmail, Value: "buyer7@example.com", Limit: 50})
	if err != nil || len(ps) != 20 {
		t.Errorf("buyer7's purchases: %d, %v", len(ps), err)
	}
}
