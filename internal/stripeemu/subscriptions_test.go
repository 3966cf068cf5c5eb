// Tests of the subscription lifecycle, driven through stripe-go and the Go
// operations: trials through Checkout, renewals over months, failed
// payments and their retries, dunning, cancellation, price changes, pause,
// and the events each step records.

package stripeemu_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

const day = 24 * time.Hour

// recurringPrice creates a recurring EUR price.
func (f *fixture) recurringPrice(productID string, amount int64, interval string, lookupKey string) *stripe.Price {
	f.t.Helper()
	params := &stripe.PriceParams{Product: stripe.String(productID), UnitAmount: stripe.Int64(amount), Currency: stripe.String("eur"),
		Recurring: &stripe.PriceRecurringParams{Interval: stripe.String(interval)}}
	if lookupKey != "" {
		params.LookupKey = stripe.String(lookupKey)
	}
	p, err := f.sc.Prices.New(params)
	if err != nil {
		f.t.Fatalf("create recurring price: %v", err)
	}
	return p
}

// subSession creates a subscription-mode session for one unit of priceID.
func (f *fixture) subSession(priceID string, mod ...func(*stripe.CheckoutSessionParams)) *stripe.CheckoutSession {
	f.t.Helper()
	return f.session(priceID, append([]func(*stripe.CheckoutSessionParams){func(p *stripe.CheckoutSessionParams) {
		p.Mode = stripe.String(string(stripe.CheckoutSessionModeSubscription))
	}}, mod...)...)
}

// subscribe pays a new subscription session for priceID and returns the
// subscription.
func (f *fixture) subscribe(priceID, email string, mod ...func(*stripe.CheckoutSessionParams)) *stripe.Subscription {
	f.t.Helper()
	s := f.subSession(priceID, mod...)
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{Email: email}); err != nil {
		f.t.Fatalf("pay subscription session: %v", err)
	}
	got, err := f.emu.Session(s.ID)
	if err != nil || got.Subscription == nil {
		f.t.Fatalf("paid session has no subscription: %+v %v", got, err)
	}
	return f.sub(got.Subscription.ID)
}

// sub retrieves a subscription with its latest invoice.
func (f *fixture) sub(id string) *stripe.Subscription {
	f.t.Helper()
	params := &stripe.SubscriptionParams{}
	params.AddExpand("latest_invoice")
	s, err := f.sc.Subscriptions.Get(id, params)
	if err != nil {
		f.t.Fatalf("get subscription: %v", err)
	}
	return s
}

// invoices lists a subscription's invoices through the API, oldest first.
func (f *fixture) invoices(subID string) []*stripe.Invoice {
	f.t.Helper()
	it := f.sc.Invoices.List(&stripe.InvoiceListParams{Subscription: stripe.String(subID)})
	var out []*stripe.Invoice
	for it.Next() {
		out = append([]*stripe.Invoice{it.Invoice()}, out...)
	}
	if it.Err() != nil {
		f.t.Fatal(it.Err())
	}
	return out
}

// advance moves the fake clock and lets the emulator apply what came due.
func (f *fixture) advance(d time.Duration) {
	f.clk.Advance(d)
	f.emu.Tick()
}

// advanceTo moves the fake clock to t.
func (f *fixture) advanceTo(t time.Time) {
	f.clk.Set(t)
	f.emu.Tick()
}

// eventLog is the recorded events of the given types (all when none are
// given), oldest first, as "type@offset" strings relative to origin.
func (f *fixture) eventLog(origin time.Time, from int, types ...string) []string {
	f.t.Helper()
	want := map[string]bool{}
	for _, t := range types {
		want[t] = true
	}
	var out []string
	for _, ev := range f.emu.Events()[from:] {
		if len(want) == 0 || want[string(ev.Type)] {
			out = append(out, fmt.Sprintf("%s@%s", ev.Type, time.Unix(ev.Created, 0).Sub(origin)))
		}
	}
	return out
}

// sameStrings fails unless got equals want.
func sameStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got  %s\n want %s", what, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

// eventsOf returns the recorded events of one type, oldest first.
func (f *fixture) eventsOf(typ string) []*stripe.Event {
	var out []*stripe.Event
	for _, ev := range f.emu.Events() {
		if string(ev.Type) == typ {
			out = append(out, ev)
		}
	}
	return out
}

