package steps_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// TestFailedStepCancelsTheStepsWaitingOnIt: a step that fails for good
// cancels, in the same transaction, every step waiting on it directly or
// through another, saying why; steps that do not wait on it carry on.
// Retrying the failed step puts them back.
func TestFailedStepCancelsTheStepsWaitingOnIt(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{})
	var grantWorks atomic.Bool
	eng.Register("grant", func(ctx context.Context, job *steps.Job) (any, error) {
		if !grantWorks.Load() {
			return nil, steps.Permanent(errors.New("unknown GitHub user"))
		}
		return nil, nil
	})
	var ran atomic.Int32
	for _, name := range []string{"access_email", "welcome_call", "confirmation"} {
		eng.Register(name, func(ctx context.Context, job *steps.Job) (any, error) { ran.Add(1); return nil, nil })
	}
	eng.Register(steps.AlertStep, func(ctx context.Context, job *steps.Job) (any, error) { return nil, nil })
	id := purchases(t, db, 1)[0]
	if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "purchase", Steps: []steps.Step{
		{Name: "confirmation"},
		{Name: "grant"},
		{Name: "access_email", After: "grant"},
		{Name: "welcome_call", After: "access_email"},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	grant := stepByName(t, db, id, "purchase", "grant")
	if grant.Status != store.StepFailed {
		t.Fatalf("grant = %s, want failed", grant.Status)
	}
	want := "canceled: grant (step " + strconv.FormatInt(grant.ID, 10) + ") failed"
	for _, name := range []string{"access_email", "welcome_call"} {
		s := stepByName(t, db, id, "purchase", name)
		if s.Status != store.StepCanceled || s.LastError == nil || *s.LastError != want || s.FinishedAt == nil {
			t.Errorf("%s = %s (%v), want canceled: %q", name, s.Status, s.LastError, want)
		}
	}
	if s := stepByName(t, db, id, "purchase", "confirmation"); s.Status != store.StepDone {
		t.Errorf("confirmation = %s, want done", s.Status)
	}

	// The operator fixes the cause and retries the grant: what its failure
	// canceled waits on it again, and runs after it.
	grantWorks.Store(true)
	if ok, err := db.RetryFailedStep(ctx, grant.ID, clk.Now()); err != nil || !ok {
		t.Fatalf("retry failed step = %v, %v", ok, err)
	}
	if s := stepByName(t, db, id, "purchase", "welcome_call"); s.Status != store.StepWaiting || s.LastError != nil {
		t.Errorf("welcome_call after the retry = %s (%v), want waiting", s.Status, s.LastError)
	}
	ran.Store(0)
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"grant", "access_email", "welcome_call"} {
		if s := stepByName(t, db, id, "purchase", name); s.Status != store.StepDone {
			t.Errorf("%s after the retry = %s, want done", name, s.Status)
		}
	}
	if ran.Load() != 2 {
		t.Errorf("%d waiting steps ran after the retry, want 2", ran.Load())
	}
}

// TestRescuedIntoFailedCancelsTheStepsWaitingOnIt: a step whose worker died
// on its last attempt fails when its lease lapses, and takes the steps
// waiting on it with it.
func TestRescuedIntoFailedCancelsTheStepsWaitingOnIt(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{})
	eng.Register(steps.AlertStep, func(ctx context.Context, job *steps.Job) (any, error) { return nil, nil })
	id := purchases(t, db, 1)[0]
	if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "purchase", Steps: steps.Chain(
		steps.Step{Name: "grant", MaxAttempts: 1}, steps.Step{Name: "access_email"})}); err != nil {
		t.Fatal(err)
	}
	if claimed, err := db.ClaimSteps(ctx, "doomed", clk.Now(), 200*time.Millisecond, 1); err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	waitUntil(t, "the lapsed lease to be rescued", func() bool {
		if _, err := eng.RunDue(ctx); err != nil {
			t.Fatal(err)
		}
		return stepByName(t, db, id, "purchase", "grant").Status == store.StepFailed
	})
	grant := stepByName(t, db, id, "purchase", "grant")
	email := stepByName(t, db, id, "purchase", "access_email")
	want := "canceled: grant (step " + strconv.FormatInt(grant.ID, 10) + ") failed"
	if email.Status != store.StepCanceled || email.LastError == nil || *email.LastError != want {
		t.Errorf("access_email = %s (%v), want canceled: %q", email.Status, email.LastError, want)
	}
	if a := alertsFor(t, db, id, grant.ID); len(a) != 1 || a[0].Step != "grant" || a[0].step.Status != store.StepDone {
		t.Errorf("operator alerts = %+v, want one for grant, done", a)
	}
}

