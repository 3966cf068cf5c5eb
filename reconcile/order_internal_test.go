package reconcile

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// TestDecideOrder: what an order becomes, and what happens to its stock,
// for each state of its intent or session; a decision applied once
// decides nothing the second time.
func TestDecideOrder(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	paidAt := now.Add(-time.Hour)
	msg := "generic_decline"
	embedded := store.Order{ID: "o1", UIMode: store.UIModeEmbedded, Status: store.OrderPending, AmountTotal: 1000}
	hosted := store.Order{ID: "o2", UIMode: store.UIModeHosted, Status: store.OrderPending, AmountTotal: 1000}
	with := func(o store.Order, edit func(*store.Order)) store.Order { edit(&o); return o }
	intent := func(st stripe.PaymentIntentStatus, e *stripe.Error) *stripe.PaymentIntent {
		pi := &stripe.PaymentIntent{ID: "pi_1", Status: st, Created: now.Add(-2 * time.Hour).Unix(), LastPaymentError: e}
		if st == stripe.PaymentIntentStatusSucceeded {
			pi.LatestCharge = &stripe.Charge{ID: "ch_1", Created: paidAt.Unix()}
		}
		return pi
	}
	session := func(st stripe.CheckoutSessionStatus, ps stripe.CheckoutSessionPaymentStatus) *stripe.CheckoutSession {
		return &stripe.CheckoutSession{ID: "cs_1", Status: st, PaymentStatus: ps, AmountSubtotal: 1200, AmountTotal: 960,
			TotalDetails:  &stripe.CheckoutSessionTotalDetails{AmountDiscount: 240},
			PaymentIntent: &stripe.PaymentIntent{ID: "pi_2", Created: paidAt.Unix()}}
	}
	declined := &stripe.Error{DeclineCode: "generic_decline", Msg: "Your card was declined."}
	for _, c := range []struct {
		name   string
		o      store.Order
		f      orderFacts
		status store.OrderStatus
		what   string
		stock  stockMove
		failed bool
	}{
		{"intent paid", embedded, orderFacts{pi: intent(stripe.PaymentIntentStatusSucceeded, nil)}, store.OrderPaid, whatPaid, stockCommit, false},
		{"intent paid again", with(embedded, func(o *store.Order) { o.Status, o.PaidAt = store.OrderPaid, &paidAt }),
			orderFacts{pi: intent(stripe.PaymentIntentStatusSucceeded, nil)}, store.OrderPaid, "", stockKeep, false},
		{"late payment of a canceled order", with(embedded, func(o *store.Order) { o.Status, o.EndedAt = store.OrderCanceled, &now }),
			orderFacts{pi: intent(stripe.PaymentIntentStatusSucceeded, nil)}, store.OrderPaid, whatPaid, stockCommit, false},
		{"processing", embedded, orderFacts{pi: intent(stripe.PaymentIntentStatusProcessing, nil)}, store.OrderProcessing, whatProcessing, stockKeep, false},
		{"canceled", embedded, orderFacts{pi: intent(stripe.PaymentIntentStatusCanceled, nil)}, store.OrderCanceled, whatCanceled, stockRelease, false},
		{"canceled after paid", with(embedded, func(o *store.Order) { o.Status, o.PaidAt = store.OrderPaid, &paidAt }),
			orderFacts{pi: intent(stripe.PaymentIntentStatusCanceled, nil)}, store.OrderPaid, "", stockKeep, false},
		{"declined", embedded, orderFacts{pi: intent(stripe.PaymentIntentStatusRequiresPaymentMethod, declined)},
			store.OrderPending, whatPaymentFailed, stockKeep, true},
		{"declined, seen again", with(embedded, func(o *store.Order) { o.LastPaymentError, o.FailedAttempts = &msg, 1 }),
			orderFacts{pi: intent(stripe.PaymentIntentStatusRequiresPaymentMethod, declined)}, store.OrderPending, "", stockKeep, false},
		{"requires action", embedded, orderFacts{pi: intent(stripe.PaymentIntentStatusRequiresAction, nil)}, store.OrderPending, "", stockKeep, false},
		{"a session is not an embedded order's", embedded, orderFacts{s: session(stripe.CheckoutSessionStatusExpired, "unpaid")},
			store.OrderPending, "", stockKeep, false},
		{"session paid", hosted, orderFacts{s: session(stripe.CheckoutSessionStatusComplete, stripe.CheckoutSessionPaymentStatusPaid)},
			store.OrderPaid, whatPaid, stockCommit, false},
		{"session expired", hosted, orderFacts{s: session(stripe.CheckoutSessionStatusExpired, stripe.CheckoutSessionPaymentStatusUnpaid)},
			store.OrderExpired, whatExpired, stockRelease, false},
		{"session open", hosted, orderFacts{s: session(stripe.CheckoutSessionStatusOpen, stripe.CheckoutSessionPaymentStatusUnpaid)},
			store.OrderPending, "", stockKeep, false},
		{"an intent is not a hosted order's", hosted, orderFacts{pi: intent(stripe.PaymentIntentStatusSucceeded, nil)},
			store.OrderPending, "", stockKeep, false},
	} {
		d := decideOrder(c.o, c.f, nil, now)
		if d.next.Status != c.status || d.what != c.what || d.stock != c.stock || d.failed != c.failed {
			t.Errorf("%s: %s %q stock %d failed %v; want %s %q stock %d failed %v", c.name, d.next.Status, d.what, d.stock,
				d.failed, c.status, c.what, c.stock, c.failed)
			continue
		}
		if again := decideOrder(d.next, c.f, nil, now); again.what != "" || again.stock != stockKeep || !equalOrders(again.next, d.next) {
			t.Errorf("%s: applied twice decides %q stock %d", c.name, again.what, again.stock)
		}
		if c.what == whatPaid && c.f.pi != nil && (d.next.PaidAt == nil || !d.next.PaidAt.Equal(paidAt) || d.next.StripeChargeID == nil) {
			t.Errorf("%s: paid at %v charge %v, want the charge's", c.name, d.next.PaidAt, d.next.StripeChargeID)
		}
		if c.what == whatPaid && c.f.s != nil && (d.next.AmountTotal != 960 || d.next.AmountDiscount != 240 ||
			d.next.StripePaymentIntentID == nil || *d.next.StripePaymentIntentID != "pi_2") {
			t.Errorf("%s: totals %d/%d intent %v, want Stripe's", c.name, d.next.AmountTotal, d.next.AmountDiscount, d.next.StripePaymentIntentID)
		}
	}
}

