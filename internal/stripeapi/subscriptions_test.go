package stripeapi_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// TestSubscriptionCallsAgainstTheEmulator runs the subscription calls
// against the Stripe emulator, where they have effects to observe: the
// contract suite proves Stripe accepts them, this that they do what
// paymentd needs (metadata where it is read back, canceled subscriptions
// in the backfill list, invoices since a time).
func TestSubscriptionCallsAgainstTheEmulator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	emu := stripeemu.New(stripeemu.Options{Clock: clk, Seed: 3})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	emu.SetBaseURL(srv.URL)
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_emu", APIBase: srv.URL, MaxRetries: -1, RateLimit: 1000}))

	prod, err := api.CreateProduct(ctx, stripeapi.ProductSpec{Key: "pro", Name: "Pro"}, "")
	if err != nil {
		t.Fatal(err)
	}
	price, err := api.CreateRecurringPrice(ctx, stripeapi.RecurringPriceSpec{PriceSpec: stripeapi.PriceSpec{ProductID: prod.ID,
		LookupKey: "pro_monthly", Currency: "usd", Amount: 2900}, Interval: "month"}, "")
	if err != nil || price.Recurring == nil || price.Recurring.Interval != "month" {
		t.Fatalf("recurring price = %+v, %v", price, err)
	}
	if got, err := api.PricesByLookupKeys(ctx, []string{"pro_monthly"}); err != nil || len(got) != 1 || got[0].Recurring.IntervalCount != 1 {
		t.Fatalf("lookup of the recurring price = %v, %v", got, err)
	}

	cus, err := api.CreateCustomer(ctx, stripeapi.CustomerSpec{Email: "ada@example.com", Name: "Ada", Metadata: map[string]string{"user_id": "u-1"}}, "paymentd-customer-u-1")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := api.CreateCustomer(ctx, stripeapi.CustomerSpec{Email: "ada@example.com", Name: "Ada", Metadata: map[string]string{"user_id": "u-1"}}, "paymentd-customer-u-1"); err != nil || again.ID != cus.ID {
		t.Fatalf("retried create made another customer: %v, %v", again, err)
	}
	s, err := api.CreateSubscriptionCheckoutSession(ctx, stripeapi.SubscriptionCheckoutRequest{PriceID: price.ID, SuccessURL: "http://app.example/?s={CHECKOUT_SESSION_ID}",
		CancelURL: "http://app.example/", Metadata: map[string]string{"user_id": "u-1"}, SubscriptionMetadata: map[string]string{"user_id": "u-1", "organization_id": "org-1"},
		CustomerID: cus.ID, TrialDays: 14}, "paymentd-subscription-checkout-1")
	if err != nil || s.Mode != stripe.CheckoutSessionModeSubscription || s.Customer.ID != cus.ID {
		t.Fatalf("subscription checkout = %+v, %v", s, err)
	}
	if err := emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	s, err = api.CheckoutSession(ctx, s.ID)
	if err != nil || s.Subscription == nil {
		t.Fatalf("paid session = %+v, %v", s, err)
	}
	sub, err := api.Subscription(ctx, s.Subscription.ID)
	if err != nil || sub.Status != stripe.SubscriptionStatusTrialing || sub.Metadata["organization_id"] != "org-1" || sub.LatestInvoice.Status != stripe.InvoiceStatusPaid {
		t.Fatalf("subscription = %+v, %v", sub, err)
	}

	// A second subscription, canceled: the backfill list still has it.
	other, err := emu.CreateSubscription(stripeemu.SubscriptionParams{Customer: cus.ID, Items: []stripeemu.LineItem{{Price: price.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.CancelSubscription(other.ID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(20 * 24 * time.Hour)
	var listed []string
	if err := api.ListSubscriptions(ctx, time.Time{}, func(s *stripe.Subscription) error {
		if s.LatestInvoice == nil || s.LatestInvoice.Status == "" {
			t.Errorf("%s listed without its latest invoice", s.ID)
		}
		listed = append(listed, string(s.Status))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || listed[0] != "canceled" || listed[1] != "active" {
		t.Fatalf("listed %v", listed)
	}
	var invs, recent int
	if err := api.SubscriptionInvoices(ctx, sub.ID, func(*stripe.Invoice) error { invs++; return nil }); err != nil || invs != 2 {
		t.Fatalf("%d invoices of the subscription, %v", invs, err)
	}
	var renewal *stripe.Invoice
	if err := api.ListInvoices(ctx, t0.Add(time.Hour), func(inv *stripe.Invoice) error { recent++; renewal = inv; return nil }); err != nil || recent != 1 {
		t.Fatalf("%d invoices since the checkout, %v", recent, err)
	}
	if inv, err := api.Invoice(ctx, renewal.ID); err != nil || inv.BillingReason != stripe.InvoiceBillingReasonSubscriptionCycle || inv.AmountPaid != 2900 {
		t.Fatalf("renewal invoice = %+v, %v", inv, err)
	}

	// Customer lookups and updates.
	if _, err := api.UpdateCustomer(ctx, cus.ID, stripeapi.CustomerSpec{Email: "ada@new.example"}); err != nil {
		t.Fatal(err)
	}
	if c, err := api.Customer(ctx, cus.ID); err != nil || c.Email != "ada@new.example" || c.Name != "Ada" || c.Metadata["user_id"] != "u-1" {
		t.Fatalf("updated customer = %+v, %v", c, err)
	}
	var byEmail int
	if err := api.CustomersByEmail(ctx, "ada@new.example", func(*stripe.Customer) error { byEmail++; return nil }); err != nil || byEmail != 1 {
		t.Fatalf("by email: %d, %v", byEmail, err)
	}
	if found, err := api.CustomersByMetadata(ctx, "user_id", "u-1"); err != nil || len(found) != 1 || found[0].ID != cus.ID {
		t.Fatalf("by metadata: %v, %v", found, err)
	}
	// A promotion code carries its coupon onto the subscription (a once
	// coupon, spent on the first invoice).
	emu.AddCoupon("HALF", 50, 0, "")
	promo, err := emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "HALF", Coupon: "HALF"})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := api.CreateSubscriptionCheckoutSession(ctx, stripeapi.SubscriptionCheckoutRequest{PriceID: price.ID, SuccessURL: "http://app.example/",
		CancelURL: "http://app.example/", CustomerID: cus.ID, PromotionCodeID: promo}, "")
	if err != nil || ds.AmountTotal != 1450 {
		t.Fatalf("discounted subscription checkout = %+v, %v", ds, err)
	}
	if err := emu.PaySession(ds.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	ds, _ = api.CheckoutSession(ctx, ds.ID)
	if dsub, err := api.Subscription(ctx, ds.Subscription.ID); err != nil || dsub.Discount != nil || dsub.LatestInvoice.AmountPaid != 1450 {
		t.Fatalf("discounted subscription = %+v, %v", dsub, err)
	}

	ps, err := api.CreatePortalSession(ctx, cus.ID, "http://app.example/account")
	if err != nil || ps.Customer != cus.ID || ps.URL == "" || ps.ReturnURL != "http://app.example/account" {
		t.Fatalf("portal session = %+v, %v", ps, err)
	}
}
