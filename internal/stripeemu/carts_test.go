// Tests of multi-line Checkout Sessions: a promotion code spread over the
// lines, Stripe Tax off and on, the line items list, and the breakdowns,
// each to the cent.

package stripeemu_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// cart is three products: 2 × 19.99, 3 × 12.50 and 1 × 9.99 (€87.47).
type cart struct {
	prices []*stripe.Price
	qty    []int64
}

func (f *fixture) cart() cart {
	f.t.Helper()
	var c cart
	for i, p := range []struct {
		name   string
		amount int64
		qty    int64
	}{{"Course", 1999, 2}, {"Workbook", 1250, 3}, {"Sticker", 999, 1}} {
		c.prices = append(c.prices, f.price(f.product(p.name).ID, p.amount, fmt.Sprintf("cart_%d", i)))
		c.qty = append(c.qty, p.qty)
	}
	return c
}

// cartSession creates a payment-mode session with one line per cart line.
func (f *fixture) cartSession(c cart, mod ...func(*stripe.CheckoutSessionParams)) *stripe.CheckoutSession {
	f.t.Helper()
	p := &stripe.CheckoutSessionParams{Mode: stripe.String("payment"), SuccessURL: stripe.String("https://shop.example/done"),
		PaymentIntentData: &stripe.CheckoutSessionPaymentIntentDataParams{Metadata: map[string]string{"order_id": "o1"}}}
	for i, pr := range c.prices {
		p.LineItems = append(p.LineItems, &stripe.CheckoutSessionLineItemParams{Price: stripe.String(pr.ID), Quantity: stripe.Int64(c.qty[i])})
	}
	for _, m := range mod {
		m(p)
	}
	s, err := f.sc.CheckoutSessions.New(p)
	if err != nil {
		f.t.Fatalf("create cart session: %v", err)
	}
	return s
}

// launch20 creates a 20% promotion code and returns its id.
func (f *fixture) launch20() string {
	f.t.Helper()
	coupon, err := f.emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 20})
	if err != nil {
		f.t.Fatal(err)
	}
	promo, err := f.emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "LAUNCH20", Coupon: coupon})
	if err != nil {
		f.t.Fatal(err)
	}
	return promo
}

// lineItems lists a session's line items through the API, limit a page,
// with their discounts and taxes expanded.
func (f *fixture) lineItems(id string, limit int64) []*stripe.LineItem {
	f.t.Helper()
	p := &stripe.CheckoutSessionListLineItemsParams{Session: stripe.String(id)}
	p.Limit = stripe.Int64(limit)
	p.AddExpand("data.discounts")
	p.AddExpand("data.taxes")
	it := f.sc.CheckoutSessions.ListLineItems(p)
	var out []*stripe.LineItem
	for it.Next() {
		out = append(out, it.LineItem())
	}
	if it.Err() != nil {
		f.t.Fatal(it.Err())
	}
	return out
}

// amounts renders line items as "subtotal-discount+tax=total" strings.
func amounts(lines []*stripe.LineItem) []string {
	var out []string
	for _, li := range lines {
		out = append(out, fmt.Sprintf("%d×%d-%d+%d=%d", li.Quantity, li.Price.UnitAmount, li.AmountDiscount, li.AmountTax, li.AmountTotal))
	}
	return out
}