func TestSubscriptionCheckoutWithTrial(t *testing.T) {
	f := newFixture(t)
	prod := f.product("Pro")
	pr := f.recurringPrice(prod.ID, 2900, "month", "pro_monthly")
	if pr.Type != stripe.PriceTypeRecurring || pr.Recurring.Interval != "month" || pr.Recurring.IntervalCount != 1 || pr.LookupKey != "pro_monthly" {
		t.Fatalf("recurring price = %+v %+v", pr, pr.Recurring)
	}
	s := f.subSession(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.CustomerEmail = stripe.String("ada@example.com")
		p.AddMetadata("purchase_id", "p1")
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(14),
			Metadata: map[string]string{"user_id": "u1", "organization_id": "org1"}}
	})
	if s.Mode != stripe.CheckoutSessionModeSubscription || s.AmountTotal != 0 || s.URL == "" || s.Subscription != nil {
		t.Fatalf("open trial session = mode %s total %d url %q sub %v", s.Mode, s.AmountTotal, s.URL, s.Subscription)
	}
	f.advance(5 * time.Minute)
	t0 := start.Add(5 * time.Minute)
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{Email: "ada@example.com", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	cs, _ := f.sc.CheckoutSessions.Get(s.ID, nil)
	if cs.Status != stripe.CheckoutSessionStatusComplete || cs.PaymentStatus != stripe.CheckoutSessionPaymentStatusNoPaymentRequired ||
		cs.Subscription == nil || cs.Customer == nil || cs.PaymentIntent != nil {
		t.Fatalf("completed session = %s/%s sub %v customer %v", cs.Status, cs.PaymentStatus, cs.Subscription, cs.Customer)
	}
	sub := f.sub(cs.Subscription.ID)
	trialEnd := t0.Add(14 * day)
	if sub.Status != stripe.SubscriptionStatusTrialing || sub.TrialStart != t0.Unix() || sub.TrialEnd != trialEnd.Unix() ||
		sub.CurrentPeriodStart != t0.Unix() || sub.CurrentPeriodEnd != trialEnd.Unix() || sub.Customer.ID != cs.Customer.ID ||
		sub.Metadata["user_id"] != "u1" || sub.Metadata["organization_id"] != "org1" || sub.Metadata["purchase_id"] != "" {
		t.Fatalf("trialing subscription = %+v", sub)
	}
	if it := sub.Items.Data; len(it) != 1 || it[0].Price.ID != pr.ID || it[0].Quantity != 1 || it[0].Price.Recurring.Interval != "month" {
		t.Fatalf("items = %+v", it)
	}
	first := sub.LatestInvoice
	if first.BillingReason != stripe.InvoiceBillingReasonSubscriptionCreate || first.AmountDue != 0 || first.Status != stripe.InvoiceStatusPaid ||
		!first.Paid || first.Number == "" || first.PeriodStart != t0.Unix() || first.PeriodEnd != t0.Unix() ||
		first.Lines.Data[0].Period.Start != t0.Unix() || first.Lines.Data[0].Period.End != trialEnd.Unix() || first.HostedInvoiceURL == "" ||
		first.StatusTransitions.PaidAt != t0.Unix() || first.Subscription.ID != sub.ID {
		t.Fatalf("trial invoice = %+v", first)
	}
	sameStrings(t, "events at checkout", f.eventLog(start, 0), []string{
		"customer.created@5m0s", "customer.subscription.created@5m0s", "invoice.created@5m0s", "invoice.finalized@5m0s",
		"invoice.paid@5m0s", "invoice.payment_succeeded@5m0s", "checkout.session.completed@5m0s",
	})
	n := len(f.emu.Events())

	// Jump past the trial end and the first renewal's finalization: every
	// step carries its own time.
	f.advanceTo(trialEnd.Add(2 * time.Hour))
	sameStrings(t, "events of the trial end", f.eventLog(t0, n), []string{
		"invoice.upcoming@264h0m0s", "customer.subscription.trial_will_end@264h0m0s",
		"customer.subscription.updated@336h0m0s", "invoice.created@336h0m0s",
		"invoice.finalized@337h0m0s", "invoice.paid@337h0m0s", "invoice.payment_succeeded@337h0m0s",
	})
	upd := f.eventsOf("customer.subscription.updated")[0]
	if upd.Data.PreviousAttributes["status"] != "trialing" || upd.GetObjectValue("status") != "active" ||
		upd.Data.PreviousAttributes["current_period_end"] != float64(trialEnd.Unix()) {
		t.Fatalf("trial end update = %v / %v", upd.Data.PreviousAttributes, upd.Data.Object["status"])
	}
	if up := f.eventsOf("invoice.upcoming")[0]; up.GetObjectValue("id") != "" || up.GetObjectValue("amount_due") != "2900" {
		t.Fatalf("upcoming invoice = %v", up.Data.Object)
	}
	sub = f.sub(sub.ID)
	inv := sub.LatestInvoice
	nextEnd := time.Date(2024, 4, 15, 12, 5, 0, 0, time.UTC)
	if sub.Status != stripe.SubscriptionStatusActive || sub.CurrentPeriodStart != trialEnd.Unix() || sub.CurrentPeriodEnd != nextEnd.Unix() ||
		sub.BillingCycleAnchor != trialEnd.Unix() || sub.TrialEnd != trialEnd.Unix() {
		t.Fatalf("after trial = %s %s..%s", sub.Status, time.Unix(sub.CurrentPeriodStart, 0), time.Unix(sub.CurrentPeriodEnd, 0))
	}
	if inv.BillingReason != stripe.InvoiceBillingReasonSubscriptionCycle || inv.Status != stripe.InvoiceStatusPaid || inv.AmountPaid != 2900 ||
		inv.AmountRemaining != 0 || inv.AttemptCount != 1 || !inv.Attempted || inv.Created != trialEnd.Unix() ||
		inv.StatusTransitions.FinalizedAt != trialEnd.Add(time.Hour).Unix() || inv.StatusTransitions.PaidAt != trialEnd.Add(time.Hour).Unix() ||
		inv.PeriodStart != t0.Unix() || inv.PeriodEnd != trialEnd.Unix() ||
		inv.Lines.Data[0].Period.Start != trialEnd.Unix() || inv.Lines.Data[0].Period.End != nextEnd.Unix() || inv.Charge == nil || inv.PaymentIntent == nil {
		t.Fatalf("first paid invoice = %+v", inv)
	}
	ch, err := f.sc.Charges.Get(inv.Charge.ID, nil)
	if err != nil || ch.Amount != 2900 || ch.Status != stripe.ChargeStatusSucceeded || ch.Invoice.ID != inv.ID {
		t.Fatalf("charge = %+v, %v", ch, err)
	}
}

