package reconcile

// Table tests of the reconciler's pure decisions: what a Stripe object
// means for a purchase, without a database or Stripe.

import (
	"slices"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

const ourPurchaseID = "0b6c3f5e-8d1a-4c2b-9f3e-1a2b3c4d5e6f"

func item(lookupKey string, quantity int64) *stripe.LineItem {
	return &stripe.LineItem{Quantity: quantity, Price: &stripe.Price{ID: "price_" + lookupKey, LookupKey: lookupKey}}
}

func TestAdopt(t *testing.T) {
	t.Parallel()
	products := map[string]config.Product{"pro": {Key: "pro"}, "team": {Key: "team"},
		"plus": {Key: "plus", Mode: config.ModeSubscription}}
	widget := "7d3c1b2a-5e4f-4a6b-8c9d-0e1f2a3b4c5d" // another integration's purchase_id, a UUID too
	payment, setup, subscription := stripe.CheckoutSessionModePayment, stripe.CheckoutSessionModeSetup, stripe.CheckoutSessionModeSubscription
	for _, tc := range []struct {
		name     string
		mode     stripe.CheckoutSessionMode
		metadata map[string]string
		items    []*stripe.LineItem
		want     adoption
	}{
		{"our API's session", payment, map[string]string{"purchase_id": ourPurchaseID, "product": "pro"},
			[]*stripe.LineItem{item("pro", 2)}, adoption{productKey: "pro", quantity: 2}},
		{"a product no longer configured: left alone", payment, map[string]string{"purchase_id": ourPurchaseID, "product": "retired"},
			[]*stripe.LineItem{item("retired", 1)}, adoption{skip: SkipUnknownProduct}},
		{"no product in metadata: judged by its line items", payment, map[string]string{"purchase_id": ourPurchaseID},
			[]*stripe.LineItem{item("", 1), item("other", 4), item("team", 3)}, adoption{productKey: "team", quantity: 3}},
		{"no product anywhere: left alone", payment, map[string]string{"purchase_id": ourPurchaseID},
			[]*stripe.LineItem{item("", 5)}, adoption{skip: SkipNoLookupKey}},
		{"another app's purchase_id and product", payment, map[string]string{"purchase_id": widget, "product": "widget",
			"user_id": "u1"}, []*stripe.LineItem{item("widget", 1)}, adoption{skip: SkipUnknownProduct}},
		{"another app's purchase_id, ad-hoc price", payment, map[string]string{"purchase_id": widget},
			[]*stripe.LineItem{item("", 1)}, adoption{skip: SkipNoLookupKey}},
		{"another app's purchase_id, line items not known", payment, map[string]string{"purchase_id": widget, "product": "widget"},
			nil, adoption{skip: SkipNoLookupKey}},
		{"another app's purchase_id, setup mode", setup, map[string]string{"purchase_id": widget, "product": "widget"},
			nil, adoption{skip: SkipNotPaymentMode}},
		{"another app's purchase_id, our product's price: a sale of our product", payment,
			map[string]string{"purchase_id": widget, "product": "widget"}, []*stripe.LineItem{item("pro", 2)},
			adoption{productKey: "pro", quantity: 2}},
		{"a subscription product named in metadata is not a one-time product", payment,
			map[string]string{"purchase_id": ourPurchaseID, "product": "plus"}, []*stripe.LineItem{item("plus_monthly", 1)},
			adoption{skip: SkipUnknownProduct}},
		{"ours, line items not known", payment, map[string]string{"purchase_id": ourPurchaseID, "product": "pro"},
			nil, adoption{productKey: "pro", quantity: 1}},
		{"ours wins over the mode", subscription, map[string]string{"purchase_id": ourPurchaseID, "product": "pro"},
			[]*stripe.LineItem{item("pro", 1)}, adoption{productKey: "pro", quantity: 1}},
		{"a Payment Link for our product", payment, nil,
			[]*stripe.LineItem{item("stickers", 1), item("pro", 3)}, adoption{productKey: "pro", quantity: 3}},
		{"purchase_id that is not ours (not a UUID)", payment, map[string]string{"purchase_id": "order-17"},
			[]*stripe.LineItem{item("pro", 1)}, adoption{productKey: "pro", quantity: 1}},
		{"purchase_id that is not ours, other product", payment, map[string]string{"purchase_id": "order-17", "product": "pro"},
			[]*stripe.LineItem{item("stickers", 1)}, adoption{skip: SkipUnknownProduct}},
		{"donation link", payment, nil, []*stripe.LineItem{item("", 1)}, adoption{skip: SkipNoLookupKey}},
		{"no line items", payment, nil, nil, adoption{skip: SkipNoLookupKey}},
		{"another product", payment, nil, []*stripe.LineItem{item("stickers", 2)}, adoption{skip: SkipUnknownProduct}},
		{"save a card", setup, nil, nil, adoption{skip: SkipNotPaymentMode}},
		{"a subscription of our product's price", subscription, nil, []*stripe.LineItem{item("pro", 1)},
			adoption{skip: SkipNotPaymentMode}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stripe.CheckoutSession{ID: "cs_test_1", Mode: tc.mode, Metadata: tc.metadata}
			if got := adopt(s, tc.items, products); got != tc.want {
				t.Errorf("adopt = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func refund(id string, created, amount int64, status stripe.RefundStatus) *stripe.Refund {
	return &stripe.Refund{ID: id, Created: created, Amount: amount, Currency: "usd", Status: status}
}

func TestDecideCharge(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	paid := store.Purchase{ID: "p1", Status: store.PurchaseCompleted, AmountTotal: 10000, Currency: "usd"}
	rec := func(id string, amount int64, status string) store.Refund {
		return store.Refund{ID: id, PurchaseID: "p1", Amount: amount, Currency: "usd", Status: status, CreatedAt: now}
	}
	succeeded, failed := stripe.RefundStatusSucceeded, stripe.RefundStatusFailed
	type ev struct {
		id         string
		what       string
		cumulative int64
	}
	for _, tc := range []struct {
		name     string
		p        store.Purchase
		refunded int64 // the charge's amount_refunded
		disputed bool
		refunds  []*stripe.Refund
		recorded []store.Refund
		lost     bool
		status   store.PurchaseStatus
		upserts  []string
		events   []ev
		what     string
	}{
		{name: "nothing refunded", p: paid, status: store.PurchaseCompleted},
		{name: "a partial refund", p: paid, refunded: 3000, refunds: []*stripe.Refund{refund("re_1", 10, 3000, succeeded)},
			status: store.PurchasePartiallyRefunded, upserts: []string{"re_1"}, events: []ev{{"re_1", whatPartiallyRefunded, 3000}}},
		{name: "two partials reaching the total, listed newest first", p: paid, refunded: 10000,
			refunds: []*stripe.Refund{refund("re_2", 20, 7000, succeeded), refund("re_1", 10, 3000, succeeded)},
			status:  store.PurchaseRefunded, upserts: []string{"re_1", "re_2"},
			events: []ev{{"re_1", whatPartiallyRefunded, 3000}, {"re_2", whatRefunded, 10000}}},
		{name: "already recorded: nothing new", p: store.Purchase{ID: "p1", Status: store.PurchaseRefunded, AmountTotal: 10000,
			AmountRefunded: 10000, Currency: "usd"}, refunded: 10000,
			refunds: []*stripe.Refund{refund("re_1", 10, 10000, succeeded)}, recorded: []store.Refund{rec("re_1", 10000, "succeeded")},
			status: store.PurchaseRefunded},
		{name: "a recorded refund failed: reversed", p: store.Purchase{ID: "p1", Status: store.PurchaseRefunded, AmountTotal: 10000,
			AmountRefunded: 10000, Currency: "usd"}, refunded: 0,
			refunds: []*stripe.Refund{refund("re_1", 10, 10000, failed)}, recorded: []store.Refund{rec("re_1", 10000, "succeeded")},
			status: store.PurchaseCompleted, upserts: []string{"re_1"}, events: []ev{{"re_1", whatRefundReversed, 0}}},
		{name: "a refund first seen already failed", p: paid, refunds: []*stripe.Refund{refund("re_1", 10, 10000, failed)},
			status: store.PurchaseCompleted, upserts: []string{"re_1"}},
		{name: "pending becomes succeeded: row updated, no second event", p: store.Purchase{ID: "p1",
			Status: store.PurchasePartiallyRefunded, AmountTotal: 10000, AmountRefunded: 2000, Currency: "usd"}, refunded: 2000,
			refunds: []*stripe.Refund{refund("re_1", 10, 2000, succeeded)}, recorded: []store.Refund{rec("re_1", 2000, "pending")},
			status: store.PurchasePartiallyRefunded, upserts: []string{"re_1"}},
		{name: "the amount moved back without a refund row", p: store.Purchase{ID: "p1", Status: store.PurchaseRefunded,
			AmountTotal: 10000, AmountRefunded: 10000, Currency: "usd"}, status: store.PurchaseCompleted, what: "completed"},
		{name: "a lost dispute counts as refunded", p: paid, disputed: true, lost: true, status: store.PurchaseRefunded, what: "refunded"},
		{name: "an unpaid purchase keeps its status", p: store.Purchase{ID: "p1", Status: store.PurchaseExpired, AmountTotal: 10000,
			Currency: "usd"}, status: store.PurchaseExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recorded := map[string]store.Refund{}
			for _, r := range tc.recorded {
				recorded[r.ID] = r
			}
			ch := &stripe.Charge{ID: "ch_1", AmountRefunded: tc.refunded, Disputed: tc.disputed}
			d := decideCharge(tc.p, ch, tc.refunds, recorded, tc.lost, now)
			if d.next.Status != tc.status || d.next.AmountRefunded != tc.refunded || d.next.StripeChargeID == nil ||
				*d.next.StripeChargeID != "ch_1" || d.next.Disputed != (tc.disputed || tc.p.Disputed) {
				t.Errorf("next = %s refunded %d charge %v disputed %v; want %s refunded %d", d.next.Status, d.next.AmountRefunded,
					d.next.StripeChargeID, d.next.Disputed, tc.status, tc.refunded)
			}
			var upserts []string
			for _, r := range d.upserts {
				upserts = append(upserts, r.ID)
			}
			if !slices.Equal(upserts, tc.upserts) {
				t.Errorf("upserts = %v, want %v", upserts, tc.upserts)
			}
			var events []ev
			for _, e := range d.events {
				events = append(events, ev{e.refund.ID, e.what, e.cumulative})
			}
			if !slices.Equal(events, tc.events) {
				t.Errorf("events = %v, want %v", events, tc.events)
			}
			if d.what != tc.what {
				t.Errorf("what = %q, want %q", d.what, tc.what)
			}
		})
	}
}

func TestDecideDispute(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	paid := store.Purchase{ID: "p1", Status: store.PurchaseCompleted, AmountTotal: 10000, Currency: "usd"}
	dispute := func(status stripe.DisputeStatus) *stripe.Dispute {
		return &stripe.Dispute{ID: "dp_1", Amount: 10000, Currency: "usd", Status: status, Reason: "fraudulent", Created: 5}
	}
	row := func(status string) *store.Dispute {
		return &store.Dispute{ID: "dp_1", PurchaseID: "p1", Amount: 10000, Currency: "usd", Status: status}
	}
	refunded := paid
	refunded.Status, refunded.Disputed = store.PurchaseRefunded, true
	for _, tc := range []struct {
		name                string
		p                   *store.Purchase // paid when nil
		d                   *stripe.Dispute
		recorded            *store.Dispute
		write, opened, lost bool
		status              store.PurchaseStatus
		conflict            bool
	}{
		{"opened", nil, dispute(stripe.DisputeStatusNeedsResponse), nil, true, true, false, store.PurchaseCompleted, false},
		{"unchanged", nil, dispute(stripe.DisputeStatusNeedsResponse), row("needs_response"), false, false, false, store.PurchaseCompleted, false},
		{"under review", nil, dispute(stripe.DisputeStatusUnderReview), row("needs_response"), true, false, false, store.PurchaseCompleted, false},
		{"lost", nil, dispute(stripe.DisputeStatusLost), row("under_review"), true, false, true, store.PurchaseRefunded, false},
		{"first seen lost", nil, dispute(stripe.DisputeStatusLost), nil, true, true, true, store.PurchaseRefunded, false},
		{"won", nil, dispute(stripe.DisputeStatusWon), row("under_review"), true, false, false, store.PurchaseCompleted, false},
		{"inquiry closed", nil, dispute(stripe.DisputeStatusWarningClosed), row("warning_under_review"), true, false, false, store.PurchaseCompleted, false},
		// A list page older than the loss a hint recorded: the purchase
		// stays refunded and the row lost.
		{"stale needs_response after lost", &refunded, dispute(stripe.DisputeStatusNeedsResponse), row("lost"), false, false, false, store.PurchaseRefunded, false},
		{"stale under_review after lost", &refunded, dispute(stripe.DisputeStatusUnderReview), row("lost"), false, false, false, store.PurchaseRefunded, false},
		{"stale warning after lost", &refunded, dispute(stripe.DisputeStatusWarningUnderReview), row("lost"), false, false, false, store.PurchaseRefunded, false},
		{"stale under_review after won", nil, dispute(stripe.DisputeStatusUnderReview), row("won"), false, false, false, store.PurchaseCompleted, false},
		{"stale warning after warning_closed", nil, dispute(stripe.DisputeStatusWarningNeedsResponse), row("warning_closed"), false, false, false, store.PurchaseCompleted, false},
		// One final status for another is not expected from Stripe: the
		// recorded one stays and the operator is told.
		{"won after lost", &refunded, dispute(stripe.DisputeStatusWon), row("lost"), false, false, false, store.PurchaseRefunded, true},
		{"lost after won", nil, dispute(stripe.DisputeStatusLost), row("won"), false, false, false, store.PurchaseCompleted, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := paid
			if tc.p != nil {
				p = *tc.p
			}
			d := decideDispute(p, tc.d, tc.recorded, now)
			if d.write != tc.write || d.opened != tc.opened || d.lost != tc.lost || d.conflict != tc.conflict {
				t.Errorf("write %v opened %v lost %v conflict %v; want %v %v %v %v", d.write, d.opened, d.lost, d.conflict,
					tc.write, tc.opened, tc.lost, tc.conflict)
			}
			if d.write && (d.next.Status != tc.status || !d.next.Disputed) {
				t.Errorf("next = %s disputed %v; want %s disputed", d.next.Status, d.next.Disputed, tc.status)
			}
			if !d.write && !equalPurchases(d.next, p) {
				t.Errorf("an unchanged dispute changed the purchase: %+v", d.next)
			}
			if !d.write && tc.recorded != nil && d.row.Status != tc.recorded.Status {
				t.Errorf("row status %s, want the recorded %s kept", d.row.Status, tc.recorded.Status)
			}
		})
	}
}

func TestNextSessionStateTimes(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	unix := func(d time.Duration) int64 { return now.Add(d).Unix() }
	pending := store.Purchase{ID: "p1", Status: store.PurchasePending, Currency: "usd"}
	piID := "pi_1"
	waitingAsync := pending
	waitingAsync.StripePaymentIntentID = &piID
	paidSession := func(chargeAt, intentAt int64) *stripe.CheckoutSession {
		s := &stripe.CheckoutSession{ID: "cs_1", Status: stripe.CheckoutSessionStatusComplete,
			PaymentStatus: stripe.CheckoutSessionPaymentStatusPaid, ExpiresAt: unix(20 * time.Hour), Currency: "usd"}
		if intentAt != 0 {
			s.PaymentIntent = &stripe.PaymentIntent{ID: piID, Status: stripe.PaymentIntentStatusSucceeded, Created: intentAt}
			if chargeAt != 0 {
				s.PaymentIntent.LatestCharge = &stripe.Charge{ID: "ch_1", Created: chargeAt}
			}
		}
		return s
	}
	free := paidSession(0, 0)
	free.PaymentStatus = stripe.CheckoutSessionPaymentStatusNoPaymentRequired
	oldFree := paidSession(0, 0)
	oldFree.PaymentStatus, oldFree.ExpiresAt = stripe.CheckoutSessionPaymentStatusNoPaymentRequired, unix(-30*24*time.Hour)
	expired := func(expiresAt int64) *stripe.CheckoutSession {
		return &stripe.CheckoutSession{ID: "cs_1", Status: stripe.CheckoutSessionStatusExpired, ExpiresAt: expiresAt}
	}
	alreadyExpired := pending
	alreadyExpired.Status, alreadyExpired.ExpiredAt = store.PurchaseExpired, at(-48*time.Hour)
	legacyExpired := pending
	legacyExpired.Status = store.PurchaseExpired
	for _, tc := range []struct {
		name               string
		p                  store.Purchase
		s                  *stripe.CheckoutSession
		what               string
		completed, expired *time.Time
	}{
		{"paid: the charge's time", pending, paidSession(unix(-10*time.Minute), unix(-11*time.Minute)), whatCompleted, at(-10 * time.Minute), nil},
		{"paid, no charge expanded: the intent's time", pending, paidSession(0, unix(-11*time.Minute)), whatCompleted, at(-11 * time.Minute), nil},
		{"paid long ago (a backfill)", pending, paidSession(unix(-20*24*time.Hour), unix(-20*24*time.Hour)), whatCompleted, at(-20 * 24 * time.Hour), nil},
		{"a charge time ahead of ours: now", pending, paidSession(unix(time.Minute), unix(time.Minute)), whatCompleted, at(0), nil},
		{"an async payment seen waiting: when first seen paid", waitingAsync, paidSession(unix(-72*time.Hour), unix(-72*time.Hour)), whatCompleted, at(0), nil},
		{"nothing to pay, fresh: now", pending, free, whatCompleted, at(0), nil},
		{"nothing to pay, long expired: its expiry at the latest", pending, oldFree, whatCompleted, at(-30 * 24 * time.Hour), nil},
		{"expired early, seen now", pending, expired(unix(20 * time.Hour)), whatExpired, nil, at(0)},
		{"expired by the clock, seen late", pending, expired(unix(-3 * time.Hour)), whatExpired, nil, at(-3 * time.Hour)},
		{"expired and recorded: kept", alreadyExpired, expired(unix(-3 * time.Hour)), "", nil, at(-48 * time.Hour)},
		{"expired before expired_at existed: filled in", legacyExpired, expired(unix(-3 * time.Hour)), "", nil, at(-3 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, what := nextSessionState(tc.p, sessionFacts{s: tc.s, state: stateOf(tc.s), paidAt: paidAt(tc.s)}, now)
			if what != tc.what {
				t.Errorf("what = %q, want %q", what, tc.what)
			}
			same := func(a, b *time.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(*b)) }
			if !same(next.CompletedAt, tc.completed) || !same(next.ExpiredAt, tc.expired) {
				t.Errorf("completed_at %v expired_at %v; want %v %v", next.CompletedAt, next.ExpiredAt, tc.completed, tc.expired)
			}
		})
	}
}

func TestStateOf(t *testing.T) {
	t.Parallel()
	complete, open, expiredStatus := stripe.CheckoutSessionStatusComplete, stripe.CheckoutSessionStatusOpen, stripe.CheckoutSessionStatusExpired
	paid, unpaid := stripe.CheckoutSessionPaymentStatusPaid, stripe.CheckoutSessionPaymentStatusUnpaid
	intent := func(s stripe.PaymentIntentStatus) *stripe.PaymentIntent {
		return &stripe.PaymentIntent{ID: "pi_1", Status: s}
	}
	for _, tc := range []struct {
		status  stripe.CheckoutSessionStatus
		payment stripe.CheckoutSessionPaymentStatus
		pi      *stripe.PaymentIntent
		want    sessionState
	}{
		{open, unpaid, nil, sessionOpen},
		{complete, paid, intent(stripe.PaymentIntentStatusSucceeded), sessionPaid},
		{complete, stripe.CheckoutSessionPaymentStatusNoPaymentRequired, nil, sessionPaid},
		{complete, unpaid, intent(stripe.PaymentIntentStatusProcessing), sessionUnpaid},
		{complete, unpaid, &stripe.PaymentIntent{ID: "pi_1"}, sessionUnpaid},
		{complete, unpaid, intent(stripe.PaymentIntentStatusRequiresPaymentMethod), sessionFailed},
		{complete, unpaid, intent(stripe.PaymentIntentStatusCanceled), sessionFailed},
		{expiredStatus, unpaid, nil, sessionExpired},
	} {
		s := &stripe.CheckoutSession{Status: tc.status, PaymentStatus: tc.payment, PaymentIntent: tc.pi}
		if got := stateOf(s); got != tc.want {
			t.Errorf("stateOf(%s, %s, %v) = %s, want %s", tc.status, tc.payment, tc.pi, got, tc.want)
		}
	}
}

func TestRetryBackoff(t *testing.T) {
	t.Parallel()
	for attempts, want := range map[int]time.Duration{0: time.Minute, 1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute,
		6: 32 * time.Minute, 7: time.Hour, 50: time.Hour, 1000: time.Hour} {
		if got := retryBackoff(attempts, time.Minute, time.Hour); got != want {
			t.Errorf("retryBackoff(%d) = %s, want %s", attempts, got, want)
		}
	}
}

func TestDecideSessions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
	products := map[string]config.Product{"pro": {Key: "pro"}}
	const id2 = "0b6c3f5e-8d1a-4c2b-9f3e-1a2b3c4d5e70"
	session := func(id string, status stripe.CheckoutSessionStatus, meta map[string]string) *stripe.CheckoutSession {
		s := &stripe.CheckoutSession{ID: id, Status: status, Mode: stripe.CheckoutSessionModePayment, Metadata: meta,
			Currency: "eur", AmountTotal: 39800, ExpiresAt: now.Add(20 * time.Hour).Unix(),
			LineItems: &stripe.LineItemList{Data: []*stripe.LineItem{item("pro", 2)}}}
		if status == stripe.CheckoutSessionStatusComplete {
			s.PaymentStatus = stripe.CheckoutSessionPaymentStatusPaid
			s.PaymentIntent = &stripe.PaymentIntent{ID: "pi_" + id, Status: stripe.PaymentIntentStatusSucceeded,
				Created: now.Add(-time.Minute).Unix()}
		}
		return s
	}
	itemOf := func(s *stripe.CheckoutSession) *sessionItem {
		f := sessionFacts{s: s, state: stateOf(s), paidAt: paidAt(s), items: s.LineItems.Data}
		return &sessionItem{f: f, a: adopt(s, f.items, products)}
	}
	ours := map[string]string{"purchase_id": ourPurchaseID, "product": "pro", "user_id": "u1"}
	complete, open := stripe.CheckoutSessionStatusComplete, stripe.CheckoutSessionStatusOpen
	pending := store.Purchase{ID: id2, StripeSessionID: "cs_row", ProductKey: "pro", Quantity: 1, Status: store.PurchasePending,
		Currency: "eur", AmountTotal: 39800, AccessState: store.AccessNone}

	items := []*sessionItem{
		itemOf(session("cs_open", open, ours)),          // no row, open: nothing yet
		itemOf(session("cs_new", complete, ours)),       // no row, paid: created completed
		itemOf(session("cs_recovered", complete, ours)), // the same purchase id again: a new one
		itemOf(session("cs_donation", complete, nil)),   // not ours
		itemOf(session("cs_row", complete, nil)),        // recorded, pending: completed
	}
	items[3].f.s.LineItems.Data = []*stripe.LineItem{item("", 1)}
	items[3].a = adopt(items[3].f.s, items[3].f.s.LineItems.Data, products)
	w, err := decideSessions(items, map[string]store.Purchase{"cs_row": pending}, map[string]bool{}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.inserts) != 2 || w.inserts[0].ID != ourPurchaseID || w.inserts[1].ID == ourPurchaseID ||
		w.inserts[0].Status != store.PurchaseCompleted || w.inserts[0].Quantity != 2 || w.inserts[0].Currency != "eur" ||
		w.inserts[0].CompletedAt == nil || !w.inserts[0].CompletedAt.Equal(now.Add(-time.Minute)) {
		t.Errorf("inserts: %+v", w.inserts)
	}
	if len(w.updates) != 1 || w.updates[0].ID != id2 || w.updates[0].Status != store.PurchaseCompleted || w.updates[0].CheckedAt == nil {
		t.Errorf("updates: %+v", w.updates)
	}
	var changes []string
	for _, ch := range w.changes {
		changes = append(changes, ch.sessionID+" "+ch.what)
	}
	want := []string{"cs_new created", "cs_new completed", "cs_recovered created", "cs_recovered completed", "cs_row completed"}
	if !slices.Equal(changes, want) {
		t.Errorf("changes = %v, want %v", changes, want)
	}
	if items[0].res.found || items[3].res.skipped != SkipNoLookupKey || !items[4].res.found || items[4].res.wasFinal {
		t.Errorf("results: open %+v, donation %+v, row %+v", items[0].res, items[3].res, items[4].res)
	}

	// Nothing changed: nothing to write.
	done := w.updates[0]
	w, err = decideSessions([]*sessionItem{itemOf(session("cs_row", complete, nil))}, map[string]store.Purchase{"cs_row": done},
		map[string]bool{}, nil, now.Add(time.Minute))
	if err != nil || len(w.inserts)+len(w.updates)+len(w.changes) != 0 {
		t.Errorf("an unchanged purchase: %+v, %v", w, err)
	}

	// Claims: never another user's purchase; a Payment Link's becomes the claimant's.
	u2 := "u2"
	theirs := pending
	theirs.UserID = &u2
	if _, err := decideSessions([]*sessionItem{itemOf(session("cs_row", complete, nil))}, map[string]store.Purchase{"cs_row": theirs},
		map[string]bool{}, &Claimant{UserID: "u1"}, now); err != ErrNotYours {
		t.Errorf("claiming another user's purchase: %v", err)
	}
	w, err = decideSessions([]*sessionItem{itemOf(session("cs_row", complete, nil))}, map[string]store.Purchase{"cs_row": pending},
		map[string]bool{}, &Claimant{UserID: "u1"}, now)
	if err != nil || len(w.updates) != 1 || w.updates[0].UserID == nil || *w.updates[0].UserID != "u1" {
		t.Errorf("claiming a Payment Link purchase: %+v, %v", w.updates, err)
	}
	if len(w.claimed) != 0 {
		t.Errorf("claiming a pending purchase completes it with its user; claimed %+v, want none", w.claimed)
	}
	// Claiming one recorded completed first: claimed, once.
	w, err = decideSessions([]*sessionItem{itemOf(session("cs_row", complete, nil))}, map[string]store.Purchase{"cs_row": done},
		map[string]bool{}, &Claimant{UserID: "u1"}, now)
	if err != nil || len(w.changes) != 0 || len(w.claimed) != 1 || w.claimed[0].ID != id2 ||
		w.claimed[0].UserID == nil || *w.claimed[0].UserID != "u1" {
		t.Fatalf("claiming a completed Payment Link purchase: changes %+v, claimed %+v, %v", w.changes, w.claimed, err)
	}
	mine := w.claimed[0]
	w, err = decideSessions([]*sessionItem{itemOf(session("cs_row", complete, nil))}, map[string]store.Purchase{"cs_row": mine},
		map[string]bool{}, &Claimant{UserID: "u1"}, now.Add(time.Minute))
	if err != nil || len(w.updates)+len(w.claimed) != 0 {
		t.Errorf("claiming it again: updates %+v, claimed %+v, %v", w.updates, w.claimed, err)
	}
}
