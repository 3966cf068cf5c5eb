package stripeapi_test

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/stripe/stripe-go/v76"
)

// The contract suite calls every exported method of stripeapi.API against
// stripe-mock with the arguments paymentd really sends. stripe-mock checks
// each request against Stripe's OpenAPI spec and answers 400 on a
// parameter Stripe would refuse, so a passing suite means every request
// paymentd can make is one Stripe accepts.

// since is a realistic listing cursor: the reconciler's window.
var since = time.Now().Add(-30 * 24 * time.Hour)

// errStop ends a listing early; stripe-mock's lists are fixtures.
var errStop = errors.New("stop")

// collect returns a listing callback that counts what it sees and stops
// after a bound, so a fixture claiming has_more can never loop forever.
func collect[T any](n *int) func(T) error {
	return func(T) error {
		*n++
		if *n > 1000 {
			return errStop
		}
		return nil
	}
}

// checkoutRequest is what POST /api/checkout builds (httpapi/checkout.go),
// in each of its variants.
func checkoutRequest(promotionCode string, consent bool) stripeapi.CheckoutRequest {
	return stripeapi.CheckoutRequest{
		PriceID:           "price_contract",
		Quantity:          2,
		SuccessURL:        "http://localhost:8080/?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:         "http://localhost:8080/",
		Metadata:          map[string]string{"user_id": "user-1", "product": "pro_one_time", "purchase_id": "0b6c3f5e-8d1a-4c2b-9f3e-1a2b3c4d5e6f"},
		ClientReferenceID: "user-1",
		CustomerEmail:     "ada@example.com",
		PromotionCode:     promotionCode,
		ConsentPromotions: consent,
		Recovery:          true,
	}
}

// product is a product as internal/catalog builds it from config.yaml.
var product = stripeapi.ProductSpec{Key: "pro_one_time", Name: "Acme Pro",
	Description: "Full source code access, one-time purchase",
	Features:    []string{"Full source code access", "Production-ready infrastructure", "Lifetime updates"}}

