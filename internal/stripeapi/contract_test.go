package stripeapi_test

import (
	"context"
	"errors"
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
func checkoutRequest(coupon string, consent bool) stripeapi.CheckoutRequest {
	return stripeapi.CheckoutRequest{
		PriceID:           "price_contract",
		Quantity:          2,
		SuccessURL:        "http://localhost:8080/?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:         "http://localhost:8080/",
		Metadata:          map[string]string{"user_id": "user-1", "product": "pro_one_time", "purchase_id": "0b6c3f5e-8d1a-4c2b-9f3e-1a2b3c4d5e6f"},
		ClientReferenceID: "user-1",
		CustomerEmail:     "ada@example.com",
		Coupon:            coupon,
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
			"promotion codes":    checkoutRequest("", false),
			"coupon":             checkoutRequest("LAUNCH20", false),
			"consent":            checkoutRequest("", true),
			"coupon and consent": checkoutRequest("LAUNCH20", true),
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
		var first, next int
		if err := api.EventsAfter(ctx, "", since, collect[*stripe.Event](&first)); err != nil || first == 0 {
			t.Fatalf("EventsAfter without a cursor saw %d, %v", first, err)
		}
		if err := api.EventsAfter(ctx, "evt_contract", since, collect[*stripe.Event](&next)); err != nil {
			t.Fatalf("EventsAfter a cursor: %v", err)
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
