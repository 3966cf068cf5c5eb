package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// want is what a purchase should look like once reconciled.
type want struct {
	status   store.PurchaseStatus
	refunded int64
	refunds  int // refund pipelines
	disputes int
}

// world builds the acceptance scenario on the emulator: 250 checkouts, of
// which 200 are paid (10 asynchronously) and 50 expire; 30 are refunded in
// full and 20 in part (some refunds months after the purchase); 5 are
// disputed (2 lost). No webhook is delivered.
func world(e *env) map[string]want {
	e.t.Helper()
	expect := map[string]want{}
	type paid struct{ purchase, intent string }
	var paidOnes []paid
	for i := range 250 {
		if i%25 == 0 {
			e.clock.Advance(time.Hour)
		}
		sid, pid := e.checkout(fmt.Sprintf("user%03d", i))
		switch {
		case i < 190:
			paidOnes = append(paidOnes, paid{pid, e.pay(sid, false)})
			expect[pid] = want{status: store.PurchaseCompleted}
		case i < 200:
			intent := e.pay(sid, true)
			if err := e.emu.SettleAsync(sid, true); err != nil {
				e.t.Fatal(err)
			}
			paidOnes = append(paidOnes, paid{pid, intent})
			expect[pid] = want{status: store.PurchaseCompleted}
		default:
			if err := e.emu.ExpireSession(sid); err != nil {
				e.t.Fatal(err)
			}
			expect[pid] = want{status: store.PurchaseExpired}
		}
	}
	refund := func(p paid, amount int64) {
		if _, err := e.emu.Refund(p.intent, amount); err != nil {
			e.t.Fatal(err)
		}
	}
	for i, p := range paidOnes[:30] {
		if i%3 == 0 {
			e.clock.Advance(24 * time.Hour) // some refunds come months later
		}
		refund(p, 0)
		expect[p.purchase] = want{status: store.PurchaseRefunded, refunded: 19900, refunds: 1}
	}
	for _, p := range paidOnes[30:50] {
		refund(p, 5000)
		expect[p.purchase] = want{status: store.PurchasePartiallyRefunded, refunded: 5000, refunds: 1}
	}
	for i, p := range paidOnes[50:55] {
		dp, err := e.emu.OpenDispute(p.intent)
		if err != nil {
			e.t.Fatal(err)
		}
		w := want{status: store.PurchaseCompleted, disputes: 1}
		if i < 2 {
			if err := e.emu.CloseDispute(dp, false); err != nil {
				e.t.Fatal(err)
			}
			w.status = store.PurchaseRefunded
		}
		expect[p.purchase] = w
	}
	return expect
}

func (e *env) check(expect map[string]want) {
	e.t.Helper()
	pipelines := e.pipelines()
	for id, w := range expect {
		p := e.purchase(id)
		if p.Status != w.status || p.AmountRefunded != w.refunded || p.AmountTotal != 19900 {
			e.t.Errorf("purchase %s: %s refunded %d of %d; want %s refunded %d of 19900",
				id, p.Status, p.AmountRefunded, p.AmountTotal, w.status, w.refunded)
		}
		got := pipelines[id]
		paid := w.status != store.PurchaseExpired
		if paid && (got["purchase"] != 1 || p.StripePaymentIntentID == nil || p.StripeCustomerID == nil || p.CompletedAt == nil) {
			e.t.Errorf("paid purchase %s: purchase pipeline %d steps, intent %v, customer %v", id, got["purchase"],
				p.StripePaymentIntentID, p.StripeCustomerID)
		}
		if !paid && (got["abandoned"] != 1 || got["purchase"] != 0) {
			e.t.Errorf("expired purchase %s: pipelines %v", id, got)
		}
		refunds, disputes := 0, 0
		for name := range got {
			switch {
			case len(name) > 7 && name[:7] == "refund:":
				refunds++
			case len(name) > 8 && name[:8] == "dispute:":
				disputes++
			}
		}
		if refunds != w.refunds || disputes != w.disputes {
			e.t.Errorf("purchase %s: %d refund and %d dispute pipelines; want %d and %d", id, refunds, disputes, w.refunds, w.disputes)
		}
	}
}

func TestOnePassHealsEverythingWithWebhooksDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	expect := world(e)
	e.clock.Advance(90 * 24 * time.Hour) // the refunds and disputes are months old by now

	rep := e.pass(reconcile.PassOptions{Lists: true, Since: t0.Add(-time.Hour), Pending: true, Hints: true, Retries: true})
	if !rep.Converged() {
		t.Fatalf("errors: %+v", rep.Errors)
	}
	e.check(expect)
	if rep.Healed["session"] == 0 || rep.Healed["refund"] == 0 {
		t.Errorf("healed without webhook: %v; every change here was unannounced", rep.Healed)
	}

	before := e.snapshot()
	e.clock.Advance(time.Minute) // any write would now change updated_at
	rep = e.pass(reconcile.PassOptions{Lists: true, Since: t0.Add(-time.Hour), Pending: true, Hints: true, Retries: true})
	if len(rep.Changes) != 0 || !rep.Converged() {
		t.Errorf("second pass changed %d things: %+v %+v", len(rep.Changes), rep.Changes, rep.Errors)
	}
	if after := e.snapshot(); after != before {
		t.Errorf("second pass wrote to the database:\n%s\n%s", before, after)
	}
}

func TestShuffledDuplicatedWebhooksConvergeToTheSameState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	expect := world(e)
	// Deliver every event Stripe recorded to the real webhook endpoint,
	// signed as Stripe signs, in shuffled order, every third one twice.
	hook := webhookEndpoint(t, e)
	events := e.emu.Events()
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	for i, ev := range events {
		for range 1 + i%3/2 {
			hook(ev)
		}
	}
	rep := e.pass(reconcile.HintsOnly)
	if !rep.Converged() {
		t.Fatalf("errors: %+v", rep.Errors)
	}
	var unhandled int
	e.db.Pool.QueryRow(e.ctx, `SELECT count(*) FROM webhook_hints WHERE handled_at IS NULL`).Scan(&unhandled)
	if unhandled != 0 {
		t.Errorf("%d hints left unhandled", unhandled)
	}
	e.pass(reconcile.Incremental)
	e.check(expect)
	// Announced changes are not counted as healed.
	rep = e.pass(reconcile.PassOptions{Lists: true, Since: t0.Add(-time.Hour)})
	if len(rep.Changes) != 0 {
		t.Errorf("a deep pass after the hints still changed %+v", rep.Changes)
	}
}

func TestIncrementalPassCatchesLateUpdatesFromTheEventsFeed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	refundedSession, refundedPurchase := e.checkout("ann")
	intent := e.pay(refundedSession, false)
	refundID, err := e.emu.Refund(intent, 0)
	if err != nil {
		t.Fatal(err)
	}
	asyncSession, asyncPurchase := e.checkout("bob")
	e.pay(asyncSession, true)
	e.pass(reconcile.Incremental)
	if p := e.purchase(refundedPurchase); p.Status != store.PurchaseRefunded {
		t.Fatalf("refunded purchase is %s", p.Status)
	}
	if p := e.purchase(asyncPurchase); p.Status != store.PurchasePending {
		t.Fatalf("unsettled async purchase is %s, want pending", p.Status)
	}

	e.clock.Advance(48 * time.Hour)
	if err := e.emu.FailRefund(refundID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(24 * time.Hour)
	if err := e.emu.SettleAsync(asyncSession, true); err != nil {
		t.Fatal(err)
	}
	rep := e.pass(reconcile.Incremental)
	if !rep.Converged() {
		t.Fatalf("errors: %+v", rep.Errors)
	}
	p := e.purchase(refundedPurchase)
	if p.Status != store.PurchaseCompleted || p.AmountRefunded != 0 {
		t.Errorf("after the refund failed: %s refunded %d; want completed, 0", p.Status, p.AmountRefunded)
	}
	if r, _ := e.db.GetRefund(e.ctx, refundID); r.Status != "failed" {
		t.Errorf("refund row status %q, want failed", r.Status)
	}
	if e.pipelines()[refundedPurchase]["reversed:"+refundID] != 1 {
		t.Errorf("refund reversal not scheduled: %v", e.pipelines()[refundedPurchase])
	}
	if p := e.purchase(asyncPurchase); p.Status != store.PurchaseCompleted || e.pipelines()[asyncPurchase]["purchase"] != 1 {
		t.Errorf("settled async purchase: %s, pipelines %v", p.Status, e.pipelines()[asyncPurchase])
	}
}