// contract holds, for each exported method of stripeapi.API, the calls
// that exercise it. TestContractCoversEveryMethod keeps it complete.
var contract = map[string]func(t *testing.T, ctx context.Context, api *stripeapi.API){
	"PricesByLookupKeys": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		prices, err := api.PricesByLookupKeys(ctx, []string{"pro_one_time", "team_one_time"})
		if err != nil || len(prices) == 0 {
			t.Fatalf("PricesByLookupKeys = %d prices, %v", len(prices), err)
		}
	},
	"CreateProduct": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, p := range []stripeapi.ProductSpec{product, {Key: "bare", Name: "Bare"}} {
			got, err := api.CreateProduct(ctx, p, "paymentd-catalog-product-0123456789abcdef")
			if err != nil || got.ID == "" {
				t.Fatalf("CreateProduct(%s) = %+v, %v", p.Key, got, err)
			}
		}
	},
	"UpdateProduct": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if _, err := api.UpdateProduct(ctx, "prod_contract", product); err != nil {
			t.Fatalf("UpdateProduct: %v", err)
		}
	},
	"CreatePrice": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, transfer := range []bool{false, true} {
			p := stripeapi.PriceSpec{ProductID: "prod_contract", LookupKey: "pro_one_time", Currency: "usd",
				Nickname: "Acme Pro", Amount: 19900, TransferLookupKey: transfer}
			got, err := api.CreatePrice(ctx, p, "paymentd-catalog-price-0123456789abcdef")
			if err != nil || got.ID == "" {
				t.Fatalf("CreatePrice(transfer=%v) = %+v, %v", transfer, got, err)
			}
		}
	},
	"DeactivatePrice": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if _, err := api.DeactivatePrice(ctx, "price_contract"); err != nil {
			t.Fatalf("DeactivatePrice: %v", err)
		}
	},
	"CreateCheckoutSession": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		variants := map[string]stripeapi.CheckoutRequest{
			"promotion codes allowed":    checkoutRequest("", false),
			"promotion code":             checkoutRequest("promo_contract", false),
			"consent":                    checkoutRequest("", true),
			"promotion code and consent": checkoutRequest("promo_contract", true),
			"no email, no recovery": func() stripeapi.CheckoutRequest {
				r := checkoutRequest("", false)
				r.CustomerEmail, r.Recovery = "", false
				return r
			}(),
			"no metadata, no user id": func() stripeapi.CheckoutRequest {
				r := checkoutRequest("", false)
				r.Metadata, r.ClientReferenceID = nil, ""
				return r
			}(),
		}
		for name, req := range variants {
			s, err := api.CreateCheckoutSession(ctx, req, "paymentd-checkout-0b6c3f5e-8d1a-4c2b-9f3e-1a2b3c4d5e6f")
			if err != nil || s.ID == "" {
				t.Errorf("CreateCheckoutSession(%s) = %v", name, err)
			}
		}
	},
	"ActivePromotionCodes": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, code := range []string{"LAUNCH20", "launch20"} {
			if _, err := api.ActivePromotionCodes(ctx, code); err != nil {
				t.Fatalf("ActivePromotionCodes(%s) = %v", code, err)
			}
		}
	},
	"CheckoutSession": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		s, err := api.CheckoutSession(ctx, "cs_test_contract")
		if err != nil || s.ID == "" {
			t.Fatalf("CheckoutSession = %v", err)
		}
		expandedSession(t, s)
	},
	"ListLineItems": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		var n int
		if err := api.ListLineItems(ctx, "cs_test_contract", collect[*stripe.LineItem](&n)); err != nil || n == 0 {
			t.Fatalf("ListLineItems saw %d, %v", n, err)
		}
	},
	"CheckoutSessionByPaymentIntent": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		s, err := api.CheckoutSessionByPaymentIntent(ctx, "pi_contract")
		if err != nil {
			t.Fatalf("CheckoutSessionByPaymentIntent = %v", err)
		}
		if s != nil {
			expandedSession(t, s)
		}
	},
	"CheckoutSessionsPage": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		page, _, err := api.CheckoutSessionsPage(ctx, since, "")
		if err != nil || len(page) == 0 {
			t.Fatalf("CheckoutSessionsPage = %d, %v", len(page), err)
		}
		expandedSession(t, page[0])
		if _, _, err := api.CheckoutSessionsPage(ctx, since, page[len(page)-1].ID); err != nil {
			t.Fatalf("CheckoutSessionsPage after %s: %v", page[len(page)-1].ID, err)
		}
	},
	"CompleteCheckoutSessionsPage": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		page, _, err := api.CompleteCheckoutSessionsPage(ctx, since, "")
		if err != nil || len(page) == 0 {
			t.Fatalf("CompleteCheckoutSessionsPage = %d, %v", len(page), err)
		}
		expandedSession(t, page[0])
		if _, _, err := api.CompleteCheckoutSessionsPage(ctx, since, page[len(page)-1].ID); err != nil {
			t.Fatalf("CompleteCheckoutSessionsPage after %s: %v", page[len(page)-1].ID, err)
		}
	},
	"PaymentIntent": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if pi, err := api.PaymentIntent(ctx, "pi_contract"); err != nil || pi.ID == "" {
			t.Fatalf("PaymentIntent = %v", err)
		}
	},
	"Charge": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		ch, err := api.Charge(ctx, "ch_contract")
		if err != nil || ch.ID == "" {
			t.Fatalf("Charge = %v", err)
		}
		if ch.Refunds == nil || len(ch.Refunds.Data) == 0 {
			t.Errorf("Charge: refunds not expanded: %+v", ch.Refunds)
		}
	},
	"Refund": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if re, err := api.Refund(ctx, "re_contract"); err != nil || re.ID == "" {
			t.Fatalf("Refund = %v", err)
		}
	},
	"ChargeRefunds": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		var n int
		if err := api.ChargeRefunds(ctx, "ch_contract", collect[*stripe.Refund](&n)); err != nil || n == 0 {
			t.Fatalf("ChargeRefunds saw %d, %v", n, err)
		}
	},
	"RefundsPage": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		page, _, err := api.RefundsPage(ctx, since, "")
		if err != nil || len(page) == 0 {
			t.Fatalf("RefundsPage = %d, %v", len(page), err)
		}
		if _, _, err := api.RefundsPage(ctx, since, page[len(page)-1].ID); err != nil {
			t.Fatalf("RefundsPage after %s: %v", page[len(page)-1].ID, err)
		}
	},
	"Dispute": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if d, err := api.Dispute(ctx, "dp_contract"); err != nil || d.ID == "" {
			t.Fatalf("Dispute = %v", err)
		}
	},
	"DisputesPage": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		page, _, err := api.DisputesPage(ctx, since, "")
		if err != nil || len(page) == 0 {
			t.Fatalf("DisputesPage = %d, %v", len(page), err)
		}
		if _, _, err := api.DisputesPage(ctx, since, page[len(page)-1].ID); err != nil {
			t.Fatalf("DisputesPage after %s: %v", page[len(page)-1].ID, err)
		}
	},
	"EventsAfter": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		var next int
		if err := api.EventsAfter(ctx, "evt_contract", collect[*stripe.Event](&next)); err != nil {
			t.Fatalf("EventsAfter a cursor: %v", err)
		}
		if err := api.EventsAfter(ctx, "", collect[*stripe.Event](&next)); err == nil {
			t.Fatal("EventsAfter without a cursor: no error")
		}
	},
	"PaymentIntentEventsAfter": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		var next int
		if err := api.PaymentIntentEventsAfter(ctx, "evt_contract", collect[*stripe.Event](&next)); err != nil {
			t.Fatalf("PaymentIntentEventsAfter a cursor: %v", err)
		}
	},
	"EventsPage": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		page, _, err := api.EventsPage(ctx, "", since)
		if err != nil || len(page) == 0 {
			t.Fatalf("EventsPage = %d, %v", len(page), err)
		}
		if page[0].ID == "" || page[0].Type == "" || page[0].Data.Object["id"] == nil {
			t.Fatalf("EventsPage's event has no identity: %+v", page[0])
		}
		if _, _, err := api.EventsPage(ctx, page[len(page)-1].ID, since); err != nil {
			t.Fatalf("EventsPage after %s: %v", page[len(page)-1].ID, err)
		}
	},
	"PaymentIntentEventsPage": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		page, _, err := api.PaymentIntentEventsPage(ctx, "", since)
		if err != nil || len(page) == 0 {
			t.Fatalf("PaymentIntentEventsPage = %d, %v", len(page), err)
		}
		if _, _, err := api.PaymentIntentEventsPage(ctx, page[len(page)-1].ID, since); err != nil {
			t.Fatalf("PaymentIntentEventsPage after %s: %v", page[len(page)-1].ID, err)
		}
	},
}