// TestFourteenMonthsInOneJump starts a monthly subscription on January 31
// and jumps the clock fourteen months at once: every renewal is there, in
// order, anchored on the 31st (clamped in shorter months).
func TestFourteenMonthsInOneJump(t *testing.T) {
	run := func() (*fixture, *stripe.Subscription) {
		f := newFixture(t)
		t0 := time.Date(2024, 1, 31, 9, 30, 0, 0, time.UTC)
		f.clk.Set(t0)
		pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
		sub := f.subscribe(pr.ID, "ada@example.com")
		f.advanceTo(t0.AddDate(0, 14, 0).Add(2 * time.Hour))
		return f, sub
	}
	f, sub := run()
	invs := f.invoices(sub.ID)
	if len(invs) != 15 {
		t.Fatalf("%d invoices after 14 months", len(invs))
	}
	want := []string{"2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31", "2024-06-30", "2024-07-31", "2024-08-31",
		"2024-09-30", "2024-10-31", "2024-11-30", "2024-12-31", "2025-01-31", "2025-02-28", "2025-03-31", "2025-04-30"}
	for i, inv := range invs {
		created := time.Unix(inv.Created, 0).UTC()
		line := inv.Lines.Data[0].Period
		if created.Format("2006-01-02") != want[i] || created.Hour() != 9 || line.Start != inv.Created ||
			time.Unix(line.End, 0).UTC().Format("2006-01-02") != want[i+1] {
			t.Fatalf("invoice %d created %s, line %s..%s", i, created, time.Unix(line.Start, 0).UTC(), time.Unix(line.End, 0).UTC())
		}
		if i > 0 && (inv.PeriodStart != invs[i-1].Lines.Data[0].Period.Start || inv.PeriodEnd != inv.Created ||
			inv.BillingReason != stripe.InvoiceBillingReasonSubscriptionCycle) {
			t.Fatalf("invoice %d period %d..%d reason %s", i, inv.PeriodStart, inv.PeriodEnd, inv.BillingReason)
		}
		if inv.Status != stripe.InvoiceStatusPaid || inv.AmountPaid != 2900 || inv.StatusTransitions.PaidAt != inv.Created+int64(boolHour(i > 0)) {
			t.Fatalf("invoice %d = %s paid %d at %d", i, inv.Status, inv.AmountPaid, inv.StatusTransitions.PaidAt)
		}
		if i > 0 && inv.Number <= invs[i-1].Number {
			t.Fatalf("invoice numbers out of order: %s after %s", inv.Number, invs[i-1].Number)
		}
	}
	got := f.sub(sub.ID)
	if got.Status != stripe.SubscriptionStatusActive || got.LatestInvoice.ID != invs[14].ID ||
		time.Unix(got.CurrentPeriodEnd, 0).UTC().Format("2006-01-02") != "2025-04-30" {
		t.Fatalf("after 14 months: %s latest %s period end %s", got.Status, got.LatestInvoice.ID, time.Unix(got.CurrentPeriodEnd, 0).UTC())
	}
	// Events are in time order, and the whole run is deterministic.
	evs := f.emu.Events()
	for i := 1; i < len(evs); i++ {
		if evs[i].Created < evs[i-1].Created {
			t.Fatalf("event %d (%s) created before event %d", i, evs[i].Type, i-1)
		}
	}
	if n := len(f.eventsOf("invoice.upcoming")); n != 14 {
		t.Fatalf("%d invoice.upcoming events", n)
	}
	g, _ := run()
	if a, b := f.eventLog(start, 0), g.eventLog(start, 0); strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatal("two identical runs recorded different events")
	}
}

