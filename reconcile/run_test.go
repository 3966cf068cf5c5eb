package reconcile_test

import (
	"context"
	"net/http"
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
	e.emu.FailPath("/v1/events", 0, 1<<30, http.StatusInternalServerError) // the passes cannot see the payment: only the hint
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

// A failed object is retried when its backoff ends, by the targeted pass
// the running reconciler runs every RetryBackoff, not at the next scheduled
// pass (an hour away here): a Stripe blip costs seconds, not minutes.
func TestARunningReconcilerRetriesAFailedObjectWhenDue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	first, firstPID := e.checkout("hank")
	e.pay(first, false)
	defer e.running()()
	// The pass run at start has read the events feed once it caught this up.
	e.await("the payment was not caught up at start", func() bool { return e.purchase(firstPID).Status == store.PurchaseCompleted })
	// and has ended: a polling pass that met the next payment in the feed
	// would fetch it first, and its recorded failure would hold the hint
	// back until the retry is due, as it should.
	e.await("the pass run at start did not end", func() bool { p := e.rec.Progress(); return p.Pass != "" && !p.Running })

	sid, pid := e.checkout("ida")
	e.pay(sid, false)
	e.emu.FailPath("/v1/checkout/sessions/"+sid, 0, 1<<30, http.StatusInternalServerError)
	if _, err := e.db.InsertHint(e.ctx, "evt_blip", "checkout.session.completed", sid, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	// Failed, and left to a later pass once its in-pass retries failed too.
	gaveUp := func() bool {
		var n int
		e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM webhook_hints WHERE event_id = 'evt_blip' AND last_error IS NOT NULL`).Scan(&n)
		es, err := e.db.ReconcileErrors(e.ctx, e.clock.Now().Add(time.Hour), 10)
		return n == 1 && err == nil && len(es) == 1 && es[0].ObjectID == sid
	}
	e.await("the hinted session's failure was not recorded", gaveUp)
	e.emu.FailPath("", 0, 0, 0)
	if st := e.purchase(pid).Status; st == store.PurchaseCompleted {
		t.Fatal("the pass that failed completed the purchase")
	}
	before := len(e.emu.Requests())
	e.clock.Advance(5 * time.Second) // its retry is due
	e.await("the failed object was not retried once due", func() bool { return e.purchase(pid).Status == store.PurchaseCompleted })
	e.await("the failure stayed recorded after the retry succeeded", func() bool {
		es, err := e.db.ReconcileErrors(e.ctx, e.clock.Now().Add(time.Hour), 10)
		return err == nil && len(es) == 0
	})
	// The hint and the due retry name one object: one look at it, which
	// clears its failure.
	fetched := 0
	for _, r := range e.emu.Requests()[before:] {
		if r.Method == http.MethodGet && r.Path == "/v1/checkout/sessions/"+sid {
			fetched++
		}
	}
	if fetched != 1 {
		t.Errorf("the session was fetched %d times after the blip; want once", fetched)
	}
}

// running runs the reconciler with hourly schedules; the function it
// returns stops it.
func (e *env) running() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- e.rec.Run(ctx, reconcile.Schedules{Incremental: "@every 1h", Deep: "@every 1h", Access: "@every 1h"})
	}()
	return func() { cancel(); <-ran }
}

// await polls done until it reports true, failing the test with what after
// 30 seconds.
func (e *env) await(what string, done func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			e.t.Fatal(what)
		}
		time.Sleep(50 * time.Millisecond) // polling the outcome
	}
}

// A daemon that starts (or restarts after a crash) runs an incremental pass
// at once: a payment whose webhook it missed is caught up in seconds, not
// an interval later (an hour here).
func TestAStartingReconcilerCatchesUpAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, pid := e.checkout("ivy")
	e.pay(sid, false) // no webhook
	defer e.running()()
	e.await("the payment was not caught up at start", func() bool { return e.purchase(pid).Status == store.PurchaseCompleted })
}

// An incremental pass that fails as a whole (here its events call, and
// every retry of it) runs again after the retry backoff, not at the next
// scheduled pass (an hour here).
func TestAFailedIncrementalPassRunsAgainSoon(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, pid := e.checkout("jon")
	e.pay(sid, false)                                                  // no webhook
	e.emu.FailPath("/v1/events", 0, 4, http.StatusInternalServerError) // the first pass's call and its three retries
	stop := e.running()
	e.await("the failed pass did not run again soon", func() bool { return e.purchase(pid).Status == store.PurchaseCompleted })
	stop()
	var calls int
	for _, r := range e.emu.Requests() {
		if r.Path == "/v1/events" {
			calls++
		}
	}
	if calls < 5 {
		t.Errorf("%d events calls; want the failed pass's 4 and the rerun's", calls)
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

// A session whose hint failed to fetch it in a deep pass is applied from
// the page of the same pass's list walk: a failed fetch does not make the
// pass skip data it holds.
func TestAWalkAppliesASessionItsHintFailedToFetch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, pid := e.checkout("kay")
	e.pay(sid, false)
	e.emu.FailPath("/v1/checkout/sessions/"+sid, 0, 1<<30, http.StatusInternalServerError)
	if _, err := e.db.InsertHint(e.ctx, "evt_kay", "checkout.session.completed", sid, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.pass(reconcile.Deep)
	if st := e.purchase(pid).Status; st != store.PurchaseCompleted {
		t.Errorf("purchase %s after the deep pass, want completed from the list", st)
	}
}
