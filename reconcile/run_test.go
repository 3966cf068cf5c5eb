package reconcile_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
	"github.com/prometheus/client_golang/prometheus"
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

func TestStalledAfterFiveIntervalsWithoutASuccessfulPass(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.rec.Run(ctx, reconcile.Schedules{Incremental: "@every 1m", Deep: "@every 24h", Access: "@every 24h"})
	}()
	defer func() { stop(); <-done }()
	e.clock.Advance(6 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for e.rec.Stalled(e.clock.Now()) == "" { // Run learns its interval as it starts
		if time.Now().After(deadline) {
			t.Fatal("not reported stalled after six intervals without a pass")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.rec.RunPass(e.ctx, "incremental", reconcile.Incremental); err != nil {
		t.Fatal(err)
	}
	if msg := e.rec.Stalled(e.clock.Now()); msg != "" {
		t.Errorf("still stalled right after a pass: %s", msg)
	}
	e.clock.Advance(4 * time.Minute)
	if msg := e.rec.Stalled(e.clock.Now()); msg != "" {
		t.Errorf("stalled four intervals after a pass: %s", msg)
	}
	e.clock.Advance(2 * time.Minute)
	if e.rec.Stalled(e.clock.Now()) == "" {
		t.Error("not stalled six intervals after the last pass")
	}
}

func TestAStallIsAMetricAndOneOperatorAlert(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	reg := prometheus.NewRegistry()
	rec := reconcile.New(reconcile.Options{DB: e.db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
		Products: productsWithGitHub, Metrics: reconcile.NewMetrics(reg), StallAfter: 5 * time.Minute})
	lastSuccess := func() float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "paymentd_reconcile_last_success_timestamp_seconds" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("paymentd_reconcile_last_success_timestamp_seconds is not registered")
		return 0
	}
	alerts := func() []string {
		t.Helper()
		var out []string
		rows, err := e.db.Pool.Query(e.ctx, `SELECT pipeline || ' ' || (args->>'last_error') FROM steps
			WHERE subject_id IS NULL AND pipeline LIKE 'alert:reconcile_stalled:%' ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			rows.Scan(&s)
			out = append(out, s)
		}
		return out
	}
	pass := func() *reconcile.Report {
		t.Helper()
		rep, err := rec.RunPass(e.ctx, "incremental", reconcile.Incremental)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rec.AlertIfStalled(e.ctx); err != nil {
			t.Fatal(err)
		}
		return rep
	}

	pass()
	if got := lastSuccess(); got != float64(t0.Unix()) {
		t.Fatalf("last success = %v, want %d", got, t0.Unix())
	}
	// Stripe fails every call: no pass can read the events feed.
	e.emu.SetFaults(stripeFaults(1, 0))
	for range 9 {
		e.clock.Advance(time.Minute)
		if rep := pass(); rep.Converged() {
			t.Fatal("a pass succeeded against a Stripe that fails every call")
		}
	}
	if got := lastSuccess(); got != float64(t0.Unix()) {
		t.Errorf("last success moved to %v during the outage", got)
	}
	if a := alerts(); len(a) != 1 || !strings.Contains(a[0], "no reconcile pass has succeeded since "+t0.Format(time.RFC3339)) {
		t.Fatalf("alerts after nine failed passes: %q; want exactly one naming the last success", a)
	}
	// Stripe recovers: the metric moves, the stall ends.
	e.emu.SetFaults(stripeFaults(0, 0))
	e.clock.Advance(time.Minute)
	pass()
	if got := lastSuccess(); got != float64(e.clock.Now().Unix()) || rec.Stalled(e.clock.Now()) != "" {
		t.Errorf("after recovery: last success %v, stalled %q", got, rec.Stalled(e.clock.Now()))
	}
	// A second outage is a second alert.
	e.emu.SetFaults(stripeFaults(1, 0))
	for range 7 {
		e.clock.Advance(time.Minute)
		pass()
	}
	if a := alerts(); len(a) != 2 {
		t.Errorf("alerts after a second outage: %q; want 2", a)
	}
}

// The console's pass history: an idle frequent pass writes nothing; one
// that changed something, and every deep pass, leave a summary.
func TestPassSummariesKeepWhatAnOperatorNeeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, _ := e.checkout("pat")
	e.pay(sid, false)
	e.clock.Advance(time.Minute)
	run := func(name string, o reconcile.PassOptions) {
		t.Helper()
		if _, err := e.rec.RunPass(e.ctx, name, o); err != nil {
			t.Fatal(err)
		}
	}
	kinds := func() []string {
		t.Helper()
		ps, err := e.db.RecentReconcilePasses(e.ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.Kind)
		}
		slices.Sort(out)
		return out
	}
	run("incremental", reconcile.Incremental) // completes the purchase
	run("incremental", reconcile.Incremental) // idle
	run("hints", reconcile.HintsOnly)         // idle
	if got := kinds(); !slices.Equal(got, []string{"incremental"}) {
		t.Fatalf("summaries after a busy and two idle passes: %v; want only the busy one", got)
	}
	run("deep", reconcile.Deep)
	if got := kinds(); !slices.Equal(got, []string{"deep", "incremental"}) {
		t.Fatalf("summaries after a deep pass: %v", got)
	}
}
