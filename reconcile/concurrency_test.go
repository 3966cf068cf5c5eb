package reconcile_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// openPurchases makes n checkouts that were paid without paymentd
// hearing of it, their rows last compared two hours ago: what an
// incremental pass re-checks.
func (e *env) openPurchases(n int) []string {
	e.t.Helper()
	var ids []string
	for range n {
		sid, pid := e.checkout("buyer")
		e.pay(sid, false)
		ids = append(ids, pid)
	}
	e.clock.Advance(2 * time.Hour)
	return ids
}

func (e *env) completed(ids []string) int {
	n := 0
	for _, id := range ids {
		if e.purchase(id).Status == store.PurchaseCompleted {
			n++
		}
	}
	return n
}

func TestObjectsOfAPassAreReconciledConcurrently(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	ids := e.openPurchases(80)
	e.emu.SetFaults(stripeemu.Faults{Latency: 20 * time.Millisecond})
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := e.rec.Progress().InFlight; n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	rep := e.pass(reconcile.PassOptions{Pending: true})
	close(stop)
	<-sampled
	if !rep.Converged() || e.completed(ids) != len(ids) {
		t.Fatalf("converged %v, %d of %d completed", rep.Converged(), e.completed(ids), len(ids))
	}
	if peak.Load() < 2 {
		t.Errorf("at most %d object(s) in flight at once; want them reconciled concurrently", peak.Load())
	}
}

func TestAFailedCallGoesToTheRetryQueueNotTheNextPass(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	ids := e.openPurchases(20)
	// One worker, so the order of calls shows who waits for what.
	rec := reconcile.New(reconcile.Options{DB: e.db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
		Products: productsWithGitHub, Concurrency: 1})
	e.emu.ResetRequests()
	e.emu.FailNext(4, 500)
	rep, err := rec.RunPass(e.ctx, "test", reconcile.PassOptions{Pending: true})
	if err != nil || !rep.Converged() || e.completed(ids) != len(ids) {
		t.Fatalf("one pass with 4 failed calls: %v, converged %v, %d of %d completed", err, rep.Converged(), e.completed(ids), len(ids))
	}
	if es, _ := e.db.ReconcileErrors(e.ctx, e.clock.Now().Add(24*time.Hour), 10); len(es) != 0 {
		t.Errorf("objects retried within the pass are still recorded as failing: %+v", es)
	}
	// No call was retried within itself, holding the worker: the call after
	// a failed one is another object's, and the failed object comes back
	// from the retry queue later in the same pass.
	reqs := e.emu.Requests()
	if len(reqs) != len(ids)+4 {
		t.Fatalf("%d Stripe calls for %d objects and 4 failures; want %d", len(reqs), len(ids), len(ids)+4)
	}
	for i, r := range reqs[:4] {
		if reqs[i+1].Path == r.Path {
			t.Errorf("%s was retried at once, within its call", r.Path)
		}
		again := 0
		for _, later := range reqs[i+1:] {
			if later.Path == r.Path {
				again++
			}
		}
		if again != 1 {
			t.Errorf("%s failed and was called %d more times in the pass; want once, from the retry queue", r.Path, again)
		}
	}
}