// TestRetryAfterInThePastFloorsAtTheBackoff: a RetryAfter whose time has
// passed (a rate limit's reset already behind us) or is zero waits the
// normal backoff instead of retrying at once; one in the future is kept.
func TestRetryAfterInThePastFloorsAtTheBackoff(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{BackoffBase: 10 * time.Second, Jitter: 0.2})
	delays := map[string]time.Duration{"past": -time.Minute, "zero": 0, "future": 90 * time.Second}
	for name, d := range delays {
		eng.Register(name, func(ctx context.Context, job *steps.Job) (any, error) {
			return nil, steps.RetryAfter(d, errors.New("429 too many requests"))
		})
	}
	names := []string{"past", "zero", "future"}
	ids := purchases(t, db, len(names))
	for i, name := range names {
		if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: ids[i], Name: "p",
			Steps: []steps.Step{{Name: name}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := eng.RunDue(ctx); err != nil || n != len(delays) {
		t.Fatalf("RunDue = %d, %v; want each step run once", n, err)
	}
	for i, name := range names {
		s := stepByName(t, db, ids[i], "p", name)
		wait := s.RunAt.Sub(t0)
		switch {
		case s.Status != store.StepPending || s.Attempts != 1:
			t.Errorf("%s: %s after %d attempts, want pending after 1", name, s.Status, s.Attempts)
		case name == "future" && wait != 90*time.Second:
			t.Errorf("future: next attempt in %s, want 90s", wait)
		case name != "future" && (wait < 8*time.Second || wait > 12*time.Second):
			t.Errorf("%s: next attempt in %s, want the backoff (10s±20%%)", name, wait)
		}
	}
}

// raisedAlert is an operator_alert step and its arguments.
type raisedAlert struct {
	step store.Step
	steps.AlertArgs
}

// alertsFor returns the operator alerts raised for the step failedID of a
// purchase, oldest first.
func alertsFor(t *testing.T, db *store.DB, purchaseID string, failedID int64) []raisedAlert {
	t.Helper()
	all, err := db.PurchaseSteps(context.Background(), purchaseID)
	if err != nil {
		t.Fatal(err)
	}
	var out []raisedAlert
	for _, s := range all {
		if s.Name != steps.AlertStep {
			continue
		}
		a := raisedAlert{step: s}
		if err := json.Unmarshal(s.Args, &a.AlertArgs); err != nil {
			t.Fatal(err)
		}
		if a.StepID == failedID {
			out = append(out, a)
		}
	}
	return out
}

// TestFailedOnCommitIsRetriedOrFailed: an OnCommit write that fails makes
// the step's outcome that error, recorded at once under its claim: a plain
// error retries after the backoff with the error saved, and the step is done
// on its next run; a permanent one fails the step for good, alerting the
// operator and canceling the steps waiting on it.
func TestFailedOnCommitIsRetriedOrFailed(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{BackoffBase: 10 * time.Second, Jitter: 0.2})
	var commits atomic.Int32
	eng.Register("grant", func(ctx context.Context, job *steps.Job) (any, error) {
		job.OnCommit(func(ctx context.Context, q *store.Queries) error {
			if commits.Add(1) == 1 {
				return errors.New("ledger row locked")
			}
			ref := "inv_42"
			return q.SetAccess(ctx, job.PurchaseID, "granted", &ref, clk.Now())
		})
		return "granted", nil
	})
	eng.Register("refund", func(ctx context.Context, job *steps.Job) (any, error) {
		job.OnCommit(func(ctx context.Context, q *store.Queries) error {
			return steps.Permanent(errors.New("refund exceeds the charge"))
		})
		return "refunded", nil
	})
	eng.Register("receipt", func(ctx context.Context, job *steps.Job) (any, error) { return nil, nil })
	eng.Register(steps.AlertStep, func(ctx context.Context, job *steps.Job) (any, error) { return nil, nil })
	ids := purchases(t, db, 2)
	if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: ids[0], Name: "p",
		Steps: []steps.Step{{Name: "grant"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: ids[1], Name: "p",
		Steps: steps.Chain(steps.Step{Name: "refund"}, steps.Step{Name: "receipt"})}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}

	grant := stepByName(t, db, ids[0], "p", "grant")
	if wait := grant.RunAt.Sub(t0); grant.Status != store.StepPending || grant.Attempts != 1 ||
		wait < 8*time.Second || wait > 12*time.Second {
		t.Errorf("grant after a failed OnCommit: %s after %d attempts, next in %s; want pending after 1, in 10s±20%%",
			grant.Status, grant.Attempts, wait)
	}
	if grant.LastError == nil || !strings.Contains(*grant.LastError, "ledger row locked") {
		t.Errorf("grant last error = %v, want the OnCommit error", grant.LastError)
	}
	refund := stepByName(t, db, ids[1], "p", "refund")
	if refund.Status != store.StepFailed || refund.Attempts != 1 || refund.LastError == nil ||
		!strings.Contains(*refund.LastError, "refund exceeds the charge") {
		t.Errorf("refund after a permanent OnCommit error: %s after %d attempts (%v); want failed after 1 with the error",
			refund.Status, refund.Attempts, refund.LastError)
	}
	if s := stepByName(t, db, ids[1], "p", "receipt"); s.Status != store.StepCanceled {
		t.Errorf("receipt waiting on the failed refund = %s, want canceled", s.Status)
	}
	if a := alertsFor(t, db, ids[1], refund.ID); len(a) != 1 || a[0].Step != "refund" ||
		!strings.Contains(a[0].LastError, "refund exceeds the charge") {
		t.Errorf("alerts for the refund = %+v, want one naming its error", a)
	}

	clk.Advance(time.Minute)
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if s := stepByName(t, db, ids[0], "p", "grant"); s.Status != store.StepDone || s.Attempts != 2 || s.LastError != nil {
		t.Errorf("grant on its next run: %s after %d attempts (%v); want done after 2", s.Status, s.Attempts, s.LastError)
	}
	var state, ref string
	if err := db.Pool.QueryRow(ctx, `SELECT access_state, access_ref FROM purchases WHERE id = $1`, ids[0]).
		Scan(&state, &ref); err != nil || state != "granted" || ref != "inv_42" {
		t.Errorf("OnCommit write = %q %q (%v), want granted inv_42", state, ref, err)
	}
}

