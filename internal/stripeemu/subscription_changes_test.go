// Tests of changes to subscriptions: price changes under each proration
// behaviour, the items-without-id trap, moving and ending trials,
// pause_collection, paused trials without a card, and declined first
// payments that leave incomplete subscriptions.

package stripeemu_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// changePrice moves a one-item subscription to priceID through the API.
func (f *fixture) changePrice(sub *stripe.Subscription, priceID, proration string) *stripe.Subscription {
	f.t.Helper()
	got, err := f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{
		Items:             []*stripe.SubscriptionItemsParams{{ID: stripe.String(sub.Items.Data[0].ID), Price: stripe.String(priceID)}},
		ProrationBehavior: stripe.String(proration),
	})
	if err != nil {
		f.t.Fatalf("change price: %v", err)
	}
	return got
}

func TestPriceChangeWithoutProration(t *testing.T) {
	f := newFixture(t)
	prod := f.product("Pro")
	basic := f.recurringPrice(prod.ID, 1000, "month", "")
	pro := f.recurringPrice(prod.ID, 3000, "month", "")
	sub := f.subscribe(basic.ID, "ada@example.com")
	f.advance(10 * day)
	n := len(f.emu.Events())
	got := f.changePrice(sub, pro.ID, "none")
	if got.Items.Data[0].ID != sub.Items.Data[0].ID || got.Items.Data[0].Price.ID != pro.ID || len(got.Items.Data) != 1 ||
		got.CurrentPeriodEnd != sub.CurrentPeriodEnd {
		t.Fatalf("after price change: %+v", got.Items.Data)
	}
	sameStrings(t, "events of the change", f.eventLog(start, n), []string{"customer.subscription.updated@240h0m0s"})
	upd := f.eventsOf("customer.subscription.updated")
	prev := upd[len(upd)-1].Data.PreviousAttributes
	if items, ok := prev["items"].(map[string]any); !ok || items["data"].([]any)[0].(map[string]any)["price"].(map[string]any)["id"] != basic.ID {
		t.Fatalf("previous_attributes.items = %v", prev["items"])
	}
	f.advanceTo(start.AddDate(0, 1, 0).Add(2 * time.Hour))
	invs := f.invoices(sub.ID)
	if len(invs) != 2 || invs[1].AmountPaid != 3000 || len(invs[1].Lines.Data) != 1 || invs[1].Lines.Data[0].Price.ID != pro.ID {
		t.Fatalf("renewal after the change = %d invoices, %+v", len(invs), invs[len(invs)-1])
	}
}

func TestPriceChangeWithProrations(t *testing.T) {
	f := newFixture(t)
	prod := f.product("Pro")
	basic := f.recurringPrice(prod.ID, 1000, "month", "")
	pro := f.recurringPrice(prod.ID, 3000, "month", "")
	sub := f.subscribe(basic.ID, "ada@example.com")
	// Halfway through a 31-day March, upgrade.
	periodEnd := start.AddDate(0, 1, 0)
	mid := start.Add(periodEnd.Sub(start) / 2)
	f.advanceTo(mid)
	f.changePrice(sub, pro.ID, "create_prorations")
	if n := len(f.invoices(sub.ID)); n != 1 {
		t.Fatalf("create_prorations invoiced at once: %d invoices", n)
	}
	f.advanceTo(periodEnd.Add(2 * time.Hour))
	inv := f.invoices(sub.ID)[1]
	var amounts []int64
	for _, l := range inv.Lines.Data {
		amounts = append(amounts, l.Amount)
	}
	if len(amounts) != 3 || amounts[0] != -500 || amounts[1] != 1500 || amounts[2] != 3000 || !inv.Lines.Data[0].Proration ||
		inv.Lines.Data[2].Proration || inv.AmountPaid != 4000 || inv.Lines.Data[0].Period.Start != mid.Unix() {
		t.Fatalf("renewal with prorations: lines %v, paid %d", amounts, inv.AmountPaid)
	}

	// always_invoice bills the downgrade's prorations at once; the credit
	// exceeds nothing here, so the invoice is negative and becomes credit
	// on the customer's balance, used by the next renewal.
	secondEnd := periodEnd.AddDate(0, 1, 0)
	f.advanceTo(periodEnd.Add(secondEnd.Sub(periodEnd) / 2))
	got := f.changePrice(f.sub(sub.ID), basic.ID, "always_invoice")
	now := f.sub(sub.ID)
	update := now.LatestInvoice
	if update.BillingReason != stripe.InvoiceBillingReasonSubscriptionUpdate || update.Total != -1000 || update.AmountDue != 0 ||
		update.Status != stripe.InvoiceStatusPaid || update.EndingBalance != -1000 || got.Items.Data[0].Price.ID != basic.ID {
		t.Fatalf("downgrade invoice: reason %s total %d due %d status %s ending balance %d", update.BillingReason, update.Total,
			update.AmountDue, update.Status, update.EndingBalance)
	}
	cu, _ := f.sc.Customers.Get(sub.Customer.ID, nil)
	if cu.Balance != -1000 {
		t.Fatalf("customer balance = %d", cu.Balance)
	}
	bal := f.eventsOf("customer.updated")
	if len(bal) != 1 || bal[0].Data.PreviousAttributes["balance"] != float64(0) {
		t.Fatalf("balance events = %d", len(bal))
	}
	f.advanceTo(secondEnd.Add(2 * time.Hour))
	next := f.sub(sub.ID).LatestInvoice
	if next.Total != 1000 || next.StartingBalance != -1000 || next.AmountDue != 0 || next.Status != stripe.InvoiceStatusPaid || next.AttemptCount != 0 {
		t.Fatalf("renewal paid from credit: total %d starting %d due %d %s", next.Total, next.StartingBalance, next.AmountDue, next.Status)
	}
}