// expandedSession checks that the expansions the reconciler relies on came
// back as objects: the line items and the payment intent.
func expandedSession(t *testing.T, s *stripe.CheckoutSession) {
	t.Helper()
	if s.LineItems == nil || len(s.LineItems.Data) == 0 || s.LineItems.Data[0].Price == nil {
		t.Errorf("session %s: line_items not expanded: %+v", s.ID, s.LineItems)
	}
	if s.PaymentIntent == nil || s.PaymentIntent.Status == "" || s.PaymentIntent.Created == 0 {
		t.Errorf("session %s: payment_intent not expanded: %+v", s.ID, s.PaymentIntent)
	}
}

func TestContractAgainstStripeMock(t *testing.T) {
	t.Parallel()
	base := stripeMock(t)
	sc := stripeclient.New(stripeclient.Options{SecretKey: "sk_test_contract", APIBase: base, MaxRetries: -1,
		RateLimit: 100})
	api := stripeapi.New(sc)
	names := make([]string, 0, len(contract))
	for name := range contract {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			contract[name](t, ctx, api)
		})
	}
}

// TestContractCoversEveryMethod fails when stripeapi.API gains an exported
// method the contract suite does not call, or the suite names one that
// no longer exists.
func TestContractCoversEveryMethod(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeOf(&stripeapi.API{})
	methods := map[string]bool{}
	for i := range typ.NumMethod() {
		m := typ.Method(i).Name
		methods[m] = true
		if _, ok := contract[m]; !ok {
			t.Errorf("stripeapi.API.%s is not exercised by the contract suite; add it to contract in contract_test.go", m)
		}
	}
	for m := range contract {
		if !methods[m] {
			t.Errorf("the contract suite exercises %s, which stripeapi.API no longer has", m)
		}
	}
}

