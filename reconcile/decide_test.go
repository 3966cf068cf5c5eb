package reconcile

// Table tests of the reconciler's pure decisions: what a Stripe object
// means for a purchase, without a database or Stripe.

import (
	"testing"

	"github.com/stripe/stripe-go/v76"
)

const ourPurchaseID = "0b6c3f5e-8d1a-4c2b-9f3e-1a2b3c4d5e6f"

func item(lookupKey string, quantity int64) *stripe.LineItem {
	return &stripe.LineItem{Quantity: quantity, Price: &stripe.Price{ID: "price_" + lookupKey, LookupKey: lookupKey}}
}

func TestAdopt(t *testing.T) {
	t.Parallel()
	products := map[string]bool{"pro": true, "team": true}
	payment, setup, subscription := stripe.CheckoutSessionModePayment, stripe.CheckoutSessionModeSetup, stripe.CheckoutSessionModeSubscription
	for _, tc := range []struct {
		name     string
		mode     stripe.CheckoutSessionMode
		metadata map[string]string
		items    []*stripe.LineItem
		want     adoption
	}{
		{"our API's session", payment, map[string]string{"purchase_id": ourPurchaseID, "product": "pro"},
			[]*stripe.LineItem{item("pro", 2)}, adoption{productKey: "pro", quantity: 2}},
		{"ours, for a product no longer configured", payment, map[string]string{"purchase_id": ourPurchaseID, "product": "retired"},
			[]*stripe.LineItem{item("retired", 1)}, adoption{productKey: "retired", quantity: 1}},
		{"ours, product from the line items", payment, map[string]string{"purchase_id": ourPurchaseID},
			[]*stripe.LineItem{item("", 1), item("other", 4), item("team", 3)}, adoption{productKey: "team", quantity: 3}},
		{"ours, product unknown anywhere", payment, map[string]string{"purchase_id": ourPurchaseID},
			[]*stripe.LineItem{item("", 5)}, adoption{productKey: "unknown", quantity: 5}},
		{"ours, line items not known", payment, map[string]string{"purchase_id": ourPurchaseID, "product": "pro"},
			nil, adoption{productKey: "pro", quantity: 1}},
		{"ours wins over the mode", subscription, map[string]string{"purchase_id": ourPurchaseID, "product": "pro"},
			[]*stripe.LineItem{item("pro", 1)}, adoption{productKey: "pro", quantity: 1}},
		{"a Payment Link for our product", payment, nil,
			[]*stripe.LineItem{item("stickers", 1), item("pro", 3)}, adoption{productKey: "pro", quantity: 3}},
		{"purchase_id that is not ours (not a UUID)", payment, map[string]string{"purchase_id": "order-17"},
			[]*stripe.LineItem{item("pro", 1)}, adoption{productKey: "pro", quantity: 1}},
		{"purchase_id that is not ours, other product", payment, map[string]string{"purchase_id": "order-17", "product": "pro"},
			[]*stripe.LineItem{item("stickers", 1)}, adoption{skip: SkipUnknownProduct}},
		{"donation link", payment, nil, []*stripe.LineItem{item("", 1)}, adoption{skip: SkipNoLookupKey}},
		{"no line items", payment, nil, nil, adoption{skip: SkipNoLookupKey}},
		{"another product", payment, nil, []*stripe.LineItem{item("stickers", 2)}, adoption{skip: SkipUnknownProduct}},
		{"save a card", setup, nil, nil, adoption{skip: SkipNotPaymentMode}},
		{"a subscription of our product's price", subscription, nil, []*stripe.LineItem{item("pro", 1)},
			adoption{skip: SkipNotPaymentMode}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stripe.CheckoutSession{ID: "cs_test_1", Mode: tc.mode, Metadata: tc.metadata}
			if got := adopt(s, tc.items, products); got != tc.want {
				t.Errorf("adopt = %+v, want %+v", got, tc.want)
			}
		})
	}
}