func TestIntervalChangeStartsANewCycle(t *testing.T) {
	f := newFixture(t)
	prod := f.product("Pro")
	monthly := f.recurringPrice(prod.ID, 2900, "month", "")
	yearly := f.recurringPrice(prod.ID, 29000, "year", "")
	sub := f.subscribe(monthly.ID, "ada@example.com")
	f.advance(5 * day)
	now := start.Add(5 * day)
	got := f.changePrice(sub, yearly.ID, "none")
	inv := f.sub(sub.ID).LatestInvoice
	if got.BillingCycleAnchor != now.Unix() || got.CurrentPeriodStart != now.Unix() || got.CurrentPeriodEnd != now.AddDate(1, 0, 0).Unix() ||
		inv.BillingReason != stripe.InvoiceBillingReasonSubscriptionUpdate || inv.AmountPaid != 29000 || inv.Status != stripe.InvoiceStatusPaid {
		t.Fatalf("interval change: anchor %d period %d..%d invoice %s %d %s", got.BillingCycleAnchor, got.CurrentPeriodStart,
			got.CurrentPeriodEnd, inv.BillingReason, inv.AmountPaid, inv.Status)
	}
	f.advanceTo(now.AddDate(1, 0, 0).Add(2 * time.Hour))
	if invs := f.invoices(sub.ID); len(invs) != 3 || invs[2].AmountPaid != 29000 {
		t.Fatalf("%d invoices a year later", len(invs))
	}
}