func TestUsesEventType(t *testing.T) {
	t.Parallel()
	for _, typ := range stripeapi.EventTypes {
		if !stripeapi.UsesEventType(typ) {
			t.Errorf("UsesEventType(%q) = false", typ)
		}
	}
	for _, typ := range []string{"customer.created", "checkout.session", "", "charge.refunded.extra"} {
		if stripeapi.UsesEventType(typ) {
			t.Errorf("UsesEventType(%q) = true", typ)
		}
	}
}

// subscriptionRequest is what subscription checkout builds, in its
// variants.
func subscriptionRequest(customerID, promo string, trialDays int64) stripeapi.SubscriptionCheckoutRequest {
	r := stripeapi.SubscriptionCheckoutRequest{
		PriceID:              "price_contract",
		Quantity:             1,
		SuccessURL:           "http://localhost:8080/?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:            "http://localhost:8080/",
		Metadata:             map[string]string{"user_id": "user-1", "product": "pro_monthly", "subscription_checkout_id": "0b6c3f5e"},
		SubscriptionMetadata: map[string]string{"user_id": "user-1", "product": "pro_monthly", "organization_id": "org-1"},
		ClientReferenceID:    "user-1",
		CustomerID:           customerID,
		TrialDays:            trialDays,
		PromotionCodeID:      promo,
	}
	if customerID == "" {
		r.CustomerEmail = "ada@example.com"
	}
	return r
}

// subscriptionContract holds the calls of subscriptions.go; init merges
// them into contract, so TestContractCoversEveryMethod counts them.
var subscriptionContract = map[string]func(t *testing.T, ctx context.Context, api *stripeapi.API){
	"CreateRecurringPrice": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, interval := range []string{"month", "year"} {
			p := stripeapi.RecurringPriceSpec{PriceSpec: stripeapi.PriceSpec{ProductID: "prod_contract", LookupKey: "pro_" + interval,
				Currency: "usd", Nickname: "Acme Pro", Amount: 2900, TransferLookupKey: interval == "year"}, Interval: interval}
			got, err := api.CreateRecurringPrice(ctx, p, "paymentd-catalog-price-0123456789abcdef")
			if err != nil || got.ID == "" {
				t.Fatalf("CreateRecurringPrice(%s) = %+v, %v", interval, got, err)
			}
		}
	},
	"CreateSubscriptionCheckoutSession": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		variants := map[string]stripeapi.SubscriptionCheckoutRequest{
			"new customer":          subscriptionRequest("", "", 0),
			"known customer, trial": subscriptionRequest("cus_contract", "", 14),
			"promotion code":        subscriptionRequest("cus_contract", "promo_contract", 0),
			"no metadata, no reference": func() stripeapi.SubscriptionCheckoutRequest {
				r := subscriptionRequest("", "", 7)
				r.Metadata, r.SubscriptionMetadata, r.ClientReferenceID = nil, nil, ""
				return r
			}(),
		}
		for name, req := range variants {
			s, err := api.CreateSubscriptionCheckoutSession(ctx, req, "paymentd-subscription-checkout-0b6c3f5e")
			if err != nil || s.ID == "" {
				t.Errorf("CreateSubscriptionCheckoutSession(%s) = %v", name, err)
			}
		}
		both := subscriptionRequest("cus_contract", "", 0)
		both.CustomerEmail = "ada@example.com"
		if _, err := api.CreateSubscriptionCheckoutSession(ctx, both, ""); err == nil {
			t.Error("customer and customer email together were sent")
		}
	},
	"CreateCustomer": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		c, err := api.CreateCustomer(ctx, stripeapi.CustomerSpec{Email: "ada@example.com", Name: "Ada", Metadata: map[string]string{"user_id": "user-1"}},
			"paymentd-customer-user-1")
		if err != nil || c.ID == "" {
			t.Fatalf("CreateCustomer = %v", err)
		}
	},
	"Customer": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if c, err := api.Customer(ctx, "cus_contract"); err != nil || c.ID == "" {
			t.Fatalf("Customer = %v", err)
		}
	},
	"UpdateCustomer": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if _, err := api.UpdateCustomer(ctx, "cus_contract", stripeapi.CustomerSpec{Email: "ada@new.example", Metadata: map[string]string{"user_id": "user-1"}}); err != nil {
			t.Fatalf("UpdateCustomer = %v", err)
		}
	},
	"CustomersByEmail": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		var n int
		if err := api.CustomersByEmail(ctx, "ada@example.com", collect[*stripe.Customer](&n)); err != nil || n == 0 {
			t.Fatalf("CustomersByEmail saw %d, %v", n, err)
		}
	},
	"CustomersByMetadata": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if _, err := api.CustomersByMetadata(ctx, "user_id", "user-1"); err != nil {
			t.Fatalf("CustomersByMetadata = %v", err)
		}
		if _, err := api.CustomersByMetadata(ctx, "user_id", "x' OR email:'y"); err == nil {
			t.Fatal("a value that would break out of the query was sent")
		}
	},
	"Subscription": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if s, err := api.Subscription(ctx, "sub_contract"); err != nil || s.ID == "" {
			t.Fatalf("Subscription = %v", err)
		}
	},
	"ListSubscriptions": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, from := range []time.Time{since, {}} {
			var n int
			if err := api.ListSubscriptions(ctx, from, collect[*stripe.Subscription](&n)); err != nil || n == 0 {
				t.Fatalf("ListSubscriptions(%v) saw %d, %v", from, n, err)
			}
		}
	},
	"Invoice": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if inv, err := api.Invoice(ctx, "in_contract"); err != nil || inv.ID == "" {
			t.Fatalf("Invoice = %v", err)
		}
	},
	"ListInvoices": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		var n int
		if err := api.ListInvoices(ctx, since, collect[*stripe.Invoice](&n)); err != nil || n == 0 {
			t.Fatalf("ListInvoices saw %d, %v", n, err)
		}
	},
	"SubscriptionInvoices": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		var n int
		if err := api.SubscriptionInvoices(ctx, "sub_contract", collect[*stripe.Invoice](&n)); err != nil || n == 0 {
			t.Fatalf("SubscriptionInvoices saw %d, %v", n, err)
		}
	},
	"CreatePortalSession": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, ret := range []string{"http://localhost:8080/account", ""} {
			if s, err := api.CreatePortalSession(ctx, "cus_contract", ret); err != nil || s.URL == "" {
				t.Fatalf("CreatePortalSession(%q) = %v", ret, err)
			}
		}
	},
}