func TestMultiLineSessionWithPromotionCode(t *testing.T) {
	f := newFixture(t)
	c := f.cart()
	promo := f.launch20()
	s := f.cartSession(c, func(p *stripe.CheckoutSessionParams) {
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(promo)}}
	})
	// 20% of 8747 is 1749.4: 1749 off. Shares 799.38, 749.83 and 199.79
	// take 799, 749 and 199; the two units left go to the largest
	// remainders.
	if s.AmountSubtotal != 8747 || s.TotalDetails.AmountDiscount != 1749 || s.TotalDetails.AmountTax != 0 || s.AmountTotal != 6998 || s.AutomaticTax.Enabled {
		t.Fatalf("session %d - %d + %d = %d (automatic tax %v)", s.AmountSubtotal, s.TotalDetails.AmountDiscount, s.TotalDetails.AmountTax, s.AmountTotal, s.AutomaticTax.Enabled)
	}
	lines := f.lineItems(s.ID, 2) // two pages
	sameStrings(t, "lines", amounts(lines), []string{"2×1999-799+0=3199", "3×1250-750+0=3000", "1×999-200+0=799"})
	for _, li := range lines {
		if len(li.Discounts) != 1 || li.Discounts[0].Amount != li.AmountDiscount || li.Discounts[0].Discount.PromotionCode.ID != promo ||
			li.Discounts[0].Discount.Coupon.PercentOff != 20 || len(li.Taxes) != 0 {
			t.Fatalf("line %s discounts %+v taxes %+v", li.ID, li.Discounts, li.Taxes)
		}
	}
	// The first page stops at two with has_more; starting_after the
	// second gives the third.
	st, list := f.list("/v1/checkout/sessions/"+s.ID+"/line_items", map[string][]string{"limit": {"2"}})
	if st != 200 || len(list.Data) != 2 || !list.HasMore {
		t.Fatalf("first page: %d %+v", st, list)
	}
	st, list = f.list("/v1/checkout/sessions/"+s.ID+"/line_items", map[string][]string{"limit": {"2"}, "starting_after": {ids(list)[1]}})
	if st != 200 || len(list.Data) != 1 || list.HasMore || ids(list)[0] != lines[2].ID {
		t.Fatalf("second page: %d %+v", st, list)
	}
	st, list = f.list("/v1/checkout/sessions/"+s.ID+"/line_items", map[string][]string{"ending_before": {lines[2].ID}})
	if st != 200 || strings.Join(ids(list), ",") != lines[0].ID+","+lines[1].ID {
		t.Fatalf("ending_before: %d %v", st, ids(list))
	}

	// total_details.breakdown names the discount.
	got, err := f.sc.CheckoutSessions.Get(s.ID, &stripe.CheckoutSessionParams{Expand: stripe.StringSlice([]string{"total_details.breakdown"})})
	if err != nil || len(got.TotalDetails.Breakdown.Discounts) != 1 || got.TotalDetails.Breakdown.Discounts[0].Amount != 1749 || len(got.TotalDetails.Breakdown.Taxes) != 0 {
		t.Fatalf("breakdown = %+v, %v", got.TotalDetails, err)
	}

	// Paying charges the total and redeems the code once.
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	paid, _ := f.emu.Session(s.ID)
	pi, _ := f.emu.PaymentIntent(paid.PaymentIntent.ID)
	pc, _ := f.emu.PromotionCode(promo)
	if pi.Amount != 6998 || pi.Metadata["order_id"] != "o1" || pc.TimesRedeemed != 1 {
		t.Fatalf("paid: intent %d %v, redeemed %d", pi.Amount, pi.Metadata, pc.TimesRedeemed)
	}
}