// TestItemsWithoutIDAddAnItem shows the classic mistake: items[0][price]
// without items[0][id] adds a second item instead of replacing the first.
func TestItemsWithoutIDAddAnItem(t *testing.T) {
	f := newFixture(t)
	prod := f.product("Pro")
	basic := f.recurringPrice(prod.ID, 1000, "month", "")
	addon := f.recurringPrice(f.product("Add-on").ID, 500, "month", "")
	yearly := f.recurringPrice(prod.ID, 10000, "year", "")
	sub := f.subscribe(basic.ID, "ada@example.com")
	got, err := f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{
		Items: []*stripe.SubscriptionItemsParams{{Price: stripe.String(addon.ID)}}, ProrationBehavior: stripe.String("none")})
	if err != nil || len(got.Items.Data) != 2 {
		t.Fatalf("items without id: %v, %d items", err, len(got.Items.Data))
	}
	// The same price twice, or mixed intervals, are refused and change
	// nothing.
	_, err = f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{{Price: stripe.String(basic.ID)}}})
	stripeErr(t, err, 400, "", "")
	_, err = f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{{Price: stripe.String(yearly.ID)}}})
	stripeErr(t, err, 400, "", "")
	_, err = f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String("si_nope"), Price: stripe.String(yearly.ID)}}})
	stripeErr(t, err, 400, stripe.ErrorCodeResourceMissing, "items[0][id]")
	_, err = f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true),
		Items: []*stripe.SubscriptionItemsParams{{Price: stripe.String("price_nope")}}})
	stripeErr(t, err, 400, stripe.ErrorCodeResourceMissing, "")
	if s := f.sub(sub.ID); len(s.Items.Data) != 2 || s.CancelAtPeriodEnd {
		t.Fatalf("a refused update changed the subscription: %d items, cancel %v", len(s.Items.Data), s.CancelAtPeriodEnd)
	}
	f.advanceTo(start.AddDate(0, 1, 0).Add(2 * time.Hour))
	if inv := f.sub(sub.ID).LatestInvoice; len(inv.Lines.Data) != 2 || inv.AmountPaid != 1500 {
		t.Fatalf("renewal with two items: %d lines, %d", len(inv.Lines.Data), inv.AmountPaid)
	}
	// Deleting the add-on by id.
	s := f.sub(sub.ID)
	if _, err := f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{ProrationBehavior: stripe.String("none"),
		Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(s.Items.Data[1].ID), Deleted: stripe.Bool(true)}}}); err != nil {
		t.Fatal(err)
	}
	if s := f.sub(sub.ID); len(s.Items.Data) != 1 || s.Items.Data[0].Price.ID != basic.ID {
		t.Fatalf("after deleting the add-on: %+v", s.Items.Data)
	}
}

func TestTrialMovesAndEnds(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	sub, err := f.emu.CreateSubscription(stripeemu.SubscriptionParams{Email: "ada@example.com", Items: []stripeemu.LineItem{{Price: pr.ID}}, TrialDays: 14})
	if err != nil {
		t.Fatal(err)
	}
	// Extending the trial moves the renewal and trial_will_end.
	newEnd := start.Add(20 * day)
	got, err := f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{TrialEnd: stripe.Int64(newEnd.Unix())})
	if err != nil || got.TrialEnd != newEnd.Unix() || got.CurrentPeriodEnd != newEnd.Unix() || got.Status != stripe.SubscriptionStatusTrialing {
		t.Fatalf("moved trial: %+v, %v", got, err)
	}
	f.advanceTo(start.Add(15 * day))
	if n := len(f.invoices(sub.ID)); n != 1 || len(f.eventsOf("customer.subscription.trial_will_end")) != 0 {
		t.Fatalf("the old trial end still acted: %d invoices", n)
	}
	f.advanceTo(start.Add(17 * day))
	if tw := f.eventsOf("customer.subscription.trial_will_end"); len(tw) != 1 || tw[0].Created != newEnd.Add(-3*day).Unix() {
		t.Fatalf("trial_will_end = %d", len(tw))
	}
	// Ending the trial now invoices at once.
	if err := f.emu.SetTrialEnd(sub.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	now := start.Add(17 * day)
	s := f.sub(sub.ID)
	if s.Status != stripe.SubscriptionStatusActive || s.TrialEnd != now.Unix() || s.CurrentPeriodStart != now.Unix() ||
		s.LatestInvoice.BillingReason != stripe.InvoiceBillingReasonSubscriptionUpdate || s.LatestInvoice.Status != stripe.InvoiceStatusPaid {
		t.Fatalf("trial ended now: %s trial_end %d invoice %s %s", s.Status, s.TrialEnd, s.LatestInvoice.BillingReason, s.LatestInvoice.Status)
	}
	if n := len(f.eventsOf("customer.subscription.trial_will_end")); n != 2 {
		t.Fatalf("%d trial_will_end events (ending now sends one)", n)
	}
	_, err = f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{TrialEnd: stripe.Int64(now.Add(day).Unix())})
	stripeErr(t, err, 400, "", "trial_end")
	f.advanceTo(newEnd.Add(time.Hour))
	if n := len(f.invoices(sub.ID)); n != 2 {
		t.Fatalf("a stale trial end renewed: %d invoices", n)
	}
}

