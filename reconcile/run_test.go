package reconcile_test

import (
	"context"
	"testing"
	"time"

	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

func TestAHintWakesTheRunningReconciler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, pid := e.checkout("hal")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// Hourly schedules: only the hint can make this pass happen soon.
		done <- e.rec.Run(ctx, reconcile.Schedules{Incremental: "@every 1h", Deep: "@every 1h", Access: "@every 1h"})
	}()
	defer func() { stop(); <-done }()
	e.pay(sid, false)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; e.purchase(pid).Status != store.PurchaseCompleted; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the hint did not wake the reconciler")
		}
		// Re-store the hint under a new id until the listener is up.
		if _, err := e.db.InsertHint(e.ctx, "evt_wake_"+string(rune('a'+i%26))+time.Now().Format("150405.000"),
			"checkout.session.completed", sid, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var unhandled int
	deadline = time.Now().Add(10 * time.Second)
	for {
		e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM webhook_hints WHERE handled_at IS NULL`).Scan(&unhandled)
		if unhandled == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if unhandled != 0 {
		t.Errorf("%d hints left unhandled after their object reconciled", unhandled)
	}
}

func TestStalledAfterThreeIntervalsWithoutAnIncrementalPass(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.rec.Run(ctx, reconcile.Schedules{Incremental: "@every 1m", Deep: "@every 24h", Access: "@every 24h"})
	}()
	defer func() { stop(); <-done }()
	e.clock.Advance(4 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for e.rec.Stalled(e.clock.Now()) == "" { // Run learns its interval as it starts
		if time.Now().After(deadline) {
			t.Fatal("not reported stalled after four intervals without a pass")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.rec.RunPass(e.ctx, "incremental", reconcile.Incremental); err != nil {
		t.Fatal(err)
	}
	if msg := e.rec.Stalled(e.clock.Now()); msg != "" {
		t.Errorf("still stalled right after a pass: %s", msg)
	}
	e.clock.Advance(2 * time.Minute)
	if msg := e.rec.Stalled(e.clock.Now()); msg != "" {
		t.Errorf("stalled two intervals after a pass: %s", msg)
	}
	e.clock.Advance(2 * time.Minute)
	if e.rec.Stalled(e.clock.Now()) == "" {
		t.Error("not stalled four intervals after the last pass")
	}
}