func init() { maps.Copy(contract, subscriptionContract) }

func TestSubscriptionEventTypes(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, typ := range stripeapi.EventTypes {
		seen[typ] = true
	}
	for _, typ := range stripeapi.SubscriptionEventTypes {
		if seen[typ] {
			t.Errorf("%s is in both lists", typ)
		}
		seen[typ] = true
		if !stripeapi.UsesSubscriptionEventType(typ) || stripeapi.UsesEventType(typ) {
			t.Errorf("%s: subscription %v, purchase %v", typ, stripeapi.UsesSubscriptionEventType(typ), stripeapi.UsesEventType(typ))
		}
	}
	// One events request can carry both lists.
	if len(seen) > stripeapi.MaxEventTypesPerList {
		t.Errorf("%d event types in all; one events list request takes %d", len(seen), stripeapi.MaxEventTypesPerList)
	}
	for _, typ := range []string{"checkout.session.completed", "invoice.upcoming", "customer.subscription", ""} {
		if stripeapi.UsesSubscriptionEventType(typ) {
			t.Errorf("UsesSubscriptionEventType(%q) = true", typ)
		}
	}
}

// paymentIntentRequest is what the embedded cart checkout builds.
func paymentIntentRequest(customerID string) stripeapi.PaymentIntentRequest {
	return stripeapi.PaymentIntentRequest{Amount: 6998, Currency: "usd", CustomerID: customerID,
		Metadata:    map[string]string{"order_id": "0b6c3f5e-8d1a-4c2b-9f3e-1a2b3c4d5e6f", "user_id": "user-1"},
		Description: "Order 0b6c3f5e", ReceiptEmail: "ada@example.com"}
}