func TestExpiryWithoutWebhookIsFoundByTheNextIncrementalPass(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, pid := e.checkout("cat")
	e.pass(reconcile.Incremental)
	e.clock.Advance(23 * time.Hour)
	if err := e.emu.ExpireSession(sid); err != nil {
		t.Fatal(err)
	}
	e.pass(reconcile.Incremental)
	p := e.purchase(pid)
	if p.Status != store.PurchaseExpired || p.RecoveryURL == nil {
		t.Fatalf("purchase %s, recovery URL %v; want expired with one", p.Status, p.RecoveryURL)
	}
	steps, _ := e.db.PurchaseSteps(e.ctx, pid)
	if len(steps) != 1 || steps[0].Pipeline != "abandoned" || !steps[0].RunAt.Equal(p.SessionExpiresAt.Add(time.Hour)) {
		t.Errorf("abandoned step: %+v", steps)
	}
}

func TestAsyncPaymentFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, pid := e.checkout("dan")
	e.pay(sid, true)
	if err := e.emu.SettleAsync(sid, false); err != nil {
		t.Fatal(err)
	}
	e.pass(reconcile.Incremental)
	if p := e.purchase(pid); p.Status != store.PurchaseFailed || e.pipelines()[pid]["payment_failed"] != 1 {
		t.Errorf("failed async payment: %s %v", p.Status, e.pipelines()[pid])
	}
}

func TestFaultsNeverAbortAPassAndItConverges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	expect := world(e)
	e.emu.SetFaults(stripeFaults(0.3, 0.05))
	var rep *reconcile.Report
	for i := range 6 {
		rep = e.pass(reconcile.PassOptions{Lists: true, Since: t0.Add(-time.Hour), Pending: true, Retries: true})
		if rep.Converged() {
			t.Logf("converged after %d passes", i+1)
			break
		}
	}
	if !rep.Converged() {
		t.Fatalf("not converged after 6 passes: %d errors, e.g. %+v", len(rep.Errors), rep.Errors[0])
	}
	e.emu.SetFaults(stripeFaults(0, 0))
	e.check(expect)
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	world(e)
	before := e.snapshot()
	e.emu.ResetRequests()
	o := reconcile.PassOptions{Lists: true, Events: true, Since: t0.Add(-time.Hour), Pending: true, Hints: true, Retries: true, DryRun: true}
	rep := e.pass(o)
	if len(rep.Changes) < 250 {
		t.Errorf("dry run reported %d changes; want every difference", len(rep.Changes))
	}
	if after := e.snapshot(); after != before {
		t.Error("dry run changed the database")
	}
	if w := e.emu.WriteRequests(); len(w) != 0 {
		t.Errorf("dry run made %d write requests to Stripe, e.g. %s %s", len(w), w[0].Method, w[0].Path)
	}
}