func TestPauseCollection(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	sub := f.subscribe(pr.ID, "ada@example.com")
	resumes := start.AddDate(0, 2, 10)
	_, err := f.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{PauseCollection: &stripe.SubscriptionPauseCollectionParams{
		Behavior: stripe.String("void"), ResumesAt: stripe.Int64(resumes.Unix())}})
	if err != nil {
		t.Fatal(err)
	}
	f.advanceTo(start.AddDate(0, 3, 0).Add(2 * time.Hour))
	invs := f.invoices(sub.ID)
	var got []string
	for _, inv := range invs {
		got = append(got, string(inv.Status))
	}
	sameStrings(t, "invoices around the pause", got, []string{"paid", "void", "void", "paid"})
	s := f.sub(sub.ID)
	if s.Status != stripe.SubscriptionStatusActive || s.PauseCollection != nil {
		t.Fatalf("after resumes_at: %s %+v", s.Status, s.PauseCollection)
	}
	var resumed bool
	for _, ev := range f.eventsOf("customer.subscription.updated") {
		if ev.Created == resumes.Unix() && hasKey(ev.Data.PreviousAttributes, "pause_collection") {
			resumed = true
		}
	}
	if !resumed || len(f.eventsOf("customer.subscription.paused")) != 0 || len(f.eventsOf("invoice.voided")) != 2 {
		t.Fatalf("resume event %v, paused events %d, voided %d", resumed, len(f.eventsOf("customer.subscription.paused")), len(f.eventsOf("invoice.voided")))
	}
	// keep_as_draft, then unpause with an empty pause_collection.
	if err := f.emu.PauseCollection(sub.ID, "keep_as_draft", time.Time{}); err != nil {
		t.Fatal(err)
	}
	f.advanceTo(start.AddDate(0, 4, 0).Add(2 * time.Hour))
	if inv := f.sub(sub.ID).LatestInvoice; inv.Status != stripe.InvoiceStatusDraft || inv.AutoAdvance {
		t.Fatalf("keep_as_draft renewal = %s", inv.Status)
	}
	unpause := &stripe.SubscriptionParams{}
	unpause.AddExtra("pause_collection", "")
	if _, err := f.sc.Subscriptions.Update(sub.ID, unpause); err != nil {
		t.Fatal(err)
	}
	if s := f.sub(sub.ID); s.PauseCollection != nil {
		t.Fatalf("pause_collection not cleared: %+v", s.PauseCollection)
	}
}

func TestTrialWithoutCardPausesAndResumes(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	s := f.subSession(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.PaymentMethodCollection = stripe.String("if_required")
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(7),
			TrialSettings: &stripe.CheckoutSessionSubscriptionDataTrialSettingsParams{
				EndBehavior: &stripe.CheckoutSessionSubscriptionDataTrialSettingsEndBehaviorParams{MissingPaymentMethod: stripe.String("pause")}}}
	})
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{Email: "ada@example.com", NoPaymentMethod: true}); err != nil {
		t.Fatal(err)
	}
	cs, _ := f.emu.Session(s.ID)
	sub := f.sub(cs.Subscription.ID)
	if sub.DefaultPaymentMethod != nil || sub.TrialSettings.EndBehavior.MissingPaymentMethod != "pause" {
		t.Fatalf("card-less trial = %+v", sub)
	}
	n := len(f.emu.Events())
	f.advanceTo(start.Add(8 * day))
	sameStrings(t, "events at the trial end", f.eventLog(start, n, "customer.subscription.updated", "customer.subscription.paused", "invoice.created"),
		[]string{"customer.subscription.updated@168h0m0s", "customer.subscription.paused@168h0m0s"})
	if got := f.sub(sub.ID); got.Status != stripe.SubscriptionStatusPaused || len(f.invoices(sub.ID)) != 1 {
		t.Fatalf("paused = %s", got.Status)
	}
	f.advance(40 * day)
	if n := len(f.invoices(sub.ID)); n != 1 {
		t.Fatalf("a paused subscription renewed: %d invoices", n)
	}
	// Resume needs a card; without one the charge fails and it is past_due.
	if _, err := f.emu.AddCard(sub.Customer.ID); err != nil {
		t.Fatal(err)
	}
	now := start.Add(48 * day)
	got, err := f.sc.Subscriptions.Resume(sub.ID, &stripe.SubscriptionResumeParams{BillingCycleAnchor: stripe.String("now")})
	if err != nil {
		t.Fatal(err)
	}
	inv := f.sub(sub.ID).LatestInvoice
	if got.Status != stripe.SubscriptionStatusActive || got.CurrentPeriodStart != now.Unix() || inv.AmountPaid != 2900 || len(f.eventsOf("customer.subscription.resumed")) != 1 {
		t.Fatalf("resumed: %s from %d, invoice %d", got.Status, got.CurrentPeriodStart, inv.AmountPaid)
	}
	_, err = f.sc.Subscriptions.Resume(sub.ID, nil)
	stripeErr(t, err, 400, "", "")

	// Without a card and with the default behaviour, the trial converts
	// and the first charge fails.
	s2 := f.subSession(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.PaymentMethodCollection = stripe.String("if_required")
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(3)}
	})
	if err := f.emu.PaySession(s2.ID, stripeemu.Pay{Email: "bo@example.com", NoPaymentMethod: true}); err != nil {
		t.Fatal(err)
	}
	cs2, _ := f.emu.Session(s2.ID)
	f.advance(4 * day)
	if got := f.sub(cs2.Subscription.ID); got.Status != stripe.SubscriptionStatusPastDue || got.LatestInvoice.Status != stripe.InvoiceStatusOpen {
		t.Fatalf("card-less trial end: %s / %s", got.Status, got.LatestInvoice.Status)
	}
	// A session that always collects a card refuses to start without one.
	s3 := f.subSession(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(3)}
	})
	if err := f.emu.PaySession(s3.ID, stripeemu.Pay{NoPaymentMethod: true}); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("card-less pay of an always-collect session = %v", err)
	}
}