// cartRequest is what the hosted cart checkout builds, in its variants.
func cartRequest(customerID, promo string, tax bool) stripeapi.CartCheckoutRequest {
	r := stripeapi.CartCheckoutRequest{
		Lines:             []stripeapi.CartLine{{PriceID: "price_contract", Quantity: 2}, {PriceID: "price_contract_2", Quantity: 1}},
		SuccessURL:        "http://localhost:8080/?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:         "http://localhost:8080/cart",
		Metadata:          map[string]string{"order_id": "0b6c3f5e-8d1a-4c2b-9f3e-1a2b3c4d5e6f", "user_id": "user-1"},
		ClientReferenceID: "user-1",
		CustomerID:        customerID,
		PromotionCode:     promo,
		AutomaticTax:      tax,
		ExpiresAt:         time.Now().Add(time.Hour),
	}
	if customerID == "" {
		r.CustomerEmail = "ada@example.com"
	}
	return r
}

// taxRequest is an embedded cart's tax calculation, discounted lines.
func taxRequest() stripeapi.TaxCalculationRequest {
	return stripeapi.TaxCalculationRequest{Currency: "usd",
		Lines:   []stripeapi.TaxLine{{Reference: "pro_one_time", Amount: 3199, Quantity: 2}, {Reference: "team_one_time", Amount: 799, Quantity: 1, TaxCode: "txcd_10103001"}},
		Address: &stripeapi.TaxAddress{Line1: "510 Townsend St", City: "San Francisco", State: "CA", PostalCode: "94103", Country: "US"}, AddressSource: "billing"}
}