func TestTwoReplicasPollOneAtATime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	expect := world(e)
	other := e.newReconciler()

	// While one replica holds the poller lock, the other skips.
	conn, err := e.db.Pool.Acquire(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn.Exec(e.ctx, `SELECT pg_advisory_lock($1)`, store.PollerLockKey)
	if _, err := other.RunPass(e.ctx, "incremental", reconcile.Incremental); !errors.Is(err, reconcile.ErrLocked) {
		t.Fatalf("second replica ran while the lock was held: %v", err)
	}
	conn.Exec(e.ctx, `SELECT pg_advisory_unlock($1)`, store.PollerLockKey)
	conn.Release()

	o := reconcile.PassOptions{Lists: true, Since: t0.Add(-time.Hour), Pending: true, Wait: true}
	var wg sync.WaitGroup
	for _, r := range []*reconcile.Reconciler{e.rec, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.RunPass(context.Background(), "deep", o); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	e.check(expect)
}

func TestClaim(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, pid := e.checkout("eve")
	if _, err := e.rec.Claim(e.ctx, sid, reconcile.Claimant{UserID: "eve", Email: "eve@example.com"}); !errors.Is(err, reconcile.ErrNotPaid) {
		t.Fatalf("unpaid claim: %v", err)
	}
	e.pay(sid, false)
	if _, err := e.rec.Claim(e.ctx, sid, reconcile.Claimant{UserID: "mallory", Email: "eve@example.com"}); !errors.Is(err, reconcile.ErrNotYours) {
		t.Fatalf("another user's claim: %v", err)
	}
	if _, err := e.rec.Claim(e.ctx, "cs_test_nope", reconcile.Claimant{UserID: "eve"}); !errors.Is(err, reconcile.ErrUnknownSession) {
		t.Fatalf("unknown session: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	already := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.rec.Claim(e.ctx, sid, reconcile.Claimant{UserID: "eve", Email: "eve@example.com"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if res.AlreadyClaimed {
				already++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if already != 19 {
		t.Errorf("%d of 20 concurrent claims were already claimed; want 19", already)
	}
	if p := e.purchase(pid); p.Status != store.PurchaseCompleted || e.pipelines()[pid]["purchase"] != 1 {
		t.Errorf("after 20 claims: %s, pipelines %v", p.Status, e.pipelines()[pid])
	}
}

func TestPaymentLinkPurchaseIsCreatedAndClaimableByEmail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	s, err := e.emu.CreateSession(stripeemuSession(e.price, "fay@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	e.pay(s.ID, false)
	rep := e.pass(reconcile.Incremental)
	if rep.Counts["created"] != 1 || rep.Counts["completed"] != 1 {
		t.Fatalf("counts %v", rep.Counts)
	}
	p, err := e.db.PurchaseBySession(e.ctx, s.ID)
	if err != nil || p.UserID != nil || p.ProductKey != product || *p.Email != "fay@example.com" {
		t.Fatalf("payment link purchase: %+v %v", p, err)
	}
	if _, err := e.rec.Claim(e.ctx, s.ID, reconcile.Claimant{UserID: "u-fay", Email: "someone@example.com", EmailVerified: true}); !errors.Is(err, reconcile.ErrNotYours) {
		t.Errorf("claim with another email: %v", err)
	}
	res, err := e.rec.Claim(e.ctx, s.ID, reconcile.Claimant{UserID: "u-fay", Email: "FAY@example.com", EmailVerified: true})
	if err != nil || !res.AlreadyClaimed || res.Purchase.UserID == nil || *res.Purchase.UserID != "u-fay" {
		t.Errorf("claim by email: %+v %v", res, err)
	}
	if p := e.purchase(p.ID); p.UserID == nil || *p.UserID != "u-fay" {
		t.Errorf("the claimed purchase's user was not recorded: %v", p.UserID)
	}
	if _, err := e.rec.Claim(e.ctx, s.ID, reconcile.Claimant{UserID: "u-fay", Email: "fay@example.com", EmailVerified: true}); err != nil {
		t.Errorf("claimed again: %v", err)
	}
	if got := e.pipelines()[p.ID]; got["purchase"] != 1 || got["claimed"] != 1 {
		t.Errorf("pipelines %v, want the purchase's and the claim's, once each", got)
	}
}

func TestIdlePassWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	sid, _ := e.checkout("gus")
	e.pay(sid, false)
	e.pass(reconcile.Incremental)
	before := e.snapshot()
	e.emu.ResetRequests()
	e.clock.Advance(time.Minute)
	rep := e.pass(reconcile.Incremental)
	if len(rep.Changes) != 0 || e.snapshot() != before {
		t.Errorf("idle pass changed something: %+v", rep.Changes)
	}
	if reqs := e.emu.Requests(); len(reqs) != 1 || reqs[0].Path != "/v1/events" {
		t.Errorf("idle pass made %d requests; want one events call", len(reqs))
	}
}