// boolHour is an hour in seconds when b is true: renewal drafts are paid an
// hour after they are created.
func boolHour(b bool) int {
	if b {
		return 3600
	}
	return 0
}

// TestFailedRenewalRecoversOnRetry fails the fifth renewal, fixes the card
// after the first failed attempt, and jumps to the end: the first retry,
// three days later, pays it.
func TestFailedRenewalRecoversOnRetry(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	sub := f.subscribe(pr.ID, "ada@example.com")
	cus := sub.Customer.ID
	renewal5 := start.AddDate(0, 5, 0)
	f.advanceTo(renewal5.Add(-time.Minute))
	if err := f.emu.FailPayments(cus, true); err != nil {
		t.Fatal(err)
	}
	n := len(f.emu.Events())
	f.advanceTo(renewal5.Add(2 * time.Hour))
	got := f.sub(sub.ID)
	inv := got.LatestInvoice
	if got.Status != stripe.SubscriptionStatusPastDue || inv.Status != stripe.InvoiceStatusOpen || inv.AttemptCount != 1 ||
		inv.NextPaymentAttempt != renewal5.Add(time.Hour+3*day).Unix() || inv.AmountRemaining != 2900 || inv.HostedInvoiceURL == "" {
		t.Fatalf("after the failed renewal: %s, invoice %s attempts %d next %d", got.Status, inv.Status, inv.AttemptCount, inv.NextPaymentAttempt)
	}
	// The customer tries again by hand, still with the declining card:
	// one more failed attempt, and the retry schedule does not move.
	if err := f.emu.PayInvoice(inv.ID); !errors.Is(err, stripeemu.ErrCardDeclined) {
		t.Fatalf("manual payment with a declining card = %v", err)
	}
	if again := f.sub(sub.ID).LatestInvoice; again.AttemptCount != 2 || again.NextPaymentAttempt != inv.NextPaymentAttempt {
		t.Fatalf("after a manual attempt: %d attempts, next %d (was %d)", again.AttemptCount, again.NextPaymentAttempt, inv.NextPaymentAttempt)
	}
	if err := f.emu.FailPayments(cus, false); err != nil {
		t.Fatal(err)
	}
	f.advanceTo(start.AddDate(0, 14, 0).Add(2 * time.Hour))
	sameStrings(t, "events around the failure", f.eventLog(renewal5, n)[:10], []string{
		"customer.subscription.updated@0s", "invoice.created@0s",
		"invoice.finalized@1h0m0s", "invoice.payment_failed@1h0m0s", "customer.subscription.updated@1h0m0s",
		"invoice.payment_failed@2h0m0s",
		"invoice.paid@73h0m0s", "invoice.payment_succeeded@73h0m0s", "customer.subscription.updated@73h0m0s",
		"invoice.upcoming@672h0m0s",
	})
	// Each event carries the object as it was at that moment.
	var snaps []string
	for _, typ := range []string{"invoice.payment_failed", "invoice.paid"} {
		for _, ev := range f.eventsOf(typ) {
			if ev.GetObjectValue("id") == inv.ID {
				snaps = append(snaps, fmt.Sprintf("%s %s attempts=%s next=%s", typ, ev.GetObjectValue("status"),
					ev.GetObjectValue("attempt_count"), ev.GetObjectValue("next_payment_attempt")))
			}
		}
	}
	retry := fmt.Sprint(float64(inv.NextPaymentAttempt)) // as GetObjectValue formats JSON numbers
	sameStrings(t, "snapshots of the failed invoice", snaps, []string{
		"invoice.payment_failed open attempts=1 next=" + retry, "invoice.payment_failed open attempts=2 next=" + retry,
		"invoice.paid paid attempts=3 next=",
	})
	pastDue := f.eventsOf("customer.subscription.updated")
	var statuses []string
	for _, ev := range pastDue {
		if s, ok := ev.Data.PreviousAttributes["status"]; ok {
			statuses = append(statuses, fmt.Sprintf("%v->%v", s, ev.GetObjectValue("status")))
		}
	}
	sameStrings(t, "status changes", statuses, []string{"incomplete->active", "active->past_due", "past_due->active"})
	failed, err := f.sc.Invoices.Get(inv.ID, nil)
	if err != nil || failed.Status != stripe.InvoiceStatusPaid || failed.AttemptCount != 3 || failed.NextPaymentAttempt != 0 ||
		failed.StatusTransitions.PaidAt != renewal5.Add(time.Hour+3*day).Unix() {
		t.Fatalf("recovered invoice = %+v, %v", failed, err)
	}
	// The first two attempts' charges failed, the retry's succeeded, on one
	// payment intent.
	it := f.sc.Charges.List(&stripe.ChargeListParams{PaymentIntent: stripe.String(failed.PaymentIntent.ID)})
	var charges []string
	for it.Next() {
		charges = append(charges, string(it.Charge().Status))
	}
	sameStrings(t, "charges of the recovered invoice", charges, []string{"succeeded", "failed", "failed"})
	if invs := f.invoices(sub.ID); len(invs) != 15 || f.sub(sub.ID).Status != stripe.SubscriptionStatusActive {
		t.Fatalf("%d invoices, status %s", len(invs), f.sub(sub.ID).Status)
	}
}

