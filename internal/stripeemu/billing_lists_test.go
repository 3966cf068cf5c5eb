// Tests of the billing lists and lookups: subscriptions with and without
// status=all, their filters and paging; invoices by subscription, customer,
// status and created; customers by email and by search; backdated history.

package stripeemu_test

import (
	"slices"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// listSubs lists subscription ids with params, newest first.
func (f *fixture) listSubs(params *stripe.SubscriptionListParams) []string {
	f.t.Helper()
	var out []string
	it := f.sc.Subscriptions.List(params)
	for it.Next() {
		out = append(out, it.Subscription().ID)
	}
	if it.Err() != nil {
		f.t.Fatal(it.Err())
	}
	return out
}

func TestListSubscriptionsByStatus(t *testing.T) {
	f := newFixture(t)
	prod := f.product("Pro")
	monthly := f.recurringPrice(prod.ID, 2900, "month", "")
	yearly := f.recurringPrice(prod.ID, 29000, "year", "")
	mk := func(p stripeemu.SubscriptionParams) string {
		t.Helper()
		f.advance(time.Minute)
		s, err := f.emu.CreateSubscription(p)
		if err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	active := mk(stripeemu.SubscriptionParams{Email: "a@example.com", Items: []stripeemu.LineItem{{Price: monthly.ID}}})
	trialing := mk(stripeemu.SubscriptionParams{Email: "b@example.com", Items: []stripeemu.LineItem{{Price: yearly.ID}}, TrialDays: 30})
	canceled := mk(stripeemu.SubscriptionParams{Email: "c@example.com", Items: []stripeemu.LineItem{{Price: monthly.ID}}})
	expired := mk(stripeemu.SubscriptionParams{Email: "d@example.com", Items: []stripeemu.LineItem{{Price: monthly.ID}}, Decline: true})
	incomplete := mk(stripeemu.SubscriptionParams{Email: "e@example.com", Items: []stripeemu.LineItem{{Price: monthly.ID}}, Decline: true})
	if err := f.emu.CancelSubscription(canceled); err != nil {
		t.Fatal(err)
	}
	f.advance(23*time.Hour - 30*time.Second) // expired's window ends; incomplete's has 30 s left
	if s := f.sub(expired); s.Status != stripe.SubscriptionStatusIncompleteExpired {
		t.Fatalf("expired = %s", s.Status)
	}
	if s := f.sub(incomplete); s.Status != stripe.SubscriptionStatusIncomplete {
		t.Fatalf("incomplete = %s", s.Status)
	}

	all := []string{incomplete, expired, canceled, trialing, active}
	for _, tc := range []struct {
		status string
		want   []string
	}{
		{"", []string{incomplete, expired, trialing, active}}, // Stripe omits canceled ones unless asked
		{"all", all},
		{"ended", []string{expired, canceled}},
		{"canceled", []string{canceled}},
		{"trialing", []string{trialing}},
		{"incomplete_expired", []string{expired}},
	} {
		params := &stripe.SubscriptionListParams{}
		if tc.status != "" {
			params.Status = stripe.String(tc.status)
		}
		sameStrings(t, "status="+tc.status, f.listSubs(params), tc.want)
	}
	_, err := f.sc.Subscriptions.List(&stripe.SubscriptionListParams{Status: stripe.String("nope")}).Next(), error(nil)
	if it := f.sc.Subscriptions.List(&stripe.SubscriptionListParams{Status: stripe.String("nope")}); it.Next() || it.Err() == nil {
		t.Fatalf("bad status accepted (%v)", err)
	}

	// Filters and paging.
	sameStrings(t, "price", f.listSubs(&stripe.SubscriptionListParams{Status: stripe.String("all"), Price: stripe.String(yearly.ID)}), []string{trialing})
	cus := f.sub(active).Customer.ID
	sameStrings(t, "customer", f.listSubs(&stripe.SubscriptionListParams{Status: stripe.String("all"), Customer: stripe.String(cus)}), []string{active})
	created := &stripe.SubscriptionListParams{Status: stripe.String("all"), CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: start.Add(3 * time.Minute).Unix()}}
	sameStrings(t, "created", f.listSubs(created), []string{incomplete, expired, canceled})
	paged := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	paged.Limit = stripe.Int64(2)
	sameStrings(t, "paged", f.listSubs(paged), all)
	// Expanding latest_invoice in a list saves a call per subscription.
	exp := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	exp.AddExpand("data.latest_invoice")
	it := f.sc.Subscriptions.List(exp)
	for it.Next() {
		if inv := it.Subscription().LatestInvoice; inv == nil || inv.Status == "" {
			t.Fatalf("latest_invoice not expanded on %s", it.Subscription().ID)
		}
	}
}

func TestListInvoices(t *testing.T) {
	f := newFixture(t)
	if err := f.emu.SetBillingSettings(stripeemu.BillingSettings{AfterRetries: "past_due"}); err != nil {
		t.Fatal(err)
	}
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	a := f.subscribe(pr.ID, "a@example.com")
	f.advance(time.Hour)
	b := f.subscribe(pr.ID, "b@example.com")
	if err := f.emu.FailPayments(b.Customer.ID, true); err != nil {
		t.Fatal(err)
	}
	f.advanceTo(start.AddDate(0, 2, 0).Add(3 * time.Hour))
	ids := func(params *stripe.InvoiceListParams) []string {
		t.Helper()
		var out []string
		it := f.sc.Invoices.List(params)
		for it.Next() {
			out = append(out, it.Invoice().ID)
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return out
	}
	invA, invB := f.invoices(a.ID), f.invoices(b.ID)
	if len(invA) != 3 || len(invB) != 3 {
		t.Fatalf("%d and %d invoices", len(invA), len(invB))
	}
	rev := func(invs []*stripe.Invoice) []string {
		var out []string
		for i := len(invs) - 1; i >= 0; i-- {
			out = append(out, invs[i].ID)
		}
		return out
	}
	sameStrings(t, "by customer", ids(&stripe.InvoiceListParams{Customer: stripe.String(b.Customer.ID)}), rev(invB))
	sameStrings(t, "open", ids(&stripe.InvoiceListParams{Status: stripe.String("open")}), []string{invB[2].ID, invB[1].ID})
	since := &stripe.InvoiceListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThan: start.AddDate(0, 1, 0).Add(30 * time.Minute).Unix()}}
	sameStrings(t, "created after the first renewal", ids(since), []string{invB[2].ID, invA[2].ID, invB[1].ID})
	all := ids(&stripe.InvoiceListParams{})
	if len(all) != 6 {
		t.Fatalf("%d invoices in all", len(all))
	}
	if it := f.sc.Invoices.List(&stripe.InvoiceListParams{Status: stripe.String("late")}); it.Next() || it.Err() == nil {
		t.Fatal("bad status accepted")
	}
	if _, err := f.sc.Invoices.Get("in_nope", nil); err == nil {
		t.Fatal("missing invoice found")
	}
	params := &stripe.InvoiceParams{}
	params.AddExpand("subscription")
	params.AddExpand("customer")
	got, err := f.sc.Invoices.Get(invB[1].ID, params)
	if err != nil || got.Subscription.Status != stripe.SubscriptionStatusPastDue || got.Customer.Email != "b@example.com" ||
		got.CustomerEmail != "b@example.com" {
		t.Fatalf("expanded invoice = %+v, %v", got, err)
	}
}

