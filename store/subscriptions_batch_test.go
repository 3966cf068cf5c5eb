package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// TestSubscriptionPageWrite: a page's rows are read locked with the ids
// taken, the invoices, the unpaid failed invoices of each and the hints in
// one call, and written in one:
// every column of a new row, a changed row (stamped updated_at) and a row
// only checked round-trips as the single-row statements write it; a Stripe
// subscription recorded meanwhile is not inserted again and not counted.
func TestSubscriptionPageWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	changed := newSubscription(t, db, nil)
	checked := newSubscription(t, db, func(s *store.Subscription) { s.UserID, s.OrganizationID = nil, nil })
	fresh := store.Subscription{ID: uuid.NewString(), StripeSubscriptionID: "sub_fresh", UserID: ptr("user-2"),
		StripeCustomerID: "cus_2", ProductKey: "team", PriceKey: "team_yearly", StripePriceID: "price_y",
		Status: store.SubscriptionTrialing, Quantity: 3, Amount: 87000, Currency: "eur", Interval: "year",
		IntervalCount: 2, CurrentPeriodStart: subT0, CurrentPeriodEnd: subT0.AddDate(2, 0, 0),
		TrialEnd: ptr(subT0.AddDate(0, 0, 14)), CancelAtPeriodEnd: true, CanceledAt: ptr(subT0.Add(time.Minute)),
		LatestInvoiceID: ptr("in_fresh"), StartedAt: ptr(subT0), Entitled: true, GraceUntil: ptr(subT0.Add(time.Hour)),
		AccessState: store.AccessGranted, Transitions: 2, NextCheckAt: ptr(subT0.AddDate(0, 0, 7)),
		CheckedAt: ptr(subT0.Add(time.Second)), CreatedAt: subT0.Add(-time.Hour), UpdatedAt: subT0}
	if _, err := db.InsertHint(ctx, "evt_1", "customer.subscription.updated", changed.StripeSubscriptionID, subT0); err != nil {
		t.Fatal(err)
	}
	oldInv := store.Invoice{ID: "in_old", SubscriptionID: changed.ID, Status: store.InvoiceOpen, Currency: "usd",
		AmountDue: 2900, AmountRemaining: 2900, CreatedAt: subT0}
	failedInv := store.Invoice{ID: "in_failed", SubscriptionID: changed.ID, Status: store.InvoiceUncollectible,
		Currency: "usd", AmountDue: 2900, AmountRemaining: 2900, AttemptCount: 4, FirstFailedAt: ptr(subT0), CreatedAt: subT0}
	paidAfterFailing := store.Invoice{ID: "in_recovered", SubscriptionID: changed.ID, Status: store.InvoicePaid,
		Currency: "usd", AmountDue: 2900, AmountPaid: 2900, AttemptCount: 2, PaidAt: ptr(subT0), FirstFailedAt: ptr(subT0),
		CreatedAt: subT0}
	if err := db.UpsertInvoices(ctx, []store.Invoice{oldInv, failedInv, paidAfterFailing}, subT0); err != nil {
		t.Fatal(err)
	}
	now := subT0.Add(3 * time.Hour)
	changed.Status, changed.Entitled, changed.PriceKey, changed.Transitions = store.SubscriptionPastDue, false, "pro_yearly", 4
	changed.GraceUntil, changed.PastDueSince, changed.CheckedAt, changed.NextCheckAt = ptr(now), ptr(subT0), ptr(now), nil
	paid := oldInv
	paid.Status, paid.AmountPaid, paid.AmountRemaining, paid.PaidAt = store.InvoicePaid, 2900, 0, ptr(now)
	newInv := store.Invoice{ID: "in_fresh", SubscriptionID: fresh.ID, Status: store.InvoiceDraft, BillingReason: "manual",
		Number: ptr("N-1"), Currency: "eur", AmountDue: 1, HostedInvoiceURL: ptr("https://x.test/i"), AttemptCount: 0,
		NextPaymentAttempt: ptr(now), PeriodStart: ptr(subT0), PeriodEnd: ptr(now), FirstFailedAt: ptr(subT0),
		CreatedAt: subT0}
	var inserted int
	err := db.InTx(ctx, func(q *store.Queries) error {
		st, err := q.LockSubscriptionWrite(ctx, []string{changed.StripeSubscriptionID, checked.StripeSubscriptionID,
			"sub_fresh"}, []string{fresh.ID, checked.ID}, []string{"in_old", "in_fresh"})
		if err != nil {
			return err
		}
		if len(st.Rows) != 2 || !same(st.Rows[checked.StripeSubscriptionID], checked) || len(st.Taken) != 1 ||
			!st.Taken[checked.ID] || len(st.Invoices) != 1 || st.Invoices["in_old"].Status != store.InvoiceOpen ||
			len(st.Hinted) != 1 || !st.Hinted[changed.StripeSubscriptionID] {
			t.Errorf("write state: %+v", st)
		}
		if f := st.Failed[changed.ID]; len(st.Failed) != 1 || len(f) != 1 || f[0].ID != "in_failed" ||
			!f[0].FirstFailedAt.Equal(subT0) {
			t.Errorf("unpaid failed invoices %+v, want in_failed alone", st.Failed)
		}
		inserted, err = q.WriteSubscriptions(ctx, store.SubscriptionWrites{Inserts: []store.Subscription{fresh},
			Updates: []store.Subscription{changed}, Checked: []string{checked.ID},
			Invoices: []store.Invoice{oldInv, newInv, paid}}, now)
		return err
	})
	if err != nil || inserted != 1 {
		t.Fatalf("write: %d inserted, %v", inserted, err)
	}
	changed.UpdatedAt, checked.CheckedAt = now, ptr(now)
	paid.UpdatedAt, newInv.UpdatedAt = now, now
	for _, want := range []store.Subscription{fresh, changed, checked} {
		if got, err := db.GetSubscription(ctx, want.ID); err != nil || !same(got, want) {
			t.Errorf("%s = %+v, %v\nwant %+v", want.StripeSubscriptionID, got, err, want)
		}
	}
	got, err := db.InvoicesByIDs(ctx, []string{"in_old", "in_fresh"})
	if err != nil || !same(got["in_old"], paid) || !same(got["in_fresh"], newInv) {
		t.Errorf("invoices = %+v, %v\nwant %+v and %+v (an id given twice is written as its last)", got, err, paid, newInv)
	}

	again := fresh
	again.ID = uuid.NewString()
	err = db.InTx(ctx, func(q *store.Queries) error {
		inserted, err = q.WriteSubscriptions(ctx, store.SubscriptionWrites{Inserts: []store.Subscription{again}}, now)
		return err
	})
	if err != nil || inserted != 0 {
		t.Errorf("a Stripe subscription recorded meanwhile: %d inserted, %v", inserted, err)
	}
	if n, err := db.WriteSubscriptions(ctx, store.SubscriptionWrites{}, now); err != nil || n != 0 {
		t.Errorf("an empty write: %d, %v", n, err)
	}
}
