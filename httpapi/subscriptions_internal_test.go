package httpapi

import (
	"testing"

	"github.com/paymentd/paymentd/store"
)

// TestSubscriptionTermsFor: which subscriptions block a new checkout for
// the product (the caller's, in the same organization, not ended), and
// that any subscription to it, ended or another's in the organization,
// spends the trial.
func TestSubscriptionTermsFor(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	me := store.Subscriber{UserID: "u1", CustomerID: "cus_1"}
	inOrg := store.Subscriber{UserID: "u1", CustomerID: "cus_1", OrganizationID: "org_1"}
	sub := func(user, org *string, customer string, st store.SubscriptionStatus) store.Subscription {
		return store.Subscription{UserID: user, OrganizationID: org, StripeCustomerID: customer, Status: st}
	}
	cases := []struct {
		name  string
		ss    []store.Subscription
		who   store.Subscriber
		open  bool
		trial bool
	}{
		{"first ever", nil, me, false, true},
		{"trialing", []store.Subscription{sub(str("u1"), nil, "cus_1", store.SubscriptionTrialing)}, me, true, false},
		{"active", []store.Subscription{sub(str("u1"), nil, "cus_1", store.SubscriptionActive)}, me, true, false},
		{"past_due", []store.Subscription{sub(str("u1"), nil, "cus_1", store.SubscriptionPastDue)}, me, true, false},
		{"unpaid", []store.Subscription{sub(str("u1"), nil, "cus_1", store.SubscriptionUnpaid)}, me, true, false},
		{"incomplete", []store.Subscription{sub(str("u1"), nil, "cus_1", store.SubscriptionIncomplete)}, me, true, false},
		{"paused", []store.Subscription{sub(str("u1"), nil, "cus_1", store.SubscriptionPaused)}, me, true, false},
		{"canceled", []store.Subscription{sub(str("u1"), nil, "cus_1", store.SubscriptionCanceled)}, me, false, false},
		{"incomplete_expired", []store.Subscription{sub(str("u1"), nil, "cus_1", store.SubscriptionIncompleteExpired)},
			me, false, false},
		{"unclaimed on my customer", []store.Subscription{sub(nil, nil, "cus_1", store.SubscriptionTrialing)}, me, true, false},
		{"unclaimed on another customer, in my organization",
			[]store.Subscription{sub(nil, str("org_1"), "cus_9", store.SubscriptionActive)}, inOrg, false, false},
		{"another user's in my organization",
			[]store.Subscription{sub(str("u2"), str("org_1"), "cus_2", store.SubscriptionActive)}, inOrg, false, false},
		{"mine in another organization",
			[]store.Subscription{sub(str("u1"), str("org_2"), "cus_1", store.SubscriptionActive)}, inOrg, false, false},
		{"mine in an organization, checkout for myself",
			[]store.Subscription{sub(str("u1"), str("org_1"), "cus_1", store.SubscriptionActive)}, me, false, false},
		{"mine in the same organization", []store.Subscription{
			sub(str("u1"), nil, "cus_1", store.SubscriptionCanceled),
			sub(str("u1"), str("org_1"), "cus_1", store.SubscriptionTrialing)}, inOrg, true, false},
	}
	for _, c := range cases {
		got := subscriptionTermsFor(c.ss, c.who)
		if (got.open != nil) != c.open || got.trial != c.trial {
			t.Errorf("%s: open %v trial %v, want open %v trial %v", c.name, got.open != nil, got.trial, c.open, c.trial)
		}
	}
}
