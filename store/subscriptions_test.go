package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

var subT0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// same compares rows by their JSON, so times compare by instant.
func same(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// newSubscription is an active monthly subscription as the reconciler
// records it; edit adjusts it before it is inserted.
func newSubscription(t *testing.T, db *store.DB, edit func(*store.Subscription)) store.Subscription {
	t.Helper()
	s := store.Subscription{ID: uuid.NewString(), StripeSubscriptionID: "sub_" + uuid.NewString()[:8],
		UserID: ptr("user-1"), OrganizationID: ptr("org_1"), StripeCustomerID: "cus_1", CustomerEmail: ptr("ada@example.com"),
		ProductKey: "pro", PriceKey: "pro_monthly", StripePriceID: "price_1", Status: store.SubscriptionActive,
		Quantity: 1, Amount: 2900, Currency: "usd", Interval: "month", IntervalCount: 1,
		CurrentPeriodStart: subT0, CurrentPeriodEnd: subT0.AddDate(0, 1, 0), StartedAt: ptr(subT0), Entitled: true,
		AccessState: store.AccessNone, NextCheckAt: ptr(subT0.AddDate(0, 1, 0)), CreatedAt: subT0, UpdatedAt: subT0}
	if edit != nil {
		edit(&s)
	}
	inserted, err := db.InsertSubscription(context.Background(), s)
	if err != nil || !inserted {
		t.Fatalf("insert subscription: %v, %v", inserted, err)
	}
	return s
}

func TestSubscriptionRowsRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	s := newSubscription(t, db, nil)
	got, err := db.GetSubscription(ctx, s.ID)
	if err != nil || !same(got, s) {
		t.Fatalf("GetSubscription = %+v, %v\nwant %+v", got, err, s)
	}
	dup := s
	dup.ID = uuid.NewString()
	if again, err := db.InsertSubscription(ctx, dup); err != nil || again {
		t.Errorf("a second row for the same Stripe subscription: inserted %v, %v", again, err)
	}
	s.Status, s.Entitled, s.CancelAtPeriodEnd, s.Transitions = store.SubscriptionCanceled, false, true, 3
	s.EndedAt, s.CanceledAt, s.NextCheckAt = ptr(subT0.Add(time.Hour)), ptr(subT0), nil
	now := subT0.Add(2 * time.Hour)
	err = db.InTx(ctx, func(q *store.Queries) error {
		if _, err := q.LockSubscriptionByStripeID(ctx, s.StripeSubscriptionID); err != nil {
			return err
		}
		return q.UpdateSubscription(ctx, s, now)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.UpdatedAt = now
	byStripe, err := db.SubscriptionsByStripeIDs(ctx, []string{s.StripeSubscriptionID, "sub_other"})
	if err != nil || len(byStripe) != 1 || !same(byStripe[s.StripeSubscriptionID], s) {
		t.Fatalf("SubscriptionsByStripeIDs = %+v, %v\nwant %+v", byStripe, err, s)
	}
	if _, err := db.GetSubscription(ctx, uuid.NewString()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing subscription: %v", err)
	}
	// The database refuses an entitlement its status cannot give.
	bad := s
	bad.ID, bad.StripeSubscriptionID, bad.Entitled = uuid.NewString(), "sub_bad", true
	if _, err := db.InsertSubscription(ctx, bad); err == nil {
		t.Error("a canceled subscription was recorded as entitled")
	}
	// past_due_since is set exactly while the subscription is past_due.
	for _, edit := range []func(*store.Subscription){
		func(b *store.Subscription) { b.Status = store.SubscriptionPastDue },
		func(b *store.Subscription) { b.PastDueSince = ptr(subT0) },
	} {
		bad := s
		bad.ID, bad.StripeSubscriptionID = uuid.NewString(), "sub_bad_"+uuid.NewString()[:4]
		edit(&bad)
		if _, err := db.InsertSubscription(ctx, bad); err == nil {
			t.Errorf("recorded %s with past_due_since %v", bad.Status, bad.PastDueSince)
		}
	}
	pastDue := s
	pastDue.ID, pastDue.StripeSubscriptionID, pastDue.Status, pastDue.PastDueSince = uuid.NewString(), "sub_past_due",
		store.SubscriptionPastDue, ptr(subT0)
	pastDue.EndedAt, pastDue.CanceledAt = nil, nil
	if _, err := db.InsertSubscription(ctx, pastDue); err != nil {
		t.Error(err)
	} else if got, err := db.GetSubscription(ctx, pastDue.ID); err != nil || !same(got, pastDue) {
		t.Errorf("past_due row = %+v, %v\nwant %+v", got, err, pastDue)
	}
}

// TestDueSubscriptionsAreThoseWhoseNextCheckCame: the sweep finds the
// subscriptions whose next check has come and that were not compared since
// (or not for the recheck interval), never the ended ones.
func TestDueSubscriptionsAreThoseWhoseNextCheckCame(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	now := subT0.Add(40 * 24 * time.Hour)
	due := newSubscription(t, db, nil) // period ended 10 days ago, never checked
	checkedSince := newSubscription(t, db, func(s *store.Subscription) { s.CheckedAt = ptr(now.Add(-time.Minute)) })
	checkedLongAgo := newSubscription(t, db, func(s *store.Subscription) { s.CheckedAt = ptr(now.Add(-2 * time.Hour)) })
	newSubscription(t, db, func(s *store.Subscription) { s.NextCheckAt = ptr(now.Add(time.Hour)) })
	newSubscription(t, db, func(s *store.Subscription) {
		s.Status, s.Entitled, s.EndedAt = store.SubscriptionCanceled, false, ptr(subT0)
	})
	newSubscription(t, db, func(s *store.Subscription) { s.NextCheckAt = nil })
	got, err := db.DueSubscriptions(ctx, now, now.Add(-time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ID)
	}
	want := map[string]bool{due.ID: true, checkedLongAgo.ID: true}
	if len(ids) != 2 || !want[ids[0]] || !want[ids[1]] {
		t.Errorf("due = %v; want %s and %s, not %s", ids, due.ID, checkedLongAgo.ID, checkedSince.ID)
	}
	if err := db.MarkSubscriptionChecked(ctx, due.ID, now); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.DueSubscriptions(ctx, now, now.Add(-time.Hour), 10); len(got) != 1 || got[0].ID != checkedLongAgo.ID {
		t.Errorf("after checking one: %+v", got)
	}
}

func TestInvoicesUpsertInPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	s := newSubscription(t, db, nil)
	inv := store.Invoice{ID: "in_1", SubscriptionID: s.ID, Status: store.InvoiceOpen, BillingReason: "subscription_cycle",
		Number: ptr("ABC-0001"), Currency: "usd", AmountDue: 2900, AmountRemaining: 2900, AttemptCount: 1,
		NextPaymentAttempt: ptr(subT0.Add(72 * time.Hour)), PeriodStart: ptr(subT0), PeriodEnd: ptr(subT0.AddDate(0, 1, 0)),
		FirstFailedAt: ptr(subT0), CreatedAt: subT0}
	if err := db.UpsertInvoices(ctx, []store.Invoice{inv}, subT0); err != nil {
		t.Fatal(err)
	}
	inv.Status, inv.AmountPaid, inv.AmountRemaining, inv.AttemptCount = store.InvoicePaid, 2900, 0, 2
	inv.NextPaymentAttempt, inv.PaidAt = nil, ptr(subT0.Add(72*time.Hour))
	if err := db.UpsertInvoices(ctx, []store.Invoice{inv}, subT0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	inv.UpdatedAt = subT0.Add(time.Hour)
	got, err := db.InvoicesByIDs(ctx, []string{"in_1", "in_2"})
	if err != nil || len(got) != 1 || !same(got["in_1"], inv) {
		t.Fatalf("InvoicesByIDs = %+v, %v\nwant %+v", got, err, inv)
	}
	// The database refuses a paid invoice without its payment time.
	bad := inv
	bad.ID, bad.PaidAt = "in_bad", nil
	if err := db.UpsertInvoices(ctx, []store.Invoice{bad}, subT0); err == nil {
		t.Error("a paid invoice without paid_at was recorded")
	}
}

// TestCustomerContactReachesAccountsAndSubscriptions: a customer's new
// email and name are written to the account and the subscriptions that
// name the customer, and writing them again changes nothing.
func TestCustomerContactReachesAccountsAndSubscriptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if got, err := db.AccountCustomer(ctx, "user-1"); err != nil || got != "" {
		t.Fatalf("no account: %q, %v", got, err)
	}
	first, err := db.SetAccountCustomer(ctx, "user-1", "ada@example.com", "cus_1", subT0)
	if err != nil || first != "cus_1" {
		t.Fatalf("SetAccountCustomer = %q, %v", first, err)
	}
	// A second customer for the same user is not recorded over the first.
	if again, err := db.SetAccountCustomer(ctx, "user-1", "", "cus_2", subT0); err != nil || again != "cus_1" {
		t.Fatalf("second SetAccountCustomer = %q, %v", again, err)
	}
	s := newSubscription(t, db, nil)
	n, err := db.SetCustomerContact(ctx, "cus_1", "ada@new.example", "Ada King", subT0)
	if err != nil || n != 2 {
		t.Fatalf("SetCustomerContact = %d, %v; want the account and the subscription", n, err)
	}
	c, err := db.AccountContactOf(ctx, "user-1")
	if err != nil || c.Email == nil || *c.Email != "ada@new.example" || c.Name == nil || *c.Name != "Ada King" {
		t.Errorf("account contact = %+v, %v", c, err)
	}
	if got, _ := db.GetSubscription(ctx, s.ID); got.CustomerEmail == nil || *got.CustomerEmail != "ada@new.example" {
		t.Errorf("subscription email = %v", got.CustomerEmail)
	}
	if n, err := db.SetCustomerContact(ctx, "cus_1", "ada@new.example", "Ada King", subT0); err != nil || n != 0 {
		t.Errorf("the same contact again changed %d rows, %v", n, err)
	}
	if known, err := db.KnownCustomer(ctx, "cus_1"); err != nil || !known {
		t.Errorf("KnownCustomer(cus_1) = %v, %v", known, err)
	}
	if known, _ := db.KnownCustomer(ctx, "cus_stranger"); known {
		t.Error("a stranger's customer is known")
	}
}

// TestGrantsAcrossPurchasesAndSubscriptions: an account another entitled
// subject grants is found from either side, and only while that subject
// entitles it.
func TestGrantsAcrossPurchasesAndSubscriptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	s := newSubscription(t, db, nil)
	pid := paidPurchase(t, db, store.PurchaseCompleted)
	sg, err := db.RecordSubscriptionGrantAttempt(ctx, store.Grant{SubscriptionID: s.ID, Provider: store.ProviderGitHub,
		GitHubUserID: 42, GitHubLogin: "alice"}, subT0)
	if err != nil || sg.SubscriptionID != s.ID || sg.PurchaseID != "" || sg.State != store.GrantPending {
		t.Fatalf("subscription grant = %+v, %v", sg, err)
	}
	if again, err := db.RecordSubscriptionGrantAttempt(ctx, store.Grant{SubscriptionID: s.ID, Provider: store.ProviderGitHub,
		GitHubUserID: 42, Preexisting: true}, subT0); err != nil || again.ID != sg.ID || again.Preexisting {
		t.Fatalf("retry = %+v, %v", again, err)
	}
	pg, err := db.RecordGrantAttempt(ctx, store.Grant{PurchaseID: pid, Provider: store.ProviderGitHub, GitHubUserID: 42,
		GitHubLogin: "alice"}, subT0)
	if err != nil {
		t.Fatal(err)
	}
	if others, err := db.GrantsToGitHubUser(ctx, 42, "alice", pid); err != nil || len(others) != 1 || others[0].ID != sg.ID {
		t.Errorf("from the purchase: %+v, %v; want the subscription's grant", others, err)
	}
	if others, err := db.GrantsToGitHubUser(ctx, 42, "alice", s.ID); err != nil || len(others) != 1 || others[0].ID != pg.ID {
		t.Errorf("from the subscription: %+v, %v; want the purchase's grant", others, err)
	}
	if gs, err := db.SubscriptionGrants(ctx, s.ID); err != nil || len(gs) != 1 || gs[0].ID != sg.ID {
		t.Errorf("SubscriptionGrants = %+v, %v", gs, err)
	}
	if gs, err := db.PurchaseGrants(ctx, pid); err != nil || len(gs) != 1 || gs[0].ID != pg.ID {
		t.Errorf("PurchaseGrants = %+v, %v", gs, err)
	}
	s.Status, s.Entitled = store.SubscriptionUnpaid, false
	if err := db.UpdateSubscription(ctx, s, subT0); err != nil {
		t.Fatal(err)
	}
	if others, err := db.GrantsToGitHubUser(ctx, 42, "alice", pid); err != nil || len(others) != 0 {
		t.Errorf("an unpaid subscription still counts: %+v, %v", others, err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO access_grants (provider, state, created_at, updated_at)
		VALUES ('webhook', 'pending', now(), now())`); err == nil {
		t.Error("a grant for neither a purchase nor a subscription was recorded")
	}
}

// TestProductSubscriptionsOf: a user's subscriptions to a product in any
// status and organization, unclaimed ones on their customer, and (with an
// organization) that organization's, whoever's; not another product's,
// nor another user's elsewhere.
func TestProductSubscriptionsOf(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	mine := newSubscription(t, db, func(s *store.Subscription) { s.OrganizationID = nil })
	mineEnded := newSubscription(t, db, func(s *store.Subscription) {
		s.Status, s.Entitled, s.NextCheckAt, s.CreatedAt = store.SubscriptionCanceled, false, nil, subT0.Add(-time.Hour)
	})
	unclaimed := newSubscription(t, db, func(s *store.Subscription) {
		s.UserID, s.OrganizationID, s.CreatedAt = nil, nil, subT0.Add(-2*time.Hour)
	})
	orgs := newSubscription(t, db, func(s *store.Subscription) {
		s.UserID, s.OrganizationID, s.StripeCustomerID = ptr("user-2"), ptr("org_7"), "cus_2"
		s.CreatedAt = subT0.Add(-3 * time.Hour)
	})
	newSubscription(t, db, func(s *store.Subscription) { s.ProductKey = "other" })
	newSubscription(t, db, func(s *store.Subscription) { s.UserID, s.StripeCustomerID = ptr("user-3"), "cus_3" })
	newSubscription(t, db, func(s *store.Subscription) { s.UserID, s.StripeCustomerID = nil, "cus_3" })

	ids := func(ss []store.Subscription) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return out
	}
	for _, c := range []struct {
		who  store.Subscriber
		want []store.Subscription
	}{
		{store.Subscriber{UserID: "user-1", CustomerID: "cus_1"}, []store.Subscription{mine, mineEnded, unclaimed}},
		{store.Subscriber{UserID: "user-1"}, []store.Subscription{mine, mineEnded}},
		{store.Subscriber{UserID: "user-1", CustomerID: "cus_1", OrganizationID: "org_7"},
			[]store.Subscription{mine, mineEnded, unclaimed, orgs}},
		{store.Subscriber{UserID: "user-9", CustomerID: "cus_9"}, nil},
	} {
		got, err := db.ProductSubscriptionsOf(context.Background(), c.who, "pro")
		if err != nil || !same(ids(got), ids(c.want)) {
			t.Errorf("ProductSubscriptionsOf(%+v) = %v (%v), want %v", c.who, ids(got), err, ids(c.want))
		}
	}
}