// TestDecideOrderDispute: a dispute newly lost refunds its paid order in
// full (once: a loss already recorded changes nothing more); an open or won
// dispute changes nothing on the order.
func TestDecideOrderDispute(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	paid := store.Order{ID: "o1", Status: store.OrderPaid, AmountTotal: 1000}
	partly := store.Order{ID: "o1", Status: store.OrderPartiallyRefunded, AmountTotal: 1000, AmountRefunded: 300}
	refunded := store.Order{ID: "o1", Status: store.OrderRefunded, AmountTotal: 1000}
	dispute := func(st stripe.DisputeStatus) *stripe.Dispute {
		return &stripe.Dispute{ID: "dp_1", Status: st, Amount: 1000, Currency: "usd", Reason: "fraudulent",
			Created: now.Add(-time.Hour).Unix()}
	}
	recorded := func(st string) *store.OrderDispute {
		return &store.OrderDispute{ID: "dp_1", OrderID: "o1", Amount: 1000, Currency: "usd", Status: st,
			Reason: "fraudulent", CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Minute)}
	}
	for _, c := range []struct {
		name     string
		o        store.Order
		d        *stripe.Dispute
		recorded *store.OrderDispute
		lost     bool
		status   store.OrderStatus
	}{
		{"opened", paid, dispute(stripe.DisputeStatusNeedsResponse), nil, false, store.OrderPaid},
		{"lost, first seen", paid, dispute(stripe.DisputeStatusLost), nil, true, store.OrderRefunded},
		{"lost after it was open", paid, dispute(stripe.DisputeStatusLost), recorded("needs_response"), true, store.OrderRefunded},
		{"lost, partly refunded before", partly, dispute(stripe.DisputeStatusLost), recorded("under_review"), true, store.OrderRefunded},
		{"lost, seen again", store.Order{ID: "o1", Status: store.OrderRefunded, AmountTotal: 1000},
			dispute(stripe.DisputeStatusLost), recorded("lost"), false, store.OrderRefunded},
		{"won", paid, dispute(stripe.DisputeStatusWon), recorded("under_review"), false, store.OrderPaid},
		// A list page older than the recorded outcome: the row keeps it
		// (so the order's loss is not forgotten) and nothing happens.
		{"stale needs_response after lost", refunded, dispute(stripe.DisputeStatusNeedsResponse), recorded("lost"), false, store.OrderRefunded},
		{"stale under_review after won", paid, dispute(stripe.DisputeStatusUnderReview), recorded("won"), false, store.OrderPaid},
		{"won after lost: lost kept", refunded, dispute(stripe.DisputeStatusWon), recorded("lost"), false, store.OrderRefunded},
		{"lost after won: won kept", paid, dispute(stripe.DisputeStatusLost), recorded("won"), false, store.OrderPaid},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := decideOrderDispute(c.o, c.d, c.recorded, now)
			if d.lost != c.lost || d.next.Status != c.status {
				t.Errorf("lost %v, status %s; want %v, %s", d.lost, d.next.Status, c.lost, c.status)
			}
			if d.next.AmountRefunded != c.o.AmountRefunded {
				t.Errorf("refunded %d, want the charge's %d", d.next.AmountRefunded, c.o.AmountRefunded)
			}
			status := string(c.d.Status)
			if c.recorded != nil && disputeFinal(c.recorded.Status) {
				status = c.recorded.Status // kept
			}
			if d.row.Status != status || d.row.OrderID != "o1" || d.row.Amount != 1000 {
				t.Errorf("row %+v, want status %s", d.row, status)
			}
			if c.recorded != nil && !d.row.CreatedAt.Equal(c.recorded.CreatedAt) {
				t.Errorf("row created %v, want the recorded %v", d.row.CreatedAt, c.recorded.CreatedAt)
			}
		})
	}
}