// paymentContract holds the calls of payments.go; init merges them into
// contract, so TestContractCoversEveryMethod counts them.
var paymentContract = map[string]func(t *testing.T, ctx context.Context, api *stripeapi.API){
	"CreatePaymentIntent": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, cust := range []string{"cus_contract", ""} {
			pi, err := api.CreatePaymentIntent(ctx, paymentIntentRequest(cust), "paymentd-order-0b6c3f5e-intent")
			if err != nil || pi.ID == "" {
				t.Fatalf("CreatePaymentIntent(%q) = %v", cust, err)
			}
		}
		bare := stripeapi.PaymentIntentRequest{Amount: 500, Currency: "EUR"}
		if _, err := api.CreatePaymentIntent(ctx, bare, ""); err != nil {
			t.Fatalf("CreatePaymentIntent(bare) = %v", err)
		}
		if _, err := api.CreatePaymentIntent(ctx, stripeapi.PaymentIntentRequest{Currency: "usd"}, ""); err == nil {
			t.Fatal("an intent without an amount was sent")
		}
	},
	"UpdatePaymentIntent": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, u := range []stripeapi.PaymentIntentUpdate{{Amount: 7500, Metadata: map[string]string{"cart_version": "2", "stale": ""}}, {Description: "Order 0b6c3f5e"}} {
			if _, err := api.UpdatePaymentIntent(ctx, "pi_contract", u, "paymentd-order-0b6c3f5e-v2"); err != nil {
				t.Fatalf("UpdatePaymentIntent(%+v) = %v", u, err)
			}
		}
	},
	"CancelPaymentIntent": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, reason := range append([]string{""}, stripeapi.CancellationReasons...) {
			if _, err := api.CancelPaymentIntent(ctx, "pi_contract", reason); err != nil {
				t.Fatalf("CancelPaymentIntent(%q) = %v", reason, err)
			}
		}
		if _, err := api.CancelPaymentIntent(ctx, "pi_contract", "bored"); err == nil {
			t.Fatal("an unknown cancellation reason was sent")
		}
	},
	"ListPaymentIntents": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		var n int
		if err := api.ListPaymentIntents(ctx, since, collect[*stripe.PaymentIntent](&n)); err != nil || n == 0 {
			t.Fatalf("ListPaymentIntents saw %d, %v", n, err)
		}
	},
	"PaymentIntentsByMetadata": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		if _, err := api.PaymentIntentsByMetadata(ctx, "order_id", "0b6c3f5e-8d1a-4c2b-9f3e-1a2b3c4d5e6f"); err != nil {
			t.Fatalf("PaymentIntentsByMetadata = %v", err)
		}
		if _, err := api.PaymentIntentsByMetadata(ctx, "order_id", "x' OR status:'succeeded"); err == nil {
			t.Fatal("a value that would break out of the query was sent")
		}
	},
	"CreateCartCheckoutSession": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		variants := map[string]stripeapi.CartCheckoutRequest{
			"new customer, promotion code, tax": cartRequest("", "promo_contract", true),
			"known customer, no tax":            cartRequest("cus_contract", "", false),
			"codes on the page, consent": func() stripeapi.CartCheckoutRequest {
				r := cartRequest("", "", true)
				r.AllowPromotionCodes, r.ConsentPromotions, r.ExpiresAt = true, true, time.Time{}
				return r
			}(),
		}
		for name, req := range variants {
			s, err := api.CreateCartCheckoutSession(ctx, req, "paymentd-order-0b6c3f5e-session")
			if err != nil || s.ID == "" {
				t.Errorf("CreateCartCheckoutSession(%s) = %v", name, err)
			}
		}
		both := cartRequest("cus_contract", "", false)
		both.CustomerEmail = "ada@example.com"
		empty := cartRequest("", "", false)
		empty.Lines = nil
		for _, bad := range []stripeapi.CartCheckoutRequest{both, empty} {
			if _, err := api.CreateCartCheckoutSession(ctx, bad, ""); err == nil {
				t.Error("a refused cart session was sent")
			}
		}
	},
	"ListCheckoutSessionLineItems": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		var n int
		if err := api.ListCheckoutSessionLineItems(ctx, "cs_test_contract", collect[*stripe.LineItem](&n)); err != nil || n == 0 {
			t.Fatalf("ListCheckoutSessionLineItems saw %d, %v", n, err)
		}
	},
	"CreateTaxCalculation": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		byAddress, byCustomer, byIP := taxRequest(), taxRequest(), taxRequest()
		byCustomer.Address, byCustomer.AddressSource, byCustomer.CustomerID = nil, "", "cus_contract"
		byIP.Address, byIP.AddressSource, byIP.IPAddress = nil, "", "203.0.113.9"
		byIP.Lines[0].Inclusive = true
		for name, req := range map[string]stripeapi.TaxCalculationRequest{"address": byAddress, "customer": byCustomer, "ip": byIP} {
			if c, err := api.CreateTaxCalculation(ctx, req, "paymentd-order-0b6c3f5e-tax"); err != nil || c.ID == "" {
				t.Errorf("CreateTaxCalculation(%s) = %v", name, err)
			}
		}
	},
	"CreateTaxTransaction": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		tx, err := api.CreateTaxTransaction(ctx, "taxcalc_contract", "pi_contract", map[string]string{"order_id": "0b6c3f5e"}, "paymentd-order-0b6c3f5e-tax-txn")
		if err != nil || tx.ID == "" {
			t.Fatalf("CreateTaxTransaction = %v", err)
		}
	},
	"ReverseTaxTransaction": func(t *testing.T, ctx context.Context, api *stripeapi.API) {
		for _, amount := range []int64{0, 1000} {
			if tx, err := api.ReverseTaxTransaction(ctx, "tax_contract", "re_contract", amount, "paymentd-refund-re_contract-tax"); err != nil || tx.ID == "" {
				t.Fatalf("ReverseTaxTransaction(%d) = %v", amount, err)
			}
		}
	},
}

func init() { maps.Copy(contract, paymentContract) }

func TestPaymentIntentEventTypes(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, typ := range append(slices.Clone(stripeapi.EventTypes), stripeapi.SubscriptionEventTypes...) {
		seen[typ] = true
	}
	for _, typ := range stripeapi.PaymentIntentEventTypes {
		if seen[typ] || !stripeapi.UsesPaymentIntentEventType(typ) || stripeapi.UsesEventType(typ) || stripeapi.UsesSubscriptionEventType(typ) {
			t.Errorf("%s: in another list, or not recognised", typ)
		}
	}
	// They fit in one events request with the purchase types, not with
	// the subscription types as well.
	if n := len(stripeapi.PaymentIntentEventTypes) + len(stripeapi.EventTypes); n > stripeapi.MaxEventTypesPerList {
		t.Errorf("payment intent and purchase types: %d, more than one request takes", n)
	}
	for _, typ := range []string{"payment_intent.created", "payment_intent.requires_action", "payment_intent", ""} {
		if stripeapi.UsesPaymentIntentEventType(typ) {
			t.Errorf("UsesPaymentIntentEventType(%q) = true", typ)
		}
	}
}