func TestAHintIsAppliedBesideALongPass(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	createSessions(t, e, 4000)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.rec.Run(ctx, reconcile.Schedules{Incremental: "@every 1h", Deep: "@every 1h", Access: "@every 1h"})
	}()
	defer func() { stop(); <-done }()
	// Wait for the hints listener: a first hint until it is handled.
	warm, _ := e.checkout("warm")
	e.pay(warm, false)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		if p, _ := e.db.PurchaseBySession(e.ctx, warm); p.Status == store.PurchaseCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hints listener never came up")
		}
		e.db.InsertHint(e.ctx, "evt_warm_"+time.Now().Format("150405.000000"), "checkout.session.completed", warm, e.clock.Now())
		time.Sleep(50 * time.Millisecond)
	}

	// A long pass: 40 pages of sessions, each taking 100ms to list.
	long := startLongPass(t, e, 100*time.Millisecond, 0)
	for !e.rec.Progress().Running || e.rec.Progress().Seen < 200 {
		time.Sleep(10 * time.Millisecond)
	}
	sid, pid := e.checkout("fresh")
	e.pay(sid, false)
	paid := time.Now()
	if _, err := e.db.InsertHint(e.ctx, "evt_fresh", "checkout.session.completed", sid, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for e.purchase(pid).Status != store.PurchaseCompleted {
		select {
		case <-long:
			t.Fatal("the hint waited for the long pass to end")
		default:
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(paid)
	t.Logf("hint applied %s after the payment, beside a pass at %+v", took, e.rec.Progress())
	if took > 2*time.Second {
		t.Errorf("the hint took %s; want it within 2s", took)
	}
	if rep := <-long; !rep.Converged() {
		t.Errorf("the long pass: %+v", rep.Errors)
	}
}

func TestProgressOfALongPassIsReportedAndOnMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	for i := range 1000 {
		if i%100 == 0 {
			e.clock.Advance(24 * time.Hour) // ten days of sessions
		}
		if _, err := e.emu.CreateSession(stripeemuSession(e.price, "x@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(time.Hour)
	reg := prometheus.NewRegistry()
	rec := reconcile.New(reconcile.Options{DB: e.db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
		Products: productsWithGitHub, Metrics: reconcile.NewMetrics(reg)})
	gauge := func(name string) float64 {
		families, _ := reg.Gather()
		for _, f := range families {
			if f.GetName() == name {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("%s is not registered", name)
		return 0
	}
	e.emu.SetFaults(stripeemu.Faults{Latency: 30 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := rec.RunPass(e.ctx, "deep", reconcile.PassOptions{Lists: true, Since: t0}); err != nil {
			t.Error(err)
		}
	}()
	var seenHalf bool
	for p := rec.Progress(); !seenHalf; p = rec.Progress() {
		select {
		case <-done:
			t.Fatalf("the pass ended before its progress showed half the walk: %+v", p)
		default:
		}
		if p.Running && p.Phase == store.WalkSessions && p.Done >= 0.5 && p.Done < 1 {
			seenHalf = true
			if p.Seen < 300 || p.PerSecond <= 0 || p.Remaining <= 0 {
				t.Errorf("halfway: %+v", p)
			}
			if d := gauge("paymentd_reconcile_walk_done_ratio"); d < 0.5 {
				t.Errorf("paymentd_reconcile_walk_done_ratio = %v while the walk is %.2f done", d, p.Done)
			}
			if gauge("paymentd_reconcile_pass_objects_seen") < 300 || gauge("paymentd_reconcile_objects_per_second") <= 0 {
				t.Error("the objects seen and their rate are not on /metrics")
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	<-done
	if p := rec.Progress(); p.Running || p.Seen < 1000 || gauge("paymentd_reconcile_walk_done_ratio") != 0 {
		t.Errorf("after the pass: %+v", p)
	}
}

func TestOnePassComparesTheWholeBacklogOfOpenPurchases(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	const n = 1100 // more than one chunk of due purchases
	for i := range n {
		params := stripeemuSession(e.price, "backlog@example.com")
		params.PaymentLink = ""
		s, err := e.emu.CreateSession(params)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := e.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
				t.Fatal(err)
			}
		}
		now, exp := e.clock.Now(), time.Unix(s.ExpiresAt, 0).UTC()
		if _, err := e.db.InsertPurchase(e.ctx, store.Purchase{ID: uuid.NewString(), ProductKey: product, Quantity: 1,
			Status: store.PurchasePending, StripeSessionID: s.ID, AmountTotal: s.AmountTotal, Currency: "usd",
			AccessState: store.AccessNone, SessionExpiresAt: &exp, CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(2 * time.Hour)
	rep := e.pass(reconcile.Incremental)
	if !rep.Converged() || rep.Counts["completed"] != n/2 {
		t.Fatalf("one incremental pass: %d completed, errors %+v; want %d", rep.Counts["completed"], rep.Errors, n/2)
	}
	var open int
	e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM purchases WHERE status = 'pending' AND checked_at IS NULL`).Scan(&open)
	if open != 0 {
		t.Errorf("%d open purchases were not compared", open)
	}
}

// A burst of payment hints is read from the list of complete sessions, a
// hundred a call, not with a retrieve each: under Stripe's 100 calls a
// second, the pipeline then carries more than 100 payments a second.
func TestABurstOfHintsIsReadFromTheListNotOneRetrieveEach(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	const n = 150
	pids := make([]string, n)
	for i := range n {
		sid, pid := e.checkout(fmt.Sprintf("buyer%d", i))
		pids[i] = pid
		e.pay(sid, false)
		if _, err := e.db.InsertHint(e.ctx, fmt.Sprintf("evt_burst_%d", i), "checkout.session.completed", sid, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Second)
	}
	e.emu.ResetRequests()
	e.pass(reconcile.HintsOnly)
	for _, pid := range pids {
		if p := e.purchase(pid); p.Status != store.PurchaseCompleted {
			t.Fatalf("purchase %s is %s after its hint", pid, p.Status)
		}
	}
	lists, retrieves := 0, 0
	for _, r := range e.emu.Requests() {
		switch {
		case r.Path == "/v1/checkout/sessions":
			lists++
		case strings.HasPrefix(r.Path, "/v1/checkout/sessions/"):
			retrieves++
		}
	}
	if lists != 2 || retrieves != 0 {
		t.Errorf("%d hinted payments took %d list and %d retrieve calls; want 2 pages and no retrieve", n, lists, retrieves)
	}
	if left, err := e.db.UnhandledHints(e.ctx, e.clock.Now(), 1000); err != nil || len(left) != 0 {
		t.Errorf("%d hints left unhandled (%v)", len(left), err)
	}
}

// Hinted sessions the list does not bring within its page budget (one page
// per ten sought: here, crowded out by newer complete sessions) are
// retrieved one by one.
func TestHintedSessionsTheListDoesNotBringAreRetrieved(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	var pids []string
	for i := range 12 {
		sid, pid := e.checkout(fmt.Sprintf("old%d", i))
		pids = append(pids, pid)
		e.pay(sid, false)
		if _, err := e.db.InsertHint(e.ctx, fmt.Sprintf("evt_old_%d", i), "checkout.session.completed", sid, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 250 { // newer payments, not hinted
		e.clock.Advance(time.Second)
		sid, _ := e.checkout(fmt.Sprintf("new%d", i))
		e.pay(sid, false)
	}
	e.emu.ResetRequests()
	e.pass(reconcile.HintsOnly)
	for _, pid := range pids {
		if p := e.purchase(pid); p.Status != store.PurchaseCompleted {
			t.Fatalf("purchase %s is %s after its hint", pid, p.Status)
		}
	}
	lists, retrieves := 0, 0
	for _, r := range e.emu.Requests() {
		switch {
		case r.Path == "/v1/checkout/sessions":
			lists++
		case strings.HasPrefix(r.Path, "/v1/checkout/sessions/"):
			retrieves++
		}
	}
	if lists != 2 || retrieves != 12 {
		t.Errorf("%d list and %d retrieve calls; want the 2-page budget, then the 12 retrieved", lists, retrieves)
	}
}

// A pass whose lock's database session ends (a failover, a restarted
// server) stops instead of polling on beside the replica that may hold the
// lock now, and says why.
// Scheduled passes run under a budget (reconcile.pass_budget), one-off ones
// without: both stop.
func TestAPassStopsWhenItsLockIsLost(t *testing.T) {
	t.Parallel()
	for _, budget := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprintf("budget %s", budget), func(t *testing.T) {
			t.Parallel()
			passStopsWhenItsLockIsLost(t, budget)
		})
	}
}

func passStopsWhenItsLockIsLost(t *testing.T, budget time.Duration) {
	e := newEnv(t, t0)
	createSessions(t, e, 4000)
	// 40 pages at 400ms each: the pass would take 16 s.
	long := startLongPass(t, e, 400*time.Millisecond, budget)
	deadline := time.Now().Add(30 * time.Second)
	for !e.rec.Progress().Running || e.rec.Progress().Seen < 100 {
		if time.Now().After(deadline) {
			t.Fatal("the pass never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var killed bool
	if err := e.db.Pool.QueryRow(e.ctx, `
		SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND (classid::bigint << 32 | objid::bigint) = $1`, store.PollerLockKey).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the poller lock's session: %v, %v", killed, err)
	}
	ended := time.Now()
	select {
	case rep := <-long:
		t.Logf("the pass stopped %s after its lock's session ended, having seen %d: %s", time.Since(ended), rep.Seen, rep.Interrupted)
		if !strings.Contains(rep.Interrupted, "lock") {
			t.Errorf("the pass ended with interrupted %q; want it to say it lost its lock", rep.Interrupted)
		}
		if rep.Seen >= 4000 {
			t.Errorf("the pass saw all %d sessions: it did not stop", rep.Seen)
		}
	case <-time.After(12 * time.Second):
		t.Fatal("the pass went on for 12 s after its lock's session ended")
	}
}

// startLongPass makes every emulator call take latency and starts a deep
// pass over the sessions since t0, within budget (0: none); its report arrives on the channel.
func startLongPass(t *testing.T, e *env, latency, budget time.Duration) <-chan *reconcile.Report {
	e.emu.SetFaults(stripeemu.Faults{Latency: latency})
	long := make(chan *reconcile.Report, 1)
	go func() {
		rep, err := e.rec.RunPass(context.Background(), "deep", reconcile.PassOptions{Lists: true, Since: t0, Budget: budget})
		if err != nil {
			t.Error(err)
		}
		long <- rep
	}()
	return long
}

// createSessions creates n open sessions at the emulator, a hundred a
// minute, for a pass of n/100 pages.
func createSessions(t *testing.T, e *env, n int) {
	t.Helper()
	for i := range n {
		if i%100 == 0 {
			e.clock.Advance(time.Minute)
		}
		if _, err := e.emu.CreateSession(stripeemuSession(e.price, "x@example.com")); err != nil {
			t.Fatal(err)
		}
	}
}
