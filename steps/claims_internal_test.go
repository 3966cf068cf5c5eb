package steps

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/store"
)

func claimedStep(id, token int64) store.Step {
	return store.Step{ID: id, Status: store.StepRunning, ClaimToken: &token}
}

// fakeStamps stamps moments on clk (and the monotonic clock, which barely
// moves during a test).
func fakeStamps(clk *clock.Fake) func() stamp {
	return func() stamp { return stamp{clock: clk.Now(), mono: time.Now()} }
}

// TestStaleOutcomeKeepsTheNewClaim: a step claimed again (a new token) while
// its old claim's outcome is still being settled keeps its new claim when
// the old one is removed, so its lease is still renewed.
func TestStaleOutcomeKeepsTheNewClaim(t *testing.T) {
	const lease = time.Minute
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	now := fakeStamps(clk)
	cs := claims{m: map[int64]*claim{}}
	at := now()
	old, fresh := claimedStep(7, 1), claimedStep(7, 2)
	cs.hold(at, old)
	cs.hold(at, fresh) // the old lease lapsed; this engine claimed the step again
	if _, h, err := cs.start(context.Background(), fresh, at, now(), lease, time.Hour); err != nil {
		t.Fatalf("the new claim was refused: %v", err)
	} else {
		defer h.finish()
	}

	cs.remove(old.Claim()) // the old claim's success is reported as a lost lease

	clk.Advance(lease / 3)
	due := cs.due(now(), lease)
	if len(due) != 1 || due[0] != fresh.Claim() {
		t.Fatalf("claims due for renewal = %v, want the new claim %v", due, fresh.Claim())
	}
	cs.remove(fresh.Claim())
	if due := cs.due(now(), lease); len(due) != 0 {
		t.Fatalf("claims due after the new claim was removed = %v, want none", due)
	}
}

// TestStartRefusesAClaimNotRenewedForTwoThirdsOfALease: by the engine's
// clock, a claim whose last successful claim or renewal is two thirds of a
// lease old is not started; a renewal makes it young again; a lost one is
// refused as lost.
func TestStartRefusesAClaimNotRenewedForTwoThirdsOfALease(t *testing.T) {
	const lease = time.Minute
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	now := fakeStamps(clk)
	ctx := context.Background()
	cs := claims{m: map[int64]*claim{}}
	a, b, c := claimedStep(1, 11), claimedStep(2, 12), claimedStep(3, 13)
	claimedAt := now()
	cs.hold(claimedAt, a, b, c)

	clk.Advance(lease / 2)
	sent := now()
	cs.renewed(sent, []store.Claim{b.Claim(), c.Claim()}, []int64{b.ID}) // c was lost
	clk.Advance(2*lease/3 - lease/2)

	if _, _, err := cs.start(ctx, a, claimedAt, now(), lease, time.Hour); !errors.Is(err, errLeaseLapsing) {
		t.Errorf("start of a claim 2/3 of a lease old = %v, want %v", err, errLeaseLapsing)
	}
	if _, h, err := cs.start(ctx, b, claimedAt, now(), lease, time.Hour); err != nil {
		t.Errorf("start of a claim renewed 1/6 of a lease ago = %v, want started", err)
	} else {
		h.finish()
	}
	if _, _, err := cs.start(ctx, c, claimedAt, now(), lease, time.Hour); !errors.Is(err, errLeaseLost) {
		t.Errorf("start of a lost claim = %v, want %v", err, errLeaseLost)
	}
	// A claim never held (claimed just now for this worker) starts.
	d := claimedStep(4, 14)
	if _, h, err := cs.start(ctx, d, now(), now(), lease, time.Hour); err != nil {
		t.Errorf("start of a fresh claim = %v, want started", err)
	} else {
		h.finish()
	}
}
