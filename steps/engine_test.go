package steps_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// purchases inserts n minimal purchases and returns their ids.
func purchases(t testing.TB, db *store.DB, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	_, err := db.Pool.Exec(context.Background(), `
		INSERT INTO purchases (id, product_key, stripe_session_id, currency, created_at, updated_at)
		SELECT id, 'pro', 'cs_' || id, 'usd', $2, $2 FROM unnest($1::uuid[]) AS id`, ids, t0)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func newEngine(t testing.TB, db *store.DB, clk clock.Clock, cfg steps.Config) *steps.Engine {
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = 10 * time.Second
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = time.Hour
	}
	return steps.New(db, clk, testLogger(t), cfg, nil)
}

func stepByName(t testing.TB, db *store.DB, purchaseID, pipeline, name string) store.Step {
	t.Helper()
	all, err := db.PurchaseSteps(context.Background(), purchaseID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Pipeline == pipeline && s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %s/%s for purchase %s", pipeline, name, purchaseID)
	return store.Step{}
}

func TestEightWorkersRunTenThousandStepsExactlyOnceInOrder(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	const nPurchases, perPipeline = 1000, 10
	ids := purchases(t, db, nPurchases)

	var mu sync.Mutex
	ran := map[string][]int{} // purchase → step numbers in the order they ran
	var total atomic.Int64
	eng := newEngine(t, db, clock.Real{}, steps.Config{Workers: 8, PollInterval: 50 * time.Millisecond})
	var defs []steps.Step
	for i := range perPipeline {
		name := fmt.Sprintf("s%d", i)
		defs = append(defs, steps.Step{Name: name, Args: map[string]int{"n": i}})
		eng.Register(name, func(ctx context.Context, job *steps.Job) (any, error) {
			var args struct{ N int }
			if err := job.DecodeArgs(&args); err != nil {
				return nil, err
			}
			mu.Lock()
			ran[job.PurchaseID] = append(ran[job.PurchaseID], args.N)
			mu.Unlock()
			total.Add(1)
			return nil, nil
		})
	}
	for _, id := range ids {
		if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "purchase",
			Steps: steps.Chain(append([]steps.Step(nil), defs...)...)}); err != nil {
			t.Fatal(err)
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- eng.Run(runCtx) }()
	deadline := time.Now().Add(2 * time.Minute)
	for total.Load() < nPurchases*perPipeline && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling for an outcome with a deadline, not synchronising
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if got := total.Load(); got != nPurchases*perPipeline {
		t.Fatalf("ran %d steps, want %d", got, nPurchases*perPipeline)
	}
	for _, id := range ids {
		seq := ran[id]
		if len(seq) != perPipeline {
			t.Fatalf("purchase %s ran %d steps, want %d: %v", id, len(seq), perPipeline, seq)
		}
		for i, n := range seq {
			if n != i {
				t.Fatalf("purchase %s ran steps in order %v", id, seq)
			}
		}
	}
	var notDone int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM steps WHERE status <> 'done' OR attempts <> 1`).Scan(&notDone); err != nil {
		t.Fatal(err)
	}
	if notDone != 0 {
		t.Errorf("%d steps not done exactly once", notDone)
	}
}

func TestLapsedLeaseIsClaimedAgain(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	id := purchases(t, db, 1)[0]
	var runs atomic.Int32
	const lease = 300 * time.Millisecond
	survivor := newEngine(t, db, clk, steps.Config{Lease: lease, Owner: "survivor"})
	survivor.Register("grant", func(ctx context.Context, job *steps.Job) (any, error) {
		runs.Add(1)
		return map[string]int{"attempt": job.Attempt}, nil
	})
	if _, err := survivor.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "purchase",
		Steps: []steps.Step{{Name: "grant"}}}); err != nil {
		t.Fatal(err)
	}
	// A worker claims the step and dies without releasing it.
	claimed, err := db.ClaimSteps(ctx, "doomed", clk.Now(), lease, 10)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	if n, _ := survivor.RunDue(ctx); n != 0 {
		t.Fatalf("ran %d steps while the lease was held", n)
	}
	// Leases lapse by the database's clock, whatever the process's says.
	deadline := time.Now().Add(30 * time.Second)
	for runs.Load() == 0 && time.Now().Before(deadline) {
		if _, err := survivor.RunDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s := stepByName(t, db, id, "purchase", "grant")
	if s.Status != store.StepDone || s.Attempts != 2 || runs.Load() != 1 {
		t.Fatalf("step = %s attempts %d, handler runs %d; want done, 2, 1", s.Status, s.Attempts, runs.Load())
	}
	// The dead worker coming back cannot overwrite the outcome.
	stale := store.Completion{Claim: claimed[0].Claim(), Result: json.RawMessage(`{}`)}
	if ok, err := db.CompleteStep(ctx, stale, clk.Now()); err != nil || ok {
		t.Fatalf("stale claim completed the step: %v %v", ok, err)
	}
}

func TestBackoffSchedule(t *testing.T) {
	t.Parallel()
	eng := steps.New(nil, clock.NewFake(t0), slog.Default(), steps.Config{BackoffBase: 10 * time.Second,
		BackoffMax: 5 * time.Minute, Jitter: 0.2}, nil)
	for attempt, base := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second,
		5: 160 * time.Second, 6: 5 * time.Minute, 20: 5 * time.Minute} {
		for range 50 {
			d := eng.Backoff(attempt)
			lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
			if d < lo || d > hi {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", attempt, d, lo, hi)
			}
		}
	}
}

func TestRetryOutcomes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{MaxAttempts: 3, BackoffBase: 10 * time.Second, Jitter: 0.2})
	eng.Register("flaky", func(ctx context.Context, job *steps.Job) (any, error) {
		return nil, errors.New("upstream 502")
	})
	eng.Register("limited", func(ctx context.Context, job *steps.Job) (any, error) {
		if job.Attempt == 1 {
			return nil, steps.RetryAfter(90*time.Second, errors.New("429 too many requests"))
		}
		return "ok", nil
	})
	eng.Register("doomed", func(ctx context.Context, job *steps.Job) (any, error) {
		return nil, steps.Permanent(errors.New("unknown GitHub user"))
	})
	alerts := make(chan steps.AlertArgs, 10)
	eng.Register(steps.AlertStep, func(ctx context.Context, job *steps.Job) (any, error) {
		var a steps.AlertArgs
		if err := job.DecodeArgs(&a); err != nil {
			return nil, err
		}
		alerts <- a
		return nil, nil
	})
	ids := purchases(t, db, 3)
	for i, name := range []string{"flaky", "limited", "doomed"} {
		if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: ids[i], Name: "p",
			Steps: []steps.Step{{Name: name}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}

	flaky := stepByName(t, db, ids[0], "p", "flaky")
	if wait := flaky.RunAt.Sub(t0); flaky.Status != store.StepPending || wait < 8*time.Second || wait > 12*time.Second {
		t.Errorf("flaky after attempt 1: %s, next in %s; want pending in 10s±20%%", flaky.Status, wait)
	}
	if flaky.LastError == nil || *flaky.LastError != "upstream 502" {
		t.Errorf("flaky last error = %v", flaky.LastError)
	}
	limited := stepByName(t, db, ids[1], "p", "limited")
	if limited.Status != store.StepPending || !limited.RunAt.Equal(t0.Add(90*time.Second)) {
		t.Errorf("limited: %s at %s; want pending at +90s", limited.Status, limited.RunAt)
	}
	doomed := stepByName(t, db, ids[2], "p", "doomed")
	if doomed.Status != store.StepFailed || doomed.Attempts != 1 {
		t.Errorf("permanent: %s after %d attempts; want failed after 1", doomed.Status, doomed.Attempts)
	}
	if a := <-alerts; a.Step != "doomed" || a.PurchaseID != ids[2] || a.LastError != "permanent: unknown GitHub user" {
		t.Errorf("alert = %+v", a)
	}

	// Attempts 2 and 3 of flaky; limited succeeds on its second attempt.
	clk.Advance(15 * time.Second)
	eng.RunDue(ctx)
	clk.Advance(100 * time.Second)
	eng.RunDue(ctx)
	flaky = stepByName(t, db, ids[0], "p", "flaky")
	if flaky.Status != store.StepFailed || flaky.Attempts != 3 {
		t.Errorf("flaky after max attempts: %s after %d; want failed after 3", flaky.Status, flaky.Attempts)
	}
	if a := <-alerts; a.Step != "flaky" || a.Attempts != 3 {
		t.Errorf("alert = %+v", a)
	}
	if s := stepByName(t, db, ids[1], "p", "limited"); s.Status != store.StepDone || string(s.Result) != `"ok"` {
		t.Errorf("limited = %s %s", s.Status, s.Result)
	}
	select {
	case a := <-alerts:
		t.Errorf("unexpected alert %+v", a)
	default:
	}
}

func TestFutureStepsRunOnlyWhenDueAndCancelByTag(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{})
	var mu sync.Mutex
	var sent []string
	for _, name := range []string{"confirm", "day7", "day14", "day30"} {
		eng.Register(name, func(ctx context.Context, job *steps.Job) (any, error) {
			mu.Lock()
			sent = append(sent, job.Name)
			mu.Unlock()
			return nil, nil
		})
	}
	id := purchases(t, db, 1)[0]
	day := 24 * time.Hour
	p := steps.Pipeline{PurchaseID: id, Name: "purchase", Anchor: t0, Steps: []steps.Step{
		{Name: "confirm"},
		{Name: "day7", Delay: 7 * day, Tags: []string{"followup"}},
		{Name: "day14", Delay: 14 * day, Tags: []string{"followup"}},
		{Name: "day30", Delay: 30 * day, Tags: []string{"followup"}},
	}}
	if n, err := eng.Schedule(ctx, db.Queries, p); err != nil || n != 4 {
		t.Fatalf("schedule: %d %v", n, err)
	}
	if n, err := eng.Schedule(ctx, db.Queries, p); err != nil || n != 0 {
		t.Fatalf("second schedule inserted %d steps (%v); want 0", n, err)
	}
	check := func(want ...string) {
		t.Helper()
		if _, err := eng.RunDue(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(sent) != fmt.Sprint(want) {
			t.Fatalf("sent %v, want %v", sent, want)
		}
	}
	check("confirm")
	clk.Set(t0.Add(7*day - time.Second))
	check("confirm")
	clk.Set(t0.Add(7 * day))
	check("confirm", "day7")
	clk.Set(t0.Add(10 * day))
	if n, err := eng.Cancel(ctx, db.Queries, id, "followup"); err != nil || n != 2 {
		t.Fatalf("cancel = %d, %v; want 2", n, err)
	}
	clk.Set(t0.Add(31 * day))
	check("confirm", "day7")
	if s := stepByName(t, db, id, "purchase", "day30"); s.Status != store.StepCanceled {
		t.Errorf("day30 = %s, want canceled", s.Status)
	}
	if s := stepByName(t, db, id, "purchase", "day7"); s.Status != store.StepDone {
		t.Errorf("day7 = %s, want done (cancel touches only steps not yet run)", s.Status)
	}
}

func TestResultsOnCommitAndIdempotencyKeys(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{})
	id := purchases(t, db, 1)[0]
	keys := map[string]string{}
	eng.Register("grant", func(ctx context.Context, job *steps.Job) (any, error) {
		keys["grant"+fmt.Sprint(job.Attempt)] = job.IdempotencyKey
		if job.Attempt == 1 {
			return nil, errors.New("timeout")
		}
		job.OnCommit(func(ctx context.Context, q *store.Queries) error {
			_, err := db.Pool.Exec(ctx, `SELECT 1`) // reachable, but the write below goes through q
			if err != nil {
				return err
			}
			ref := "inv_42"
			return q.SetAccess(ctx, job.PurchaseID, "granted", &ref, clk.Now())
		})
		return map[string]any{"invitation_id": 42}, nil
	})
	var got struct {
		InvitationID int `json:"invitation_id"`
	}
	eng.Register("access_email", func(ctx context.Context, job *steps.Job) (any, error) {
		return nil, job.Prior(ctx, "grant", &got)
	})
	eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "purchase",
		Steps: steps.Chain(steps.Step{Name: "grant"}, steps.Step{Name: "access_email"})})
	eng.RunDue(ctx)
	if s := stepByName(t, db, id, "purchase", "access_email"); s.Status != store.StepWaiting {
		t.Fatalf("access_email = %s while grant is retrying; want waiting", s.Status)
	}
	clk.Advance(time.Minute)
	eng.RunDue(ctx)
	if got.InvitationID != 42 {
		t.Errorf("later step saw result %+v", got)
	}
	if keys["grant1"] == "" || keys["grant1"] != keys["grant2"] {
		t.Errorf("idempotency keys across attempts: %q vs %q", keys["grant1"], keys["grant2"])
	}
	var state, ref string
	db.Pool.QueryRow(ctx, `SELECT access_state, access_ref FROM purchases WHERE id = $1`, id).Scan(&state, &ref)
	if state != "granted" || ref != "inv_42" {
		t.Errorf("OnCommit write: %s %s", state, ref)
	}
}

func TestNotifyWakesIdleWorkers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	eng := newEngine(t, db, clock.Real{}, steps.Config{PollInterval: time.Hour})
	ran := make(chan struct{}, 1)
	eng.Register("ping", func(ctx context.Context, job *steps.Job) (any, error) { ran <- struct{}{}; return nil, nil })
	done := make(chan error)
	go func() { done <- eng.Run(ctx) }()
	// Schedule from a different pool, as another replica would; only
	// LISTEN/NOTIFY can wake the engine before its hour-long poll.
	other := pgtest.Open(t, db.Pool.Config().ConnString())
	deadline := time.After(30 * time.Second)
	for i := 0; ; i++ {
		// Re-schedule until the listener is up: the first notify may
		// precede LISTEN.
		eng.Schedule(ctx, other.Queries, steps.Pipeline{Name: fmt.Sprintf("global-%d", i), Steps: []steps.Step{{Name: "ping"}}})
		select {
		case <-ran:
			stop()
			<-done
			return
		case <-deadline:
			t.Fatal("idle engine was not woken by a notification")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestShutdownHandsBackUnfinishedSteps(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, stop := context.WithCancel(context.Background())
	eng := newEngine(t, db, clock.Real{}, steps.Config{PollInterval: 10 * time.Millisecond, ShutdownGrace: 100 * time.Millisecond})
	started := make(chan struct{})
	eng.Register("slow", func(ctx context.Context, job *steps.Job) (any, error) {
		close(started)
		<-ctx.Done() // only the end of the grace period cancels it
		return nil, ctx.Err()
	})
	id := purchases(t, db, 1)[0]
	eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "p", Steps: []steps.Step{{Name: "slow"}}})
	done := make(chan error)
	go func() { done <- eng.Run(ctx) }()
	<-started
	stop()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the grace period")
	}
	s := stepByName(t, db, id, "p", "slow")
	if s.Status != store.StepPending || s.Attempts != 0 || s.LeaseOwner != nil {
		t.Errorf("after shutdown: %s, %d attempts, owner %v; want pending, 0, none", s.Status, s.Attempts, s.LeaseOwner)
	}
}
