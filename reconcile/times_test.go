package reconcile_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// history is what 30 days of an account look like to a first start: 250
// checkouts, one every ~3 hours, none of which paymentd has a row for
// (half made by its API, their rows lost with the old database; half
// Payment Links). 200 are paid (10 asynchronously, settled at the end),
// 50 expire (half by the clock, half expired early through the API); 40 are
// refunded.
type historical struct {
	session  string
	paidAt   time.Time // the charge's time
	expireAt time.Time // the session's expires_at, for expired ones
	status   store.PurchaseStatus
	amount   int64
	refunded int64
}

func history(e *env) []*historical {
	e.t.Helper()
	var out []*historical
	var paid, async []*historical
	for i := range 250 {
		e.clock.Advance(150 * time.Minute)
		params := stripeemuSession(e.price, fmt.Sprintf("buyer%03d@example.com", i))
		quantity := int64(1 + i%2)
		params.LineItems[0].Quantity = quantity
		if i%2 == 0 {
			params.PaymentLink = ""
			params.Metadata = map[string]string{"user_id": fmt.Sprintf("user%03d", i), "product": product,
				"purchase_id": uuid.NewString()}
		}
		s, err := e.emu.CreateSession(params)
		if err != nil {
			e.t.Fatal(err)
		}
		h := &historical{session: s.ID, amount: 19900 * quantity, expireAt: time.Unix(s.ExpiresAt, 0).UTC()}
		out = append(out, h)
		switch {
		case i%5 == 4 && i%2 == 0: // expires by the clock
			h.status = store.PurchaseExpired
		case i%5 == 4: // expired early through the API, an hour in
			e.clock.Advance(time.Hour)
			if err := e.emu.ExpireSession(s.ID); err != nil {
				e.t.Fatal(err)
			}
			h.status = store.PurchaseExpired
		case i%20 == 3: // asynchronous: submitted now, settled a day later
			h.paidAt = e.clock.Now()
			if err := e.emu.PaySession(s.ID, stripeemu.Pay{Async: true}); err != nil {
				e.t.Fatal(err)
			}
			h.status = store.PurchaseCompleted
			async = append(async, h)
		default:
			e.clock.Advance(7 * time.Minute) // the buyer takes a while to pay
			h.paidAt = e.clock.Now()
			if err := e.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
				e.t.Fatal(err)
			}
			h.status = store.PurchaseCompleted
			paid = append(paid, h)
		}
	}
	e.clock.Advance(25 * time.Hour) // every open session has expired by now
	e.emu.Tick()
	for _, h := range async {
		if err := e.emu.SettleAsync(h.session, true); err != nil {
			e.t.Fatal(err)
		}
	}
	paid = append(paid, async...)
	for i, h := range paid[:40] {
		s, err := e.emu.Session(h.session)
		if err != nil {
			e.t.Fatal(err)
		}
		amount := int64(0)
		h.status, h.refunded = store.PurchaseRefunded, h.amount
		if i%2 == 1 {
			amount = 5000
			h.status, h.refunded = store.PurchasePartiallyRefunded, 5000
		}
		if _, err := e.emu.Refund(s.PaymentIntent.ID, amount); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

func TestFirstStartRecordsHistoryOnStripesTimes(t *testing.T) {
	t.Parallel()
	start := t0
	e := newEnv(t, start)
	hist := history(e)
	e.clock.Advance(time.Hour)
	e.pass(reconcile.Incremental)                                                   // the feed from nothing: fine, but not the backfill
	rep := e.pass(reconcile.PassOptions{Lists: true, Pending: true, Retries: true}) // the deep pass's default window: 30 days
	if !rep.Converged() {
		t.Fatalf("errors: %+v", rep.Errors)
	}
	pipelines := e.pipelines()
	var completed, expired int
	for _, h := range hist {
		p, err := e.db.PurchaseBySession(e.ctx, h.session)
		if err != nil {
			t.Errorf("session %s: %v", h.session, err)
			continue
		}
		if p.Status != h.status || p.AmountTotal != h.amount || p.AmountRefunded != h.refunded || p.Currency != "usd" ||
			int64(p.Quantity)*19900 != h.amount {
			t.Errorf("session %s: %s %d/%d %s x%d; want %s %d/%d usd", h.session, p.Status, p.AmountRefunded, p.AmountTotal,
				p.Currency, p.Quantity, h.status, h.refunded, h.amount)
		}
		switch h.status {
		case store.PurchaseExpired:
			expired++
			if p.ExpiredAt == nil || !p.ExpiredAt.Equal(h.expireAt) || p.CompletedAt != nil {
				t.Errorf("expired session %s: expired_at %v, want its expires_at %s", h.session, p.ExpiredAt, h.expireAt)
			}
			if pipelines[p.ID]["abandoned"] != 1 {
				t.Errorf("expired session %s: pipelines %v", h.session, pipelines[p.ID])
			}
		default:
			completed++
			if p.CompletedAt == nil || !p.CompletedAt.Equal(h.paidAt) {
				t.Errorf("paid session %s: completed_at %v, want Stripe's payment time %s", h.session, p.CompletedAt, h.paidAt)
			}
			if pipelines[p.ID]["purchase"] != 1 {
				t.Errorf("paid session %s: pipelines %v", h.session, pipelines[p.ID])
			}
		}
	}
	if completed != 200 || expired != 50 {
		t.Errorf("%d completed and %d expired; want 200 and 50", completed, expired)
	}
}

func TestPurchaseTimesAreStripesNotTheReconcilers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t0)
	// Paid now, seen a minute later: completed_at is the payment's time.
	paidSession, paidPurchase := e.checkout("ann")
	payTime := e.clock.Now()
	e.pay(paidSession, false)
	// Expired early through the API two hours in, seen a minute later:
	// expired when first seen, long before its expires_at.
	earlySession, earlyPurchase := e.checkout("bob")
	// Expired by the clock, first seen three hours after its expires_at.
	lateSession, latePurchase := e.checkout("cat")
	// An asynchronous payment seen pending, settled two days later: paid
	// when first seen paid, not when it was submitted.
	asyncSession, asyncPurchase := e.checkout("dan")
	e.pay(asyncSession, true)

	e.clock.Advance(time.Minute)
	e.pass(reconcile.Incremental)
	if p := e.purchase(paidPurchase); p.CompletedAt == nil || !p.CompletedAt.Equal(payTime) {
		t.Errorf("completed_at %v, want the payment's %s", p.CompletedAt, payTime)
	}
	e.clock.Advance(2 * time.Hour)
	if err := e.emu.ExpireSession(earlySession); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	seen := e.clock.Now()
	e.pass(reconcile.Incremental)
	if p := e.purchase(earlyPurchase); p.Status != store.PurchaseExpired || p.ExpiredAt == nil || !p.ExpiredAt.Equal(seen) {
		t.Errorf("expired early: %s at %v, want expired at %s (first seen)", p.Status, p.ExpiredAt, seen)
	}
	e.clock.Advance(2 * 24 * time.Hour)
	if err := e.emu.SettleAsync(asyncSession, true); err != nil {
		t.Fatal(err)
	}
	e.emu.Tick()
	e.clock.Advance(time.Minute)
	seen = e.clock.Now()
	e.pass(reconcile.Incremental)
	s, _ := e.emu.Session(lateSession)
	if p := e.purchase(latePurchase); p.Status != store.PurchaseExpired || p.ExpiredAt == nil ||
		!p.ExpiredAt.Equal(time.Unix(s.ExpiresAt, 0)) {
		t.Errorf("expired by the clock: %s at %v, want its expires_at %s", p.Status, p.ExpiredAt, time.Unix(s.ExpiresAt, 0).UTC())
	}
	if p := e.purchase(asyncPurchase); p.Status != store.PurchaseCompleted || p.CompletedAt == nil || !p.CompletedAt.Equal(seen) {
		t.Errorf("settled async payment: %s at %v, want completed when first seen paid, %s", p.Status, p.CompletedAt, seen)
	}
}