func TestDeclinedCheckoutLeavesAnIncompleteSubscription(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")

	// Declined, then paid with another card on the same session.
	s := f.subSession(pr.ID)
	err := f.emu.PaySession(s.ID, stripeemu.Pay{Email: "ada@example.com", Decline: true})
	if !errors.Is(err, stripeemu.ErrCardDeclined) {
		t.Fatalf("declined pay = %v", err)
	}
	cs, _ := f.emu.Session(s.ID)
	subs := f.emu.Subscriptions()
	if cs.Status != stripe.CheckoutSessionStatusOpen || cs.Subscription != nil || len(subs) != 1 || subs[0].Status != stripe.SubscriptionStatusIncomplete {
		t.Fatalf("after decline: session %s sub %v, %d subscriptions", cs.Status, cs.Subscription, len(subs))
	}
	inv := f.sub(subs[0].ID).LatestInvoice
	if inv.Status != stripe.InvoiceStatusOpen || inv.AttemptCount != 1 || inv.NextPaymentAttempt != 0 {
		t.Fatalf("first invoice after decline = %s attempts %d next %d", inv.Status, inv.AttemptCount, inv.NextPaymentAttempt)
	}
	f.advance(time.Hour)
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	cs, _ = f.emu.Session(s.ID)
	got := f.sub(subs[0].ID)
	if cs.Status != stripe.CheckoutSessionStatusComplete || cs.Subscription.ID != got.ID || got.Status != stripe.SubscriptionStatusActive ||
		got.LatestInvoice.AttemptCount != 2 || len(f.emu.Subscriptions()) != 1 {
		t.Fatalf("second try: session %s, sub %s, attempts %d", cs.Status, got.Status, got.LatestInvoice.AttemptCount)
	}

	// Declined and abandoned: incomplete_expired after 23 hours, invoice void.
	s2 := f.subSession(pr.ID)
	if err := f.emu.PaySession(s2.ID, stripeemu.Pay{Email: "bo@example.com", Decline: true}); !errors.Is(err, stripeemu.ErrCardDeclined) {
		t.Fatal(err)
	}
	subs = f.emu.Subscriptions()
	abandoned := subs[1]
	created := time.Unix(abandoned.Created, 0)
	n := len(f.emu.Events())
	f.advanceTo(created.Add(25 * time.Hour))
	sameStrings(t, "expiry events", f.eventLog(created, n), []string{"invoice.voided@23h0m0s", "customer.subscription.updated@23h0m0s",
		"checkout.session.expired@25h0m0s"})
	got = f.sub(abandoned.ID)
	if got.Status != stripe.SubscriptionStatusIncompleteExpired || got.EndedAt != created.Add(23*time.Hour).Unix() ||
		got.LatestInvoice.Status != stripe.InvoiceStatusVoid {
		t.Fatalf("expired: %s ended %d invoice %s", got.Status, got.EndedAt, got.LatestInvoice.Status)
	}
	if err := f.emu.PaySession(s2.ID, stripeemu.Pay{}); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("paying an expired session = %v", err)
	}

	// A declined card during a trial creates nothing.
	s3 := f.subSession(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(7)}
	})
	if err := f.emu.PaySession(s3.ID, stripeemu.Pay{Email: "cy@example.com", Decline: true}); !errors.Is(err, stripeemu.ErrCardDeclined) {
		t.Fatal(err)
	}
	if n := len(f.emu.Subscriptions()); n != 2 {
		t.Fatalf("declined trial created a subscription: %d", n)
	}
}