// TestEachFailureForGoodRaisesItsOwnAlert: a step that fails for good again
// after the operator retried it raises a second alert, its own; the first
// is kept.
func TestEachFailureForGoodRaisesItsOwnAlert(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	clk := clock.NewFake(t0)
	eng := newEngine(t, db, clk, steps.Config{})
	var runs atomic.Int32
	eng.Register("grant", func(ctx context.Context, job *steps.Job) (any, error) {
		return nil, steps.Permanent(fmt.Errorf("unknown GitHub user (run %d)", runs.Add(1)))
	})
	eng.Register(steps.AlertStep, func(ctx context.Context, job *steps.Job) (any, error) { return nil, nil })
	id := purchases(t, db, 1)[0]
	if _, err := eng.Schedule(ctx, db.Queries, steps.Pipeline{PurchaseID: id, Name: "purchase",
		Steps: []steps.Step{{Name: "grant"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	grant := stepByName(t, db, id, "purchase", "grant")
	if grant.Status != store.StepFailed {
		t.Fatalf("grant = %s, want failed", grant.Status)
	}

	clk.Advance(time.Hour) // the operator looks into it, and retries
	if ok, err := db.RetryFailedStep(ctx, grant.ID, clk.Now()); err != nil || !ok {
		t.Fatalf("retry failed step = %v, %v", ok, err)
	}
	if _, err := eng.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	if s := stepByName(t, db, id, "purchase", "grant"); s.Status != store.StepFailed {
		t.Fatalf("grant after the retry = %s, want failed", s.Status)
	}
	alerts := alertsFor(t, db, id, grant.ID)
	if len(alerts) != 2 {
		t.Fatalf("%d alerts for the twice-failed step, want 2: %+v", len(alerts), alerts)
	}
	for i, a := range alerts {
		if want := fmt.Sprintf("(run %d)", i+1); !strings.Contains(a.LastError, want) || a.step.Status != store.StepDone {
			t.Errorf("alert %d (%s) names %q, want done and naming the error of run %d", i+1, a.step.Status, a.LastError, i+1)
		}
	}
}
