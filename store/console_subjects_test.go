package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/store"
)

// A subscription or order search by an id, an email or a status walks an
// index, never the whole table.
func TestSubscriptionSearchUsesItsIndexes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	for _, c := range []struct {
		s   store.SubscriptionSearch
		idx string
	}{
		{store.SubscriptionSearch{Field: store.SearchSubscription, Value: "sub_1", Limit: 50}, "subscriptions_stripe_subscription_id_key"},
		{store.SubscriptionSearch{Field: store.SearchInvoice, Value: "in_1", Limit: 50}, "invoices_pkey"},
		{store.SubscriptionSearch{Field: store.SearchCustomer, Value: "cus_1", Limit: 50}, "subscriptions_customer_idx"},
		{store.SubscriptionSearch{Field: store.SearchUserID, Value: "u", Limit: 50}, "subscriptions_user_idx"},
		{store.SubscriptionSearch{Field: store.SearchPurchaseID, Value: uuid.NewString(), Limit: 50}, "subscriptions_pkey"},
		{store.SubscriptionSearch{Field: store.SearchEmail, Value: "A@example.com", Limit: 50}, "subscriptions_email_idx"},
		{store.SubscriptionSearch{Status: "active", Limit: 50}, "subscriptions_status_idx"},
	} {
		sql, args, err := store.SubscriptionSearchSQL(c.s)
		if err != nil {
			t.Fatal(err)
		}
		if plan := explain(t, db, sql, args...); !strings.Contains(plan, c.idx) {
			t.Errorf("search %+v does not use %s:\n%s", c.s, c.idx, plan)
		}
	}
	for _, c := range []struct {
		s   store.OrderSearch
		idx string
	}{
		{store.OrderSearch{Field: store.SearchSession, Value: "cs_1", Limit: 50}, "orders_stripe_session_id_key"},
		{store.OrderSearch{Field: store.SearchPaymentIntent, Value: "pi_1", Limit: 50}, "orders_stripe_payment_intent_id_key"},
		{store.OrderSearch{Field: store.SearchCharge, Value: "ch_1", Limit: 50}, "orders_charge_idx"},
		{store.OrderSearch{Field: store.SearchUserID, Value: "u", Limit: 50}, "orders_user_idx"},
		{store.OrderSearch{Field: store.SearchPurchaseID, Value: uuid.NewString(), Limit: 50}, "orders_pkey"},
		{store.OrderSearch{Field: store.SearchEmail, Value: "A@example.com", Limit: 50}, "orders_email_idx"},
		{store.OrderSearch{Status: "paid", Limit: 50}, "orders_status_idx"},
	} {
		sql, args, err := store.OrderSearchSQL(c.s)
		if err != nil {
			t.Fatal(err)
		}
		if plan := explain(t, db, sql, args...); !strings.Contains(plan, c.idx) {
			t.Errorf("search %+v does not use %s:\n%s", c.s, c.idx, plan)
		}
	}
	for _, bad := range []store.SubscriptionSearch{
		{Limit: 0},
		{Field: store.SearchSession, Value: "cs_1", Limit: 50},
		{Status: "completed", Limit: 50},
	} {
		if _, _, err := store.SubscriptionSearchSQL(bad); err == nil {
			t.Errorf("search %+v is accepted", bad)
		}
	}
}

// Subscriptions page newest first by keyset, filtered by field, status and
// date; an invoice finds its subscription.
func TestSearchSubscriptionsPagesByKeyset(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	var subs []store.Subscription
	for i := range 5 {
		subs = append(subs, newSubscription(t, db, func(s *store.Subscription) {
			s.CreatedAt = subT0.Add(time.Duration(i) * time.Hour)
			if i == 4 {
				s.Status, s.Entitled, s.CustomerEmail = store.SubscriptionCanceled, false, ptr("grace@example.com")
			}
		}))
	}
	if err := db.UpsertInvoices(ctx, []store.Invoice{{ID: "in_1", SubscriptionID: subs[2].ID, Status: store.InvoiceOpen,
		Currency: "usd", AmountDue: 2900, AmountRemaining: 2900, CreatedAt: subT0}}, subT0); err != nil {
		t.Fatal(err)
	}
	ids := func(ss []store.Subscription) (out []string) {
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return out
	}
	first, more, err := db.SearchSubscriptions(ctx, store.SubscriptionSearch{Field: store.SearchCustomer, Value: "cus_1", Limit: 2})
	if err != nil || !more || !same(ids(first), []string{subs[4].ID, subs[3].ID}) {
		t.Fatalf("first page = %v, %v, %v", ids(first), more, err)
	}
	next, more, err := db.SearchSubscriptions(ctx, store.SubscriptionSearch{Field: store.SearchCustomer, Value: "cus_1", Limit: 2,
		After: &store.PurchaseCursor{CreatedAt: first[1].CreatedAt, ID: first[1].ID}})
	if err != nil || !more || !same(ids(next), []string{subs[2].ID, subs[1].ID}) {
		t.Errorf("second page = %v, %v, %v", ids(next), more, err)
	}
	for _, c := range []struct {
		s    store.SubscriptionSearch
		want []string
	}{
		{store.SubscriptionSearch{Field: store.SearchInvoice, Value: "in_1", Limit: 10}, []string{subs[2].ID}},
		{store.SubscriptionSearch{Field: store.SearchEmail, Value: "GRACE@example.com", Limit: 10}, []string{subs[4].ID}},
		{store.SubscriptionSearch{Status: store.SubscriptionCanceled, Limit: 10}, []string{subs[4].ID}},
		{store.SubscriptionSearch{From: subT0.Add(time.Hour), To: subT0.Add(3 * time.Hour), Limit: 10}, []string{subs[2].ID, subs[1].ID}},
		{store.SubscriptionSearch{Field: store.SearchSubscription, Value: subs[0].StripeSubscriptionID, Limit: 10}, []string{subs[0].ID}},
		{store.SubscriptionSearch{Field: store.SearchInvoice, Value: "in_none", Limit: 10}, nil},
	} {
		got, _, err := db.SearchSubscriptions(ctx, c.s)
		if err != nil || !same(ids(got), c.want) {
			t.Errorf("search %+v = %v, %v; want %v", c.s, ids(got), err, c.want)
		}
	}
}