// TestDecideOrderRefunds: an order's refunded amount and status are the
// charge's; each refund that newly counts is an event whose cumulative is
// what the current snapshot's live refunds add up to (a refund recorded
// live that has since failed counts for nothing), and a refund recorded
// live that is now failed or canceled is a reversal. The same snapshot
// seen again decides nothing.
func TestDecideOrderRefunds(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	paid := store.Order{ID: "o1", Status: store.OrderPaid, AmountTotal: 100, Currency: "usd"}
	with := func(o store.Order, st store.OrderStatus, refunded int64) store.Order {
		o.Status, o.AmountRefunded = st, refunded
		return o
	}
	refund := func(id string, amount int64, st stripe.RefundStatus, age time.Duration) *stripe.Refund {
		return &stripe.Refund{ID: id, Amount: amount, Currency: "usd", Status: st, Created: now.Add(-age).Unix()}
	}
	recorded := func(id string, amount int64, st stripe.RefundStatus, age time.Duration) store.OrderRefund {
		return store.OrderRefund{ID: id, OrderID: "o1", Amount: amount, Currency: "usd", Status: string(st),
			CreatedAt: time.Unix(now.Add(-age).Unix(), 0).UTC()}
	}
	const (
		succeeded = stripe.RefundStatusSucceeded
		pending   = stripe.RefundStatusPending
		failed    = stripe.RefundStatusFailed
		canceled  = stripe.RefundStatusCanceled
	)
	for _, c := range []struct {
		name     string
		o        store.Order
		charged  int64 // the charge's amount_refunded
		refunds  []*stripe.Refund
		recorded []store.OrderRefund
		status   store.OrderStatus
		events   []string // id what cumulative
		upserts  int
	}{
		{"a partial refund", paid, 50, []*stripe.Refund{refund("re_1", 50, succeeded, 2*time.Hour)}, nil,
			store.OrderPartiallyRefunded, []string{"re_1 partially_refunded 50"}, 1},
		{"the rest refunded", with(paid, store.OrderPartiallyRefunded, 50), 100,
			[]*stripe.Refund{refund("re_1", 50, succeeded, 2*time.Hour), refund("re_2", 50, succeeded, time.Hour)},
			[]store.OrderRefund{recorded("re_1", 50, succeeded, 2*time.Hour)},
			store.OrderRefunded, []string{"re_2 refunded 100"}, 1},
		{"seen again", with(paid, store.OrderRefunded, 100), 100,
			[]*stripe.Refund{refund("re_1", 50, succeeded, 2*time.Hour), refund("re_2", 50, succeeded, time.Hour)},
			[]store.OrderRefund{recorded("re_1", 50, succeeded, 2*time.Hour), recorded("re_2", 50, succeeded, time.Hour)},
			store.OrderRefunded, nil, 0},
		{"a refund failed when first seen", paid, 0, []*stripe.Refund{refund("re_1", 100, failed, time.Hour)}, nil,
			store.OrderPaid, nil, 1},
		{"a full refund recorded pending, now failed", with(paid, store.OrderRefunded, 100), 0,
			[]*stripe.Refund{refund("re_1", 100, failed, time.Hour)},
			[]store.OrderRefund{recorded("re_1", 100, pending, time.Hour)},
			store.OrderPaid, []string{"re_1 refund_reversed 0"}, 1},
		{"a partial refund recorded succeeded, now canceled", with(paid, store.OrderPartiallyRefunded, 30), 0,
			[]*stripe.Refund{refund("re_1", 30, canceled, time.Hour)},
			[]store.OrderRefund{recorded("re_1", 30, succeeded, time.Hour)},
			store.OrderPaid, []string{"re_1 refund_reversed 0"}, 1},
		{"a failure seen again", paid, 0, []*stripe.Refund{refund("re_1", 100, failed, time.Hour)},
			[]store.OrderRefund{recorded("re_1", 100, failed, time.Hour)}, store.OrderPaid, nil, 0},
		{"a recorded 50 now failed and a new 50", with(paid, store.OrderPartiallyRefunded, 50), 50,
			[]*stripe.Refund{refund("re_1", 50, failed, 2*time.Hour), refund("re_2", 50, succeeded, time.Hour)},
			[]store.OrderRefund{recorded("re_1", 50, succeeded, 2*time.Hour)},
			store.OrderPartiallyRefunded, []string{"re_1 refund_reversed 0", "re_2 partially_refunded 50"}, 2},
		{"a failed 50 first seen with a new 50", paid, 50,
			[]*stripe.Refund{refund("re_1", 50, failed, 2*time.Hour), refund("re_2", 50, succeeded, time.Hour)}, nil,
			store.OrderPartiallyRefunded, []string{"re_2 partially_refunded 50"}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := &stripe.Charge{ID: "ch_1", AmountRefunded: c.charged}
			next, upserts, events := decideOrderRefunds(c.o, ch, c.refunds, c.recorded, false)
			if next.Status != c.status || next.AmountRefunded != c.charged {
				t.Errorf("order %s refunded %d; want %s %d", next.Status, next.AmountRefunded, c.status, c.charged)
			}
			var got []string
			for _, e := range events {
				got = append(got, fmt.Sprintf("%s %s %d", e.r.ID, e.what, e.cumulative))
			}
			if !slices.Equal(got, c.events) {
				t.Errorf("events %q, want %q", got, c.events)
			}
			if len(upserts) != c.upserts {
				t.Errorf("%d upserts, want %d", len(upserts), c.upserts)
			}
			// Applied, the same snapshot decides nothing more.
			var rows []store.OrderRefund
			for _, re := range c.refunds {
				rows = append(rows, store.OrderRefund{ID: re.ID, OrderID: "o1", Amount: re.Amount, Currency: "usd",
					Status: string(re.Status), CreatedAt: time.Unix(re.Created, 0).UTC()})
			}
			again, upserts, events := decideOrderRefunds(next, ch, c.refunds, rows, false)
			if len(upserts) != 0 || len(events) != 0 || !equalOrders(again, next) {
				t.Errorf("applied twice: %d upserts, %d events, %s", len(upserts), len(events), again.Status)
			}
		})
	}
}