func TestSubscriptionSessionValidation(t *testing.T) {
	f := newFixture(t)
	prod := f.product("Pro")
	monthly := f.recurringPrice(prod.ID, 2900, "month", "")
	yearly := f.recurringPrice(prod.ID, 29000, "year", "")
	once := f.price(prod.ID, 9900, "")
	cu, err := f.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("ada@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	create := func(mode string, prices []string, mod func(*stripe.CheckoutSessionParams)) error {
		p := &stripe.CheckoutSessionParams{Mode: stripe.String(mode), SuccessURL: stripe.String("https://x.example/ok")}
		for _, id := range prices {
			p.LineItems = append(p.LineItems, &stripe.CheckoutSessionLineItemParams{Price: stripe.String(id), Quantity: stripe.Int64(1)})
		}
		if mod != nil {
			mod(p)
		}
		_, err := f.sc.CheckoutSessions.New(p)
		return err
	}
	stripeErr(t, create("payment", []string{monthly.ID}, nil), 400, "", "line_items[0][price]")
	stripeErr(t, create("subscription", []string{once.ID}, nil), 400, "", "line_items[0][price]")
	stripeErr(t, create("subscription", []string{monthly.ID, yearly.ID}, nil), 400, "", "line_items[1][price]")
	stripeErr(t, create("subscription", []string{monthly.ID}, func(p *stripe.CheckoutSessionParams) {
		p.PaymentIntentData = &stripe.CheckoutSessionPaymentIntentDataParams{Description: stripe.String("x")}
	}), 400, "", "payment_intent_data")
	stripeErr(t, create("payment", []string{once.ID}, func(p *stripe.CheckoutSessionParams) {
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(3)}
	}), 400, "", "subscription_data")
	stripeErr(t, create("subscription", []string{monthly.ID}, func(p *stripe.CheckoutSessionParams) {
		p.Customer, p.CustomerEmail = stripe.String(cu.ID), stripe.String("x@example.com")
	}), 400, "", "customer_email")
	stripeErr(t, create("subscription", []string{monthly.ID}, func(p *stripe.CheckoutSessionParams) {
		p.Customer = stripe.String("cus_nope")
	}), 400, stripe.ErrorCodeResourceMissing, "customer")
	stripeErr(t, create("subscription", []string{monthly.ID}, func(p *stripe.CheckoutSessionParams) {
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialEnd: stripe.Int64(start.Add(time.Hour).Unix())}
	}), 400, "", "subscription_data[trial_end]")
	if n := len(f.emu.Sessions()); n != 0 {
		t.Fatalf("refused requests created %d sessions", n)
	}

	// An existing customer is reused, not duplicated.
	s := f.subSession(monthly.ID, func(p *stripe.CheckoutSessionParams) { p.Customer = stripe.String(cu.ID) })
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	cs, _ := f.emu.Session(s.ID)
	if cs.Customer.ID != cu.ID || cs.CustomerDetails.Email != "ada@example.com" || len(f.eventsOf("customer.created")) != 1 {
		t.Fatalf("session customer %s (want %s), %d customers created", cs.Customer.ID, cu.ID, len(f.eventsOf("customer.created")))
	}
	if sub := f.sub(cs.Subscription.ID); sub.Customer.ID != cu.ID || sub.LatestInvoice.CustomerEmail != "ada@example.com" {
		t.Fatalf("subscription customer = %s", sub.Customer.ID)
	}
}

