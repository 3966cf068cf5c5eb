package stripeapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// TestCartCallsAgainstTheEmulator runs the cart and embedded payment calls
// against the Stripe emulator, where they have effects to observe: a
// twelve-line cart comes back whole (past the ten an embedded list holds),
// amounts add up, retries are idempotent, and a tax calculation's lines are
// all returned.
func TestCartCallsAgainstTheEmulator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	emu := stripeemu.New(stripeemu.Options{Clock: clk, Seed: 4})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	emu.SetBaseURL(srv.URL)
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_emu", APIBase: srv.URL, MaxRetries: -1, RateLimit: 1000}))

	var lines []stripeapi.CartLine
	var taxLines []stripeapi.TaxLine
	for i := range 12 {
		prod, err := api.CreateProduct(ctx, stripeapi.ProductSpec{Key: fmt.Sprintf("p%d", i), Name: fmt.Sprintf("Product %d", i)}, "")
		if err != nil {
			t.Fatal(err)
		}
		pr, err := api.CreatePrice(ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: fmt.Sprintf("p%d", i), Currency: "usd", Amount: int64(999 + 100*i)}, "")
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, stripeapi.CartLine{PriceID: pr.ID, Quantity: int64(1 + i%3)})
		taxLines = append(taxLines, stripeapi.TaxLine{Reference: fmt.Sprintf("p%d", i), Amount: int64(999 + 100*i), Quantity: 1})
	}
	coupon, _ := emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 20})
	promo, _ := emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "LAUNCH20", Coupon: coupon})

	// Hosted: a multi-line session with the promotion code and tax.
	meta := map[string]string{"order_id": "o-1", "user_id": "u-1"}
	s, err := api.CreateCartCheckoutSession(ctx, stripeapi.CartCheckoutRequest{Lines: lines, SuccessURL: "http://shop.example/?s={CHECKOUT_SESSION_ID}",
		CancelURL: "http://shop.example/cart", Metadata: meta, CustomerEmail: "ada@example.com", PromotionCode: promo, AutomaticTax: true,
		ExpiresAt: t0.Add(time.Hour)}, "paymentd-order-o-1-session")
	if err != nil || s.ExpiresAt != t0.Add(time.Hour).Unix() || s.Metadata["order_id"] != "o-1" || !s.AutomaticTax.Enabled || s.AllowPromotionCodes {
		t.Fatalf("cart session = %+v, %v", s, err)
	}
	var n int
	var subtotal, discount, tax, total int64
	err = api.ListCheckoutSessionLineItems(ctx, s.ID, func(li *stripe.LineItem) error {
		if li.Price.ID != lines[n].PriceID || li.Quantity != lines[n].Quantity {
			return fmt.Errorf("line %d is %s × %d", n, li.Price.ID, li.Quantity)
		}
		n++
		subtotal, discount, tax, total = subtotal+li.AmountSubtotal, discount+li.AmountDiscount, tax+li.AmountTax, total+li.AmountTotal
		return nil
	})
	if err != nil || n != 12 {
		t.Fatalf("listed %d lines, %v", n, err)
	}
	if subtotal != s.AmountSubtotal || discount != s.TotalDetails.AmountDiscount || tax != s.TotalDetails.AmountTax || total != s.AmountTotal ||
		discount == 0 || tax == 0 || total != subtotal-discount+tax {
		t.Fatalf("lines add up to %d - %d + %d = %d; the session says %d - %d + %d = %d", subtotal, discount, tax, total,
			s.AmountSubtotal, s.TotalDetails.AmountDiscount, s.TotalDetails.AmountTax, s.AmountTotal)
	}
	if err := emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	paid, err := api.CheckoutSession(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if pi, err := api.PaymentIntent(ctx, paid.PaymentIntent.ID); err != nil || pi.Amount != s.AmountTotal || pi.Metadata["order_id"] != "o-1" {
		t.Fatalf("the session's payment intent = %+v, %v", pi, err)
	}

	// Embedded: a payment intent, retried, updated, declined then paid.
	req := stripeapi.PaymentIntentRequest{Amount: 6998, Currency: "USD", Metadata: meta, Description: "Order o-1", ReceiptEmail: "ada@example.com"}
	pi, err := api.CreatePaymentIntent(ctx, req, "paymentd-order-o-1-intent")
	if err != nil || !pi.AutomaticPaymentMethods.Enabled || pi.Currency != "usd" {
		t.Fatalf("payment intent = %+v, %v", pi, err)
	}
	if again, err := api.CreatePaymentIntent(ctx, req, "paymentd-order-o-1-intent"); err != nil || again.ID != pi.ID {
		t.Fatalf("a retried create made %v, %v", again, err)
	}
	up, err := api.UpdatePaymentIntent(ctx, pi.ID, stripeapi.PaymentIntentUpdate{Amount: 7698, Metadata: map[string]string{"user_id": "", "tax_calculation": "taxcalc_1"}}, "")
	if err != nil || up.Amount != 7698 || up.Metadata["order_id"] != "o-1" || up.Metadata["tax_calculation"] != "taxcalc_1" || up.Metadata["user_id"] != "" {
		t.Fatalf("updated = %+v, %v", up, err)
	}
	if _, err := emu.ConfirmPaymentIntent(pi.ID, stripeemu.OutcomeDeclined); !errors.Is(err, stripeemu.ErrCardDeclined) {
		t.Fatalf("decline = %v", err)
	}
	if _, err := emu.ConfirmPaymentIntent(pi.ID, stripeemu.OutcomeSucceeds); err != nil {
		t.Fatal(err)
	}
	if _, err := api.UpdatePaymentIntent(ctx, pi.ID, stripeapi.PaymentIntentUpdate{Amount: 100}, ""); err == nil {
		t.Fatal("the amount of a paid intent changed")
	}
	other, err := api.CreatePaymentIntent(ctx, stripeapi.PaymentIntentRequest{Amount: 500, Currency: "usd", Metadata: map[string]string{"order_id": "o-2"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := api.CancelPaymentIntent(ctx, other.ID, "abandoned"); err != nil || c.Status != stripe.PaymentIntentStatusCanceled {
		t.Fatalf("cancel = %+v, %v", c, err)
	}
	var ours []string
	err = api.ListPaymentIntents(ctx, t0, func(p *stripe.PaymentIntent) error {
		if p.Metadata["order_id"] != "" {
			ours = append(ours, p.Metadata["order_id"]+":"+string(p.Status))
		}
		return nil
	})
	if err != nil || fmt.Sprint(ours) != "[o-2:canceled o-1:succeeded o-1:succeeded]" {
		t.Fatalf("listed %v, %v", ours, err)
	}
	if found, err := api.PaymentIntentsByMetadata(ctx, "order_id", "o-2"); err != nil || len(found) != 1 || found[0].ID != other.ID {
		t.Fatalf("search = %v, %v", found, err)
	}

	// Tax for the embedded cart: every line back, then a transaction and
	// its reversals.
	calc, err := api.CreateTaxCalculation(ctx, stripeapi.TaxCalculationRequest{Currency: "usd", Lines: taxLines, AddressSource: "billing",
		Address: &stripeapi.TaxAddress{PostalCode: "94103", State: "CA", Country: "US"}}, "paymentd-order-o-1-tax")
	if err != nil || calc.LineItems == nil || len(calc.LineItems.Data) != 12 || calc.LineItems.HasMore {
		t.Fatalf("calculation = %+v, %v", calc, err)
	}
	var lineTax int64
	for i, li := range calc.LineItems.Data {
		if li.Reference != taxLines[i].Reference {
			t.Fatalf("line %d is %s", i, li.Reference)
		}
		lineTax += li.AmountTax
	}
	if lineTax != calc.TaxAmountExclusive || lineTax == 0 {
		t.Fatalf("lines carry %d of tax, the calculation %d", lineTax, calc.TaxAmountExclusive)
	}
	txn, err := api.CreateTaxTransaction(ctx, calc.ID, pi.ID, map[string]string{"order_id": "o-1"}, "paymentd-order-o-1-tax-txn")
	if err != nil || txn.Reference != pi.ID {
		t.Fatalf("transaction = %+v, %v", txn, err)
	}
	if _, err := api.ReverseTaxTransaction(ctx, txn.ID, "re_1", 1000, ""); err != nil {
		t.Fatal(err)
	}
	if rev, err := api.ReverseTaxTransaction(ctx, txn.ID, "re_2", 0, ""); err != nil || rev.Type != "reversal" {
		t.Fatalf("full reversal = %+v, %v", rev, err)
	}
	if _, err := api.ReverseTaxTransaction(ctx, txn.ID, "re_3", 0, ""); err == nil {
		t.Fatal("a transaction was reversed past zero")
	}
}