func TestAutomaticTaxOnSessions(t *testing.T) {
	f := newFixture(t)
	c := f.cart()
	promo := f.launch20()
	withTax := func(p *stripe.CheckoutSessionParams) {
		p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(promo)}}
	}
	s := f.cartSession(c, withTax)
	// 10% on each line after its discount: 319.9, 300 and 79.9 round to
	// 320, 300 and 80.
	if !s.AutomaticTax.Enabled || s.AutomaticTax.Status != "complete" || s.TotalDetails.AmountTax != 700 || s.AmountTotal != 8747-1749+700 {
		t.Fatalf("session with tax: %+v total %d tax %d", s.AutomaticTax, s.AmountTotal, s.TotalDetails.AmountTax)
	}
	lines := f.lineItems(s.ID, 10)
	sameStrings(t, "lines", amounts(lines), []string{"2×1999-799+320=3519", "3×1250-750+300=3300", "1×999-200+80=879"})
	for _, li := range lines {
		tx := li.Taxes
		if len(tx) != 1 || tx[0].Amount != li.AmountTax || tx[0].Rate.Percentage != 10 || tx[0].Rate.Inclusive || tx[0].TaxableAmount != li.AmountSubtotal-li.AmountDiscount {
			t.Fatalf("line taxes %+v", tx)
		}
	}

	// The rate is the account's setting when the session is made; prices
	// with tax inside them show the tax without adding it.
	incl, err := f.sc.Prices.New(&stripe.PriceParams{Product: stripe.String(f.product("Gift").ID), UnitAmount: stripe.Int64(1100),
		Currency: stripe.String("eur"), TaxBehavior: stripe.String("inclusive")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.emu.SetTaxSettings(stripeemu.TaxSettings{Percent: 8.25}); err != nil {
		t.Fatal(err)
	}
	mixed := f.cartSession(cart{prices: []*stripe.Price{c.prices[2], incl}, qty: []int64{1, 1}}, func(p *stripe.CheckoutSessionParams) {
		p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
	})
	// 8.25% on 999 is 82.4175: 82. 1100 with tax inside is 1016.17 + 83.83:
	// 84 of tax.
	lines = f.lineItems(mixed.ID, 10)
	sameStrings(t, "mixed lines", amounts(lines), []string{"1×999-0+82=1081", "1×1100-0+84=1100"})
	if mixed.TotalDetails.AmountTax != 166 || mixed.AmountTotal != 999+82+1100 || mixed.AmountSubtotal != 2099 {
		t.Fatalf("mixed session total %d tax %d", mixed.AmountTotal, mixed.TotalDetails.AmountTax)
	}
	if !lines[1].Taxes[0].Rate.Inclusive || lines[1].Taxes[0].TaxableAmount != 1016 || lines[0].Taxes[0].Rate.Percentage != 8.25 {
		t.Fatalf("mixed taxes %+v %+v", lines[0].Taxes[0], lines[1].Taxes[0].Rate)
	}
	got, err := f.sc.CheckoutSessions.Get(mixed.ID, &stripe.CheckoutSessionParams{Expand: stripe.StringSlice([]string{"total_details.breakdown"})})
	if err != nil || len(got.TotalDetails.Breakdown.Taxes) != 2 || got.TotalDetails.Breakdown.Taxes[0].Amount != 82 || got.TotalDetails.Breakdown.Taxes[1].Amount != 84 {
		t.Fatalf("tax breakdown = %+v, %v", got.TotalDetails.Breakdown, err)
	}
	if again, _ := f.emu.Session(s.ID); again.TotalDetails.AmountTax != 700 {
		t.Fatalf("a new rate changed an existing session's tax to %d", again.TotalDetails.AmountTax)
	}

	// The hosted page shows the tax; paying charges it.
	_, page := f.page(s.URL)
	if !strings.Contains(page, `<span id="tax">€7.00</span>`) || !strings.Contains(page, "€76.98") {
		t.Fatalf("page lacks the tax:\n%s", page)
	}
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	paid, _ := f.emu.Session(s.ID)
	if pi, _ := f.emu.PaymentIntent(paid.PaymentIntent.ID); pi.Amount != 7698 {
		t.Fatalf("charged %d, want 7698", pi.Amount)
	}

	// Tax on subscriptions is not modeled: refused, not ignored.
	_, err = f.sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("subscription"),
		LineItems:    []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(f.recurringPrice(f.product("Pro").ID, 900, "month", "").ID), Quantity: stripe.Int64(1)}},
		AutomaticTax: &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}})
	stripeErr(t, err, 400, "", "automatic_tax[enabled]")
	if err := f.emu.SetTaxSettings(stripeemu.TaxSettings{Percent: 12.345}); err == nil {
		t.Fatal("a rate with three decimals was accepted")
	}
}