// TestSubscriptionDiscounts applies coupons through promotion codes at
// checkout and directly: each lasts for its duration, a once coupon is
// spent on the first invoice that charges (not a trial's), and a code is
// counted as redeemed only when the session completes.
func TestSubscriptionDiscounts(t *testing.T) {
	f := newFixture(t)
	pr := f.recurringPrice(f.product("Pro").ID, 1000, "month", "")
	coupon := func(params *stripe.CouponParams) string {
		t.Helper()
		c, err := f.sc.Coupons.New(params)
		if err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	once := coupon(&stripe.CouponParams{PercentOff: stripe.Float64(20), Duration: stripe.String("once")})
	repeating := coupon(&stripe.CouponParams{PercentOff: stripe.Float64(50), Duration: stripe.String("repeating"), DurationInMonths: stripe.Int64(3)})
	forever := coupon(&stripe.CouponParams{AmountOff: stripe.Int64(300), Currency: stripe.String("eur"), Duration: stripe.String("forever")})
	promo, err := f.emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "WELCOME", Coupon: once})
	if err != nil {
		t.Fatal(err)
	}
	withPromo := func(p *stripe.CheckoutSessionParams) {
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(promo)}}
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(14)}
	}

	// A declined attempt does not redeem the code; completion does.
	declined := f.subSession(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(promo)}}
	})
	if s, _ := f.emu.Session(declined.ID); s.AmountTotal != 800 {
		t.Fatalf("discounted session total = %d", s.AmountTotal)
	}
	if err := f.emu.PaySession(declined.ID, stripeemu.Pay{Email: "x@example.com", Decline: true}); !errors.Is(err, stripeemu.ErrCardDeclined) {
		t.Fatal(err)
	}
	if pc, _ := f.emu.PromotionCode(promo); pc.TimesRedeemed != 0 {
		t.Fatalf("a declined checkout redeemed the code %d times", pc.TimesRedeemed)
	}
	if inv := f.sub(f.emu.Subscriptions()[0].ID).LatestInvoice; inv.AmountDue != 800 || inv.Total != 800 || len(inv.TotalDiscountAmounts) != 1 {
		t.Fatalf("declined first invoice = due %d total %d", inv.AmountDue, inv.Total)
	}
	trial := f.subscribe(pr.ID, "ada@example.com", withPromo)
	if pc, _ := f.emu.PromotionCode(promo); pc.TimesRedeemed != 1 {
		t.Fatalf("completed checkout redeemed the code %d times", pc.TimesRedeemed)
	}
	if trial.Discount == nil || trial.Discount.Coupon.ID != once || trial.Discount.PromotionCode.ID != promo {
		t.Fatalf("subscription discount = %+v", trial.Discount)
	}

	direct := func(c string) string {
		t.Helper()
		s, err := f.emu.CreateSubscription(stripeemu.SubscriptionParams{Email: "d@example.com", Items: []stripeemu.LineItem{{Price: pr.ID}}, Coupon: c})
		if err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	rep, ever := direct(repeating), direct(forever)
	f.advanceTo(start.AddDate(0, 5, 0).Add(2 * time.Hour))
	paid := func(id string) []int64 {
		var out []int64
		for _, inv := range f.invoices(id) {
			out = append(out, inv.AmountPaid)
		}
		return out
	}
	for name, tc := range map[string]struct {
		id   string
		want []int64
	}{
		"once, after a trial": {trial.ID, []int64{0, 800, 1000, 1000, 1000, 1000}},
		"repeating 3 months":  {rep, []int64{500, 500, 500, 1000, 1000, 1000}},
		"forever":             {ever, []int64{700, 700, 700, 700, 700, 700}},
	} {
		if got := paid(tc.id); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: paid %v, want %v", name, got, tc.want)
		}
	}
	if s := f.sub(trial.ID); s.Discount != nil {
		t.Fatalf("a spent once discount is still on the subscription: %+v", s.Discount)
	}
	if s := f.sub(ever); s.Discount == nil || s.Discount.Coupon.ID != forever {
		t.Fatalf("forever discount = %+v", s.Discount)
	}
}