func TestDunningExhausted(t *testing.T) {
	for _, tc := range []struct {
		after         string
		uncollectible bool
		status        stripe.SubscriptionStatus
		invoice       stripe.InvoiceStatus
	}{
		{"", false, stripe.SubscriptionStatusCanceled, stripe.InvoiceStatusOpen},
		{"canceled", true, stripe.SubscriptionStatusCanceled, stripe.InvoiceStatusUncollectible},
		{"unpaid", false, stripe.SubscriptionStatusUnpaid, stripe.InvoiceStatusOpen},
		{"past_due", false, stripe.SubscriptionStatusPastDue, stripe.InvoiceStatusOpen},
	} {
		t.Run(fmt.Sprintf("%s/%v", tc.after, tc.uncollectible), func(t *testing.T) {
			f := newFixture(t)
			if err := f.emu.SetBillingSettings(stripeemu.BillingSettings{AfterRetries: tc.after, MarkUncollectible: tc.uncollectible}); err != nil {
				t.Fatal(err)
			}
			pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
			sub := f.subscribe(pr.ID, "ada@example.com")
			if err := f.emu.FailPayments(sub.Customer.ID, true); err != nil {
				t.Fatal(err)
			}
			renewal := start.AddDate(0, 1, 0)
			firstAttempt := renewal.Add(time.Hour)
			f.advanceTo(renewal.Add(20 * day))
			got := f.sub(sub.ID)
			inv := got.LatestInvoice
			if got.Status != tc.status || inv.Status != tc.invoice || inv.AttemptCount != 4 || inv.NextPaymentAttempt != 0 {
				t.Fatalf("after dunning: %s, invoice %s attempts %d next %d", got.Status, inv.Status, inv.AttemptCount, inv.NextPaymentAttempt)
			}
			var attempts []string
			for _, ev := range f.eventsOf("invoice.payment_failed") {
				attempts = append(attempts, time.Unix(ev.Created, 0).Sub(firstAttempt).String())
			}
			sameStrings(t, "payment attempts", attempts, []string{"0s", "72h0m0s", "192h0m0s", "336h0m0s"})
			lastAttempt := firstAttempt.Add(14 * day).Unix()
			switch tc.status {
			case stripe.SubscriptionStatusCanceled:
				del := f.eventsOf("customer.subscription.deleted")
				if len(del) != 1 || got.EndedAt != lastAttempt || got.CanceledAt != lastAttempt || got.CancellationDetails.Reason != "payment_failed" {
					t.Fatalf("dunning cancel: %d deleted events, ended %d canceled %d reason %s", len(del), got.EndedAt, got.CanceledAt, got.CancellationDetails.Reason)
				}
				if tc.uncollectible && len(f.eventsOf("invoice.marked_uncollectible")) != 1 {
					t.Fatal("no invoice.marked_uncollectible")
				}
				// No further renewals.
				f.advance(60 * day)
				if n := len(f.invoices(sub.ID)); n != 2 {
					t.Fatalf("%d invoices after cancellation", n)
				}
			case stripe.SubscriptionStatusUnpaid:
				// The next renewal's invoice stays a draft; paying the old
				// one does not reactivate (it is not the latest).
				f.advanceTo(start.AddDate(0, 2, 0).Add(3 * time.Hour))
				got = f.sub(sub.ID)
				draft := got.LatestInvoice
				if draft.Status != stripe.InvoiceStatusDraft || draft.AutoAdvance || got.Status != stripe.SubscriptionStatusUnpaid {
					t.Fatalf("unpaid renewal: %s auto_advance %v, sub %s", draft.Status, draft.AutoAdvance, got.Status)
				}
				if err := f.emu.FailPayments(sub.Customer.ID, false); err != nil {
					t.Fatal(err)
				}
				if _, err := f.sc.Invoices.Pay(inv.ID, nil); err != nil {
					t.Fatal(err)
				}
				if s := f.sub(sub.ID); s.Status != stripe.SubscriptionStatusUnpaid {
					t.Fatalf("paying an older invoice made the subscription %s", s.Status)
				}
				if _, err := f.sc.Invoices.FinalizeInvoice(draft.ID, nil); err != nil {
					t.Fatal(err)
				}
				if _, err := f.sc.Invoices.Pay(draft.ID, nil); err != nil {
					t.Fatal(err)
				}
				if s := f.sub(sub.ID); s.Status != stripe.SubscriptionStatusActive {
					t.Fatalf("paying the latest invoice left the subscription %s", s.Status)
				}
			case stripe.SubscriptionStatusPastDue:
				// Left past_due, renewals go on and pay once the card works.
				if err := f.emu.FailPayments(sub.Customer.ID, false); err != nil {
					t.Fatal(err)
				}
				f.advanceTo(start.AddDate(0, 2, 0).Add(2 * time.Hour))
				if s := f.sub(sub.ID); s.Status != stripe.SubscriptionStatusActive || s.LatestInvoice.Status != stripe.InvoiceStatusPaid {
					t.Fatalf("past_due after a paid renewal: %s / %s", s.Status, s.LatestInvoice.Status)
				}
			}
		})
	}
}

