package steps

import (
	"context"
	"testing"
	"time"

	"github.com/paymentd/paymentd/store"
)

func claimedStep(id, token int64) store.Step {
	return store.Step{ID: id, Status: store.StepRunning, ClaimToken: &token}
}

// TestStaleOutcomeKeepsTheNewClaim: a step claimed again (a new token) while
// its old claim's outcome is still being settled keeps its new claim when
// the old one is removed, so its lease is still renewed.
func TestStaleOutcomeKeepsTheNewClaim(t *testing.T) {
	const lease = time.Minute
	cs := claims{m: map[int64]*claim{}}
	at := time.Now()
	old, fresh := claimedStep(7, 1), claimedStep(7, 2)
	cs.hold(at, old)
	cs.hold(at, fresh) // the old lease lapsed; this engine claimed the step again
	if _, h, ok := cs.start(context.Background(), fresh, at, time.Hour); !ok {
		t.Fatal("the new claim was refused")
	} else {
		defer h.finish()
	}

	cs.remove(old.Claim()) // the old claim's success is reported as a lost lease

	due := cs.due(at.Add(lease/3), lease)
	if len(due) != 1 || due[0] != fresh.Claim() {
		t.Fatalf("claims due for renewal = %v, want the new claim %v", due, fresh.Claim())
	}
	cs.remove(fresh.Claim())
	if due := cs.due(at.Add(lease/3), lease); len(due) != 0 {
		t.Fatalf("claims due after the new claim was removed = %v, want none", due)
	}
}