func TestTaxCalculations(t *testing.T) {
	f := newFixture(t)
	us := &stripe.TaxCalculationCustomerDetailsParams{AddressSource: stripe.String("billing"),
		Address: &stripe.AddressParams{Country: stripe.String("US"), PostalCode: stripe.String("94107"), State: stripe.String("CA")}}
	line := func(amount int64, ref, behavior string) *stripe.TaxCalculationLineItemParams {
		l := &stripe.TaxCalculationLineItemParams{Amount: stripe.Int64(amount), Reference: stripe.String(ref), Quantity: stripe.Int64(1)}
		if behavior != "" {
			l.TaxBehavior = stripe.String(behavior)
		}
		return l
	}
	// The cart of TestAutomaticTaxOnSessions, discounted by the caller.
	p := &stripe.TaxCalculationParams{Currency: stripe.String("usd"), CustomerDetails: us,
		LineItems: []*stripe.TaxCalculationLineItemParams{line(3199, "course", ""), line(3000, "workbook", "exclusive"), line(799, "sticker", "")}}
	p.AddExpand("line_items")
	calc, err := f.sc.TaxCalculations.New(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(calc.ID, "taxcalc_") || calc.AmountTotal != 7698 || calc.TaxAmountExclusive != 700 || calc.TaxAmountInclusive != 0 ||
		calc.ExpiresAt != start.Add(90*24*time.Hour).Unix() || len(calc.TaxBreakdown) != 1 || calc.TaxBreakdown[0].TaxRateDetails.PercentageDecimal != "10.0" ||
		calc.TaxBreakdown[0].TaxRateDetails.TaxType != "sales_tax" || calc.CustomerDetails.Address.PostalCode != "94107" {
		t.Fatalf("calculation = %+v", calc)
	}
	var taxes []string
	for _, li := range calc.LineItems.Data {
		taxes = append(taxes, fmt.Sprintf("%s:%d+%d", li.Reference, li.Amount, li.AmountTax))
	}
	sameStrings(t, "calculation lines", taxes, []string{"course:3199+320", "workbook:3000+300", "sticker:799+80"})
	lp := &stripe.TaxCalculationListLineItemsParams{Calculation: stripe.String(calc.ID)}
	lp.Limit = stripe.Int64(2)
	it := f.sc.TaxCalculations.ListLineItems(lp)
	n := 0
	for it.Next() {
		n++
	}
	if it.Err() != nil || n != 3 {
		t.Fatalf("listed %d calculation lines, %v", n, it.Err())
	}

	// Inclusive amounts, and an exempt customer.
	incl, err := f.sc.TaxCalculations.New(&stripe.TaxCalculationParams{Currency: stripe.String("eur"),
		CustomerDetails: &stripe.TaxCalculationCustomerDetailsParams{AddressSource: stripe.String("shipping"), Address: &stripe.AddressParams{Country: stripe.String("DE")}},
		LineItems:       []*stripe.TaxCalculationLineItemParams{line(1100, "gift", "inclusive")}})
	if err != nil || incl.AmountTotal != 1100 || incl.TaxAmountInclusive != 100 || incl.TaxBreakdown[0].TaxRateDetails.TaxType != "vat" {
		t.Fatalf("inclusive = %+v, %v", incl, err)
	}
	exempt := *us
	exempt.TaxabilityOverride = stripe.String("customer_exempt")
	ex, err := f.sc.TaxCalculations.New(&stripe.TaxCalculationParams{Currency: stripe.String("usd"), CustomerDetails: &exempt,
		LineItems: []*stripe.TaxCalculationLineItemParams{line(3199, "course", "")}})
	if err != nil || ex.AmountTotal != 3199 || ex.TaxAmountExclusive != 0 || ex.TaxBreakdown[0].TaxabilityReason != "customer_exempt" {
		t.Fatalf("exempt = %+v, %v", ex, err)
	}

	// What Stripe refuses, the emulator refuses.
	for name, c := range map[string]struct {
		p           *stripe.TaxCalculationParams
		code, param string
	}{
		"no location": {&stripe.TaxCalculationParams{Currency: stripe.String("usd"), LineItems: []*stripe.TaxCalculationLineItemParams{line(100, "a", "")}},
			"customer_tax_location_invalid", "customer_details[address]"},
		"US without postal code": {&stripe.TaxCalculationParams{Currency: stripe.String("usd"), LineItems: []*stripe.TaxCalculationLineItemParams{line(100, "a", "")},
			CustomerDetails: &stripe.TaxCalculationCustomerDetailsParams{AddressSource: stripe.String("billing"), Address: &stripe.AddressParams{Country: stripe.String("US")}}},
			"customer_tax_location_invalid", "customer_details[address][postal_code]"},
		"no address source": {&stripe.TaxCalculationParams{Currency: stripe.String("usd"), LineItems: []*stripe.TaxCalculationLineItemParams{line(100, "a", "")},
			CustomerDetails: &stripe.TaxCalculationCustomerDetailsParams{Address: us.Address}}, "parameter_missing", "customer_details[address_source]"},
		"no lines":         {&stripe.TaxCalculationParams{Currency: stripe.String("usd"), CustomerDetails: us}, "parameter_missing", "line_items"},
		"same reference":   {&stripe.TaxCalculationParams{Currency: stripe.String("usd"), CustomerDetails: us, LineItems: []*stripe.TaxCalculationLineItemParams{line(1, "a", ""), line(2, "a", "")}}, "", "line_items[1][reference]"},
		"negative amount":  {&stripe.TaxCalculationParams{Currency: stripe.String("usd"), CustomerDetails: us, LineItems: []*stripe.TaxCalculationLineItemParams{line(-1, "a", "")}}, "", "line_items[0][amount]"},
		"no such customer": {&stripe.TaxCalculationParams{Currency: stripe.String("usd"), Customer: stripe.String("cus_nope"), LineItems: []*stripe.TaxCalculationLineItemParams{line(1, "a", "")}}, "resource_missing", "customer"},
		"odd tax behavior": {&stripe.TaxCalculationParams{Currency: stripe.String("usd"), CustomerDetails: us, LineItems: []*stripe.TaxCalculationLineItemParams{line(1, "a", "sometimes")}}, "", "line_items[0][tax_behavior]"},
	} {
		_, err := f.sc.TaxCalculations.New(c.p)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		stripeErr(t, err, 400, stripe.ErrorCode(c.code), c.param)
	}
}

func TestTaxTransactionsAndReversals(t *testing.T) {
	f := newFixture(t)
	calc, err := f.sc.TaxCalculations.New(&stripe.TaxCalculationParams{Currency: stripe.String("usd"),
		CustomerDetails: &stripe.TaxCalculationCustomerDetailsParams{AddressSource: stripe.String("billing"),
			Address: &stripe.AddressParams{Country: stripe.String("US"), PostalCode: stripe.String("10001")}},
		LineItems: []*stripe.TaxCalculationLineItemParams{{Amount: stripe.Int64(3199), Reference: stripe.String("course")}, {Amount: stripe.Int64(799)}}})
	if err != nil {
		t.Fatal(err)
	}
	txn, err := f.sc.TaxTransactions.CreateFromCalculation(&stripe.TaxTransactionCreateFromCalculationParams{Calculation: stripe.String(calc.ID),
		Reference: stripe.String("pi_order_o1"), Metadata: map[string]string{"order_id": "o1"}})
	if err != nil || txn.Type != "transaction" || txn.Reference != "pi_order_o1" || txn.Metadata["order_id"] != "o1" {
		t.Fatalf("transaction = %+v, %v", txn, err)
	}
	lines := func(id string) []string {
		it := f.sc.TaxTransactions.ListLineItems(&stripe.TaxTransactionListLineItemsParams{Transaction: stripe.String(id)})
		var out []string
		for it.Next() {
			li := it.TaxTransactionLineItem()
			out = append(out, fmt.Sprintf("%s:%d+%d", li.Reference, li.Amount, li.AmountTax))
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return out
	}
	sameStrings(t, "transaction lines", lines(txn.ID), []string{"course:3199+320", "L2:799+80"})
	_, err = f.sc.TaxTransactions.CreateFromCalculation(&stripe.TaxTransactionCreateFromCalculationParams{Calculation: stripe.String(calc.ID), Reference: stripe.String("pi_order_o1")})
	stripeErr(t, err, 400, "", "reference")

	// A partial refund of $10.00, taxes included, then the rest.
	part, err := f.sc.TaxTransactions.CreateReversal(&stripe.TaxTransactionCreateReversalParams{Mode: stripe.String("partial"),
		OriginalTransaction: stripe.String(txn.ID), Reference: stripe.String("re_1"), FlatAmount: stripe.Int64(-1000)})
	if err != nil || part.Type != "reversal" || part.Reversal.OriginalTransaction != txn.ID {
		t.Fatalf("partial reversal = %+v, %v", part, err)
	}
	// 1000 of 4398 (taxes included): 800 on the course (3519 of it),
	// the rest on the sticker, each split into amount and tax in
	// proportion.
	sameStrings(t, "partial lines", lines(part.ID), []string{"course:-727+-73", "L2:-182+-18"})
	rest, err := f.sc.TaxTransactions.CreateReversal(&stripe.TaxTransactionCreateReversalParams{Mode: stripe.String("full"),
		OriginalTransaction: stripe.String(txn.ID), Reference: stripe.String("re_2")})
	if err != nil {
		t.Fatal(err)
	}
	sameStrings(t, "the rest", lines(rest.ID), []string{"course:-2472+-247", "L2:-617+-62"})
	_, err = f.sc.TaxTransactions.CreateReversal(&stripe.TaxTransactionCreateReversalParams{Mode: stripe.String("full"),
		OriginalTransaction: stripe.String(txn.ID), Reference: stripe.String("re_3")})
	stripeErr(t, err, 400, "", "original_transaction")
	_, err = f.sc.TaxTransactions.CreateReversal(&stripe.TaxTransactionCreateReversalParams{Mode: stripe.String("partial"),
		OriginalTransaction: stripe.String(txn.ID), Reference: stripe.String("re_4"), FlatAmount: stripe.Int64(100)})
	stripeErr(t, err, 400, "", "flat_amount")

	// A calculation expires after 90 days.
	f.clk.Advance(91 * 24 * time.Hour)
	_, err = f.sc.TaxTransactions.CreateFromCalculation(&stripe.TaxTransactionCreateFromCalculationParams{Calculation: stripe.String(calc.ID), Reference: stripe.String("late")})
	stripeErr(t, err, 400, "", "calculation")
	res, body := f.raw(http.MethodGet, "/v1/tax/transactions/"+rest.ID, nil, http.Header{"Authorization": {"Bearer sk_test_x"}})
	if res.StatusCode != 200 || !strings.Contains(body, `"type":"reversal"`) {
		t.Fatalf("retrieve reversal: %d %s", res.StatusCode, body)
	}
}