func TestCancelAtPeriodEndAndResume(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	sub := f.subscribe(pr.ID, "ada@example.com")
	periodEnd := start.AddDate(0, 1, 0)

	f.advance(2 * day)
	requested := start.Add(2 * day).Unix()
	got, err := f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true),
		CancellationDetails: &stripe.SubscriptionCancellationDetailsParams{Feedback: stripe.String("too_expensive")}})
	if err != nil {
		t.Fatal(err)
	}
	if !got.CancelAtPeriodEnd || got.CanceledAt != requested || got.CancelAt != periodEnd.Unix() || got.Status != stripe.SubscriptionStatusActive ||
		got.CancellationDetails.Reason != "cancellation_requested" || got.CancellationDetails.Feedback != "too_expensive" || got.EndedAt != 0 {
		t.Fatalf("canceling subscription = %+v", got)
	}
	upd := f.eventsOf("customer.subscription.updated")
	last := upd[len(upd)-1]
	if last.Data.PreviousAttributes["cancel_at_period_end"] != false || last.Data.PreviousAttributes["canceled_at"] != nil ||
		!hasKey(last.Data.PreviousAttributes, "cancel_at") || last.Request.ID == "" {
		t.Fatalf("cancel_at_period_end event = %+v", last.Data.PreviousAttributes)
	}

	// Resume (undo), then cancel again.
	f.advance(day)
	got, err = f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(false)})
	if err != nil || got.CancelAtPeriodEnd || got.CanceledAt != 0 || got.CancelAt != 0 || got.CancellationDetails.Reason != "" {
		t.Fatalf("resumed subscription = %+v, %v", got, err)
	}
	f.advance(day)
	if err := f.emu.SetCancelAtPeriodEnd(sub.ID, true); err != nil {
		t.Fatal(err)
	}
	requested = start.Add(4 * day).Unix()
	n := len(f.emu.Events())
	f.advanceTo(periodEnd.Add(3 * day))
	sameStrings(t, "events at period end", f.eventLog(periodEnd, n), []string{"customer.subscription.deleted@0s"})
	got = f.sub(sub.ID)
	if got.Status != stripe.SubscriptionStatusCanceled || got.EndedAt != periodEnd.Unix() || got.CanceledAt != requested ||
		len(f.invoices(sub.ID)) != 1 {
		t.Fatalf("ended subscription = %s ended %d canceled %d, %d invoices", got.Status, got.EndedAt, got.CanceledAt, len(f.invoices(sub.ID)))
	}

	// An ended subscription takes only metadata.
	_, err = f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(false)})
	stripeErr(t, err, 400, "", "")
	if _, err := f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{Params: stripe.Params{Metadata: map[string]string{"note": "x"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = f.sc.Subscriptions.Cancel(sub.ID, nil)
	stripeErr(t, err, 400, "", "")
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

func TestCancelNow(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	sub := f.subscribe(pr.ID, "ada@example.com")
	f.advance(10 * day)
	got, err := f.sc.Subscriptions.Cancel(sub.ID, &stripe.SubscriptionCancelParams{
		CancellationDetails: &stripe.SubscriptionCancelCancellationDetailsParams{Comment: stripe.String("moving on")}})
	if err != nil {
		t.Fatal(err)
	}
	now := start.Add(10 * day).Unix()
	if got.Status != stripe.SubscriptionStatusCanceled || got.CanceledAt != now || got.EndedAt != now ||
		got.CancellationDetails.Comment != "moving on" || got.CancellationDetails.Reason != "cancellation_requested" {
		t.Fatalf("canceled = %+v", got)
	}
	del := f.eventsOf("customer.subscription.deleted")
	if len(del) != 1 || del[0].GetObjectValue("status") != "canceled" || del[0].Request.ID == "" {
		t.Fatalf("deleted events = %+v", del)
	}
	f.advance(60 * day)
	if n := len(f.invoices(sub.ID)); n != 1 {
		t.Fatalf("%d invoices after cancel", n)
	}
	if err := f.emu.CancelSubscription(sub.ID); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("second cancel = %v", err)
	}
	if err := f.emu.CancelSubscription("sub_missing"); !errors.Is(err, stripeemu.ErrNotFound) {
		t.Fatalf("cancel missing = %v", err)
	}
}

// TestCancelDuringTheDraftHour cancels right after a renewal created its
// draft: the draft is never charged.
func TestCancelDuringTheDraftHour(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	sub := f.subscribe(pr.ID, "ada@example.com")
	f.advanceTo(start.AddDate(0, 1, 0).Add(10 * time.Minute))
	draft := f.sub(sub.ID).LatestInvoice
	if draft.Status != stripe.InvoiceStatusDraft || !draft.AutoAdvance {
		t.Fatalf("renewal = %s", draft.Status)
	}
	if err := f.emu.CancelSubscription(sub.ID); err != nil {
		t.Fatal(err)
	}
	f.advance(2 * time.Hour)
	if inv, _ := f.emu.Invoice(draft.ID); inv.Status != stripe.InvoiceStatusDraft || inv.AutoAdvance || inv.AttemptCount != 0 {
		t.Fatalf("the draft of a canceled subscription went on: %s, %d attempts", inv.Status, inv.AttemptCount)
	}
}
