// Conformance of payment intents, their charges and errors, multi-line
// sessions with discounts and tax, and the tax objects with Stripe's OpenAPI
// spec for API 2023-10-16 (see spec_test.go).

package stripeemu_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

func TestPaymentObjectsMatchTheOpenAPISpec(t *testing.T) {
	spec := loadSpec(t)
	f := newFixture(t)
	cu, _ := f.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("ada@example.com")})
	open := f.intent(2500, "usd", func(p *stripe.PaymentIntentParams) { p.Customer = stripe.String(cu.ID) })
	paid := f.intent(2500, "usd")
	if _, err := f.confirm(paid.ID, "pm_card_visa"); err != nil {
		t.Fatal(err)
	}
	declined := f.intent(2500, "usd")
	key := http.Header{"Authorization": {"Bearer sk_test_x"}}
	res, body := f.raw(http.MethodPost, "/v1/payment_intents/"+declined.ID+"/confirm",
		url.Values{"payment_method": {"pm_card_chargeDeclined"}, "return_url": {returnURL}}, key)
	if res.StatusCode != 402 {
		t.Fatalf("decline: %d %s", res.StatusCode, body)
	}
	var declineBody map[string]any
	_ = json.Unmarshal([]byte(body), &declineBody)
	action := f.intent(2500, "usd")
	if _, err := f.confirm(action.ID, "pm_card_threeDSecure2Required"); err != nil {
		t.Fatal(err)
	}
	failedAuth := f.intent(2500, "usd")
	_, _ = f.emu.ConfirmPaymentIntent(failedAuth.ID, stripeemu.OutcomeRequires3DS)
	_ = f.emu.AuthenticatePaymentIntent(failedAuth.ID, false)
	debit := f.intent(2500, "eur")
	if _, err := f.sepaDebit(debit.ID, "DE62370400440532013001"); err != nil {
		t.Fatal(err)
	}
	ach := f.intent(2500, "usd")
	_, _ = f.emu.ConfirmPaymentIntent(ach.ID, stripeemu.OutcomeAsyncSucceeds)
	canceled := f.intent(2500, "usd")
	_ = f.emu.CancelPaymentIntent(canceled.ID, "abandoned")

	c := f.cart()
	promo := f.launch20()
	sess := f.cartSession(c, func(p *stripe.CheckoutSessionParams) {
		p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(promo)}}
	})
	calcRes, calcBody := f.raw(http.MethodPost, "/v1/tax/calculations", url.Values{"currency": {"usd"}, "expand[]": {"line_items"},
		"line_items[0][amount]": {"3199"}, "line_items[0][reference]": {"course"}, "line_items[1][amount]": {"1100"}, "line_items[1][tax_behavior]": {"inclusive"},
		"customer_details[address][country]": {"US"}, "customer_details[address][postal_code]": {"94107"}, "customer_details[address][state]": {"CA"},
		"customer_details[address_source]": {"shipping"}}, key)
	var calc map[string]any
	if err := json.Unmarshal([]byte(calcBody), &calc); err != nil || calcRes.StatusCode != 200 {
		t.Fatalf("calculation: %d %s", calcRes.StatusCode, calcBody)
	}
	calcID := calc["id"].(string)
	txn, err := f.sc.TaxTransactions.CreateFromCalculation(&stripe.TaxTransactionCreateFromCalculationParams{Calculation: stripe.String(calcID), Reference: stripe.String("o1")})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := f.sc.TaxTransactions.CreateReversal(&stripe.TaxTransactionCreateReversalParams{Mode: stripe.String("partial"), FlatAmount: stripe.Int64(-500),
		OriginalTransaction: stripe.String(txn.ID), Reference: stripe.String("o1-refund-1")})
	if err != nil {
		t.Fatal(err)
	}

	objects := map[string]string{
		"/v1/payment_intents/" + open.ID:                                 "payment_intent",
		"/v1/payment_intents/" + paid.ID + "?expand[]=latest_charge":     "payment_intent",
		"/v1/payment_intents/" + declined.ID + "?expand[]=latest_charge": "payment_intent",
		"/v1/payment_intents/" + action.ID:                               "payment_intent",
		"/v1/payment_intents/" + failedAuth.ID:                           "payment_intent",
		"/v1/payment_intents/" + debit.ID + "?expand[]=latest_charge":    "payment_intent",
		"/v1/payment_intents/" + ach.ID + "?expand[]=latest_charge":      "payment_intent",
		"/v1/payment_intents/" + canceled.ID:                             "payment_intent",
		"/v1/payment_intents?limit=100&expand[]=data.customer":           "",
		"/v1/payment_intents/search?query=status:'succeeded'":            "",
		"/v1/checkout/sessions/" + sess.ID + "?expand[]=total_details.breakdown&expand[]=line_items.data.discounts&expand[]=line_items.data.taxes": "checkout.session",
		"/v1/checkout/sessions/" + sess.ID + "/line_items?expand[]=data.discounts&expand[]=data.taxes":                                             "",
		"/v1/tax/calculations/" + calcID + "/line_items":                                                                                           "",
		"/v1/tax/transactions/" + txn.ID + "?expand[]=line_items":                                                                                  "tax.transaction",
		"/v1/tax/transactions/" + rev.ID:                                                                                                           "tax.transaction",
		"/v1/tax/transactions/" + rev.ID + "/line_items":                                                                                           "",
	}
	listed := map[string]string{"payment_intent": "payment_intent", "item": "item", "tax.calculation_line_item": "tax.calculation_line_item",
		"tax.transaction_line_item": "tax.transaction_line_item"}
	var probs []string
	for path, name := range objects {
		v := f.rawGet(path)
		if name != "" {
			probs = append(probs, spec.check(path, v, spec.Components.Schemas[name])...)
			continue
		}
		data := v.(map[string]any)["data"].([]any)
		if len(data) == 0 {
			t.Fatalf("%s listed nothing", path)
		}
		kind := listed[data[0].(map[string]any)["object"].(string)]
		for i, el := range data {
			probs = append(probs, spec.check(fmt.Sprintf("%s[%d]", path, i), el, spec.Components.Schemas[kind])...)
		}
	}
	probs = append(probs, spec.check("calculation", calc, spec.Components.Schemas["tax.calculation"])...)
	probs = append(probs, spec.check("402 error", declineBody["error"], spec.Components.Schemas["api_errors"])...)
	// What a publishable key sees is still a payment intent.
	res, body = f.raw(http.MethodGet, "/v1/payment_intents/"+paid.ID+"?client_secret="+url.QueryEscape(paid.ClientSecret), nil, http.Header{"Authorization": {"Bearer pk_test_x"}})
	var pk any
	if err := json.Unmarshal([]byte(body), &pk); err != nil || res.StatusCode != 200 {
		t.Fatalf("publishable: %d %s", res.StatusCode, body)
	}
	probs = append(probs, spec.check("publishable", pk, spec.Components.Schemas["payment_intent"])...)

	// Every event's object.
	seen := map[string]bool{}
	for _, ev := range f.emu.Events() {
		obj := ev.Data.Object["object"].(string)
		if seen[string(ev.Type)] || spec.Components.Schemas[obj] == nil {
			continue
		}
		seen[string(ev.Type)] = true
		var v any
		_ = json.Unmarshal(mustMarshal(t, ev.Data.Object), &v)
		probs = append(probs, spec.check(string(ev.Type), v, spec.Components.Schemas[obj])...)
	}
	for _, want := range []string{"payment_intent.created", "payment_intent.requires_action", "payment_intent.processing", "payment_intent.succeeded",
		"payment_intent.payment_failed", "payment_intent.canceled", "charge.pending", "charge.succeeded", "charge.failed"} {
		if !seen[want] {
			t.Errorf("no %s event was checked", want)
		}
	}
	if len(probs) > 0 {
		t.Fatalf("%d departures from the spec:\n%s", len(probs), strings.Join(probs, "\n"))
	}
}