func TestCustomers(t *testing.T) {
	f := newFixture(t)
	params := &stripe.CustomerParams{Email: stripe.String("Ada@Example.com"), Name: stripe.String("Ada")}
	params.AddMetadata("user_id", "u-1")
	params.SetIdempotencyKey("paymentd-customer-u-1")
	cu, err := f.sc.Customers.New(params)
	if err != nil || cu.Metadata["user_id"] != "u-1" || cu.Email != "Ada@Example.com" {
		t.Fatalf("create customer = %+v, %v", cu, err)
	}
	if again, err := f.sc.Customers.New(params); err != nil || again.ID != cu.ID {
		t.Fatalf("idempotent create = %v, %v", again, err)
	}
	other, _ := f.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("bo@example.com")})
	f.advance(time.Minute)

	// An update records customer.updated with only what changed.
	if _, err := f.sc.Customers.Update(cu.ID, &stripe.CustomerParams{Email: stripe.String("ada@new.example"), Name: stripe.String("Ada")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sc.Customers.Update(cu.ID, &stripe.CustomerParams{Name: stripe.String("Ada")}); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.UpdateCustomer(cu.ID, stripeemu.CustomerUpdate{Name: stripe.String("Ada L.")}); err != nil {
		t.Fatal(err)
	}
	upd := f.eventsOf("customer.updated")
	if len(upd) != 2 || upd[0].Data.PreviousAttributes["email"] != "Ada@Example.com" || len(upd[0].Data.PreviousAttributes) != 1 ||
		upd[0].GetObjectValue("email") != "ada@new.example" || upd[1].Data.PreviousAttributes["name"] != "Ada" || upd[1].Request.ID != "" {
		t.Fatalf("customer.updated events = %+v", upd)
	}
	if n := len(f.eventsOf("customer.created")); n != 2 {
		t.Fatalf("%d customer.created", n)
	}
	_, err = f.sc.Customers.Update(cu.ID, &stripe.CustomerParams{Email: stripe.String("not-an-email")})
	stripeErr(t, err, 400, "", "email")
	_, err = f.sc.Customers.Update("cus_nope", &stripe.CustomerParams{Name: stripe.String("x")})
	stripeErr(t, err, 404, stripe.ErrorCodeResourceMissing, "")

	// The email filter of a list is exact and case-sensitive; search is
	// not.
	list := func(email string) []string {
		var out []string
		it := f.sc.Customers.List(&stripe.CustomerListParams{Email: stripe.String(email)})
		for it.Next() {
			out = append(out, it.Customer().ID)
		}
		return out
	}
	sameStrings(t, "list by email", list("ada@new.example"), []string{cu.ID})
	sameStrings(t, "list by other case", list("ADA@new.example"), nil)
	search := func(q string) ([]string, error) {
		var out []string
		it := f.sc.Customers.Search(&stripe.CustomerSearchParams{SearchParams: stripe.SearchParams{Query: q}})
		for it.Next() {
			out = append(out, it.Customer().ID)
		}
		return out, it.Err()
	}
	for q, want := range map[string][]string{
		"metadata['user_id']:'u-1'":                            {cu.ID},
		`email:"ADA@new.example"`:                              {cu.ID},
		"email:'bo@example.com' OR metadata['user_id']:'u-1'":  {other.ID, cu.ID},
		"email:'bo@example.com' AND metadata['user_id']:'u-1'": nil,
		"name:'ada l.'":                                        {cu.ID},
		"metadata['user_id']:'u-2'":                            nil,
	} {
		got, err := search(q)
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		sameStrings(t, "search "+q, got, want)
	}
	for _, q := range []string{"email:ada", "created>1 AND x:'y'", "email:'a' AND name:'b' OR phone:'c'"} {
		if _, err := search(q); err == nil {
			t.Fatalf("bad query %q accepted", q)
		}
	}
}

// TestBackdatedSubscriptionReplaysHistory creates a subscription fourteen
// months in the past, as a backfill test needs: its whole history is there,
// each object and event at its own time.
func TestBackdatedSubscriptionReplaysHistory(t *testing.T) {
	f := newFixture(t)
	f.clk.Set(start.AddDate(1, 2, 0).Add(2 * time.Hour))
	pr := f.recurringPrice(f.product("Pro").ID, 2900, "month", "")
	sub, err := f.emu.CreateSubscription(stripeemu.SubscriptionParams{Email: "old@example.com", Items: []stripeemu.LineItem{{Price: pr.ID}},
		Start: start, Metadata: map[string]string{"user_id": "u-old"}})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Created != start.Unix() || sub.StartDate != start.Unix() {
		t.Fatalf("backdated subscription created %d", sub.Created)
	}
	invs := f.invoices(sub.ID)
	if len(invs) != 15 {
		t.Fatalf("%d invoices replayed", len(invs))
	}
	for i, inv := range invs {
		if want := start.AddDate(0, i, 0).Unix(); inv.Created != want || inv.Status != stripe.InvoiceStatusPaid {
			t.Fatalf("invoice %d created %s status %s", i, time.Unix(inv.Created, 0).UTC(), inv.Status)
		}
	}
	evs := f.emu.Events()
	if evs[0].Type != "customer.created" || evs[0].Created != start.Unix() || !slices.IsSortedFunc(evs, func(a, b *stripe.Event) int {
		return int(a.Created - b.Created)
	}) {
		t.Fatalf("first event %s at %d", evs[0].Type, evs[0].Created)
	}
	if s := f.sub(sub.ID); s.Status != stripe.SubscriptionStatusActive || s.CurrentPeriodEnd != start.AddDate(1, 3, 0).Unix() {
		t.Fatalf("backdated now: %s until %s", s.Status, time.Unix(s.CurrentPeriodEnd, 0).UTC())
	}
	if _, err := f.emu.CreateSubscription(stripeemu.SubscriptionParams{Email: "x@example.com", Items: []stripeemu.LineItem{{Price: pr.ID}},
		Start: start.AddDate(5, 0, 0)}); err == nil {
		t.Fatal("a start in the future was accepted")
	}
}
