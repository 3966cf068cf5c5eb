package steps

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// TestClaimTooOldIsNotStarted: a claimed step whose worker gets to it only
// when two thirds of its lease have passed on the engine's clock since the
// claim (the database was out of reach, say, and another replica may have
// rescued the step) is not started: it is handed back under its claim,
// without spending an attempt. One a little younger starts.
func TestClaimTooOldIsNotStarted(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	const lease = time.Minute
	e := New(db, clk, slog.New(slog.NewTextHandler(io.Discard, nil)), Config{Lease: lease}, nil)
	var ran atomic.Int32
	e.Register("grant", func(ctx context.Context, job *Job) (any, error) { ran.Add(1); return nil, nil })
	id := uuid.NewString()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO purchases (id, product_key, stripe_session_id, currency, created_at, updated_at)
		VALUES ($1, 'pro', $3, 'usd', $2, $2)`, id, t0, "cs_"+id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Schedule(ctx, db.Queries, Pipeline{PurchaseID: id, Name: "p", Steps: []Step{{Name: "grant"}}}); err != nil {
		t.Fatal(err)
	}
	step := func() store.Step {
		t.Helper()
		all, err := db.PurchaseSteps(ctx, id)
		if err != nil || len(all) != 1 {
			t.Fatalf("steps = %v, %v", all, err)
		}
		return all[0]
	}

	claimedAt := e.now()
	claimed, err := db.ClaimSteps(ctx, e.cfg.Owner, clk.Now(), lease, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	clk.Advance(2 * lease / 3)
	e.execute(ctx, claimed[0], claimedAt, false)
	if n := ran.Load(); n != 0 {
		t.Fatalf("the handler ran %d times under a claim two thirds of a lease old", n)
	}
	if s := step(); s.Status != store.StepPending || s.Attempts != 0 || s.ClaimToken != nil {
		t.Fatalf("step after the refused start = %s, %d attempts; want pending with its attempt unspent", s.Status, s.Attempts)
	}

	claimedAt = e.now()
	claimed, err = db.ClaimSteps(ctx, e.cfg.Owner, clk.Now(), lease, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim again = %v, %v", claimed, err)
	}
	clk.Advance(2*lease/3 - time.Second)
	e.execute(ctx, claimed[0], claimedAt, false)
	if s := step(); ran.Load() != 1 || s.Status != store.StepDone || s.Attempts != 1 {
		t.Fatalf("a younger claim: handler ran %d times, step %s after %d attempts; want run once, done after 1",
			ran.Load(), s.Status, s.Attempts)
	}
}
