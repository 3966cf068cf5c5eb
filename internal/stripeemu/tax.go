// Stripe Tax as the emulator models it: one configurable rate for every
// location (10% by default), applied per line item after its discount and
// rounded half up to the minor unit, on top of exclusive prices or inside
// inclusive ones. Checkout Sessions use it with automatic_tax[enabled]; a
// PaymentIntent cart, which has no automatic tax in API 2023-10-16, uses the
// Tax Calculations API (tax_calc.go) and records the sale with a tax
// transaction.

package stripeemu

import (
	"strconv"
	"strings"
)

// DefaultTaxPercent is the emulated Stripe Tax rate.
const DefaultTaxPercent = 10

// TaxSettings configure the emulated Stripe Tax.
type TaxSettings struct {
	// Percent is the rate applied everywhere, with at most two decimals;
	// zero means DefaultTaxPercent.
	Percent float64
	// DefaultBehavior is the tax behavior of prices whose tax_behavior is
	// unspecified, as Stripe Tax's default setting: "exclusive" (the
	// default) or "inclusive".
	DefaultBehavior string
}

// taxState holds the tax settings, the tax rate objects shown on line
// items, and tax calculations and transactions.
type taxState struct {
	percentBP  int64 // hundredths of a percent: 1000 is 10%
	inclusive  bool  // the default behavior of unspecified prices
	rates      map[rateKey]*taxRateJSON
	calcs      store[*taxCalc]
	txns       store[*taxTxn]
	references map[string]string // transaction reference → id
}

// newTaxState returns the default settings and no objects.
func newTaxState() taxState {
	return taxState{percentBP: DefaultTaxPercent * 100, rates: map[rateKey]*taxRateJSON{},
		calcs: newStore[*taxCalc]("tax.calculation"), txns: newStore[*taxTxn]("tax.transaction"), references: map[string]string{}}
}

// SetTaxSettings replaces the emulated Stripe Tax settings. Sessions and
// calculations already made keep their tax.
func (e *Emulator) SetTaxSettings(s TaxSettings) error {
	if s.Percent == 0 {
		s.Percent = DefaultTaxPercent
	}
	bp, ae := percentBasisPoints(s.Percent)
	if ae != nil {
		return opError("tax settings", invalid("percent", "", "Percent must be greater than 0 and at most 100, with at most two decimals (got %v).", s.Percent))
	}
	if s.DefaultBehavior != "" && s.DefaultBehavior != "exclusive" && s.DefaultBehavior != "inclusive" {
		return opError("tax settings", invalid("default_behavior", "", "DefaultBehavior must be exclusive or inclusive (got %q).", s.DefaultBehavior))
	}
	e.mu.Lock()
	e.pay.tax.percentBP, e.pay.tax.inclusive = bp, s.DefaultBehavior == "inclusive"
	e.mu.Unlock()
	return nil
}

// taxOn returns the tax on amount at bp hundredths of a percent, rounded
// half up to the minor unit: added on top of amount (exclusive), or the part
// of amount that is tax (inclusive).
func taxOn(amount, bp int64, inclusive bool) int64 {
	if amount <= 0 || bp <= 0 {
		return 0
	}
	if !inclusive {
		return (amount*bp + 5000) / 10000
	}
	den := 10000 + bp
	net := (amount*10000*2 + den) / (2 * den) // amount / (1 + rate), rounded half up
	return amount - net
}

// percentDecimal renders bp as Stripe's percentage_decimal, e.g. "10.0".
func percentDecimal(bp int64) string {
	s := strconv.FormatFloat(float64(bp)/100, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// inclusiveLocked reports whether price p's amounts include tax.
func (e *Emulator) inclusiveLocked(p *price) bool {
	switch p.TaxBehavior {
	case "inclusive":
		return true
	case "exclusive":
		return false
	}
	return e.pay.tax.inclusive
}

// sessionTaxLocked computes automatic tax on a new session's lines, each
// after its share of the discount, and returns the tax added on top of
// prices and all the tax (total_details.amount_tax counts both).
func (e *Emulator) sessionTaxLocked(items []lineItem) (exclusive, total int64) {
	bp := e.pay.tax.percentBP
	for i := range items {
		li := &items[i]
		if p, ok := e.prices.get(li.priceID); ok {
			li.taxInclusive = e.inclusiveLocked(p)
		}
		li.amountTax = taxOn(li.amountSubtotal-li.amountDiscount, bp, li.taxInclusive)
		if !li.taxInclusive {
			exclusive += li.amountTax
		}
		total += li.amountTax
	}
	return exclusive, total
}

// sessionAutomaticTax is a session's automatic_tax: the emulator knows the
// rate without the customer's address, so tax is complete at once.
func sessionAutomaticTax(enabled bool) map[string]any {
	if !enabled {
		return map[string]any{"enabled": false, "liability": nil, "status": nil}
	}
	return map[string]any{"enabled": true, "liability": map[string]any{"type": "self"}, "status": "complete"}
}

// rateKey identifies an emulated tax rate object.
type rateKey struct {
	bp        int64
	inclusive bool
}

// taxRateJSON is a Stripe tax rate, as line items show Stripe Tax's rates.
type taxRateJSON struct {
	ID                  string            `json:"id"`
	Object              string            `json:"object"`
	Active              bool              `json:"active"`
	Country             *string           `json:"country"`
	Created             int64             `json:"created"`
	Description         *string           `json:"description"`
	DisplayName         string            `json:"display_name"`
	EffectivePercentage float64           `json:"effective_percentage"`
	Inclusive           bool              `json:"inclusive"`
	Jurisdiction        *string           `json:"jurisdiction"`
	JurisdictionLevel   *string           `json:"jurisdiction_level"`
	Livemode            bool              `json:"livemode"`
	Metadata            map[string]string `json:"metadata"`
	Percentage          float64           `json:"percentage"`
	State               *string           `json:"state"`
	TaxType             string            `json:"tax_type"`
}

// rateLocked returns the tax rate object for bp, created on first use.
func (e *Emulator) rateLocked(bp int64, inclusive bool) *taxRateJSON {
	k := rateKey{bp, inclusive}
	if r, ok := e.pay.tax.rates[k]; ok {
		return r
	}
	pct := float64(bp) / 100
	r := &taxRateJSON{ID: e.newIDLocked("txr_"), Object: "tax_rate", Active: true, Created: e.nowUnix(), DisplayName: "Sales Tax",
		EffectivePercentage: pct, Inclusive: inclusive, Jurisdiction: optString("Emulated"), JurisdictionLevel: optString("multiple"),
		Metadata: map[string]string{}, Percentage: pct, TaxType: "sales_tax"}
	e.pay.tax.rates[k] = r
	return r
}

// lineItemJSON is a Stripe checkout line item; discounts and taxes only when
// expanded.
type lineItemJSON struct {
	ID             string `json:"id"`
	Object         string `json:"object"`
	AmountDiscount int64  `json:"amount_discount"`
	AmountSubtotal int64  `json:"amount_subtotal"`
	AmountTax      int64  `json:"amount_tax"`
	AmountTotal    int64  `json:"amount_total"`
	Currency       string `json:"currency"`
	Description    string `json:"description"`
	Discounts      any    `json:"discounts,omitempty"`
	Price          any    `json:"price"`
	Quantity       int64  `json:"quantity"`
	Taxes          any    `json:"taxes,omitempty"`
}

// renderLineItem renders one line of s; the price is always an object,
// discounts and taxes are expandable.
func (e *Emulator) renderLineItem(s *session, li lineItem, x expander) lineItemJSON {
	var pr any = li.priceID
	if p, ok := e.prices.get(li.priceID); ok {
		pr = e.renderPrice(p, x.sub("price"))
	}
	total := li.amountSubtotal - li.amountDiscount
	if !li.taxInclusive {
		total += li.amountTax
	}
	w := lineItemJSON{ID: li.id, Object: "item", AmountDiscount: li.amountDiscount, AmountSubtotal: li.amountSubtotal, AmountTax: li.amountTax,
		AmountTotal: total, Currency: s.Currency, Description: li.description, Price: pr, Quantity: li.quantity}
	if x.has("discounts") {
		ds := []any{}
		if d := e.renderSessionDiscount(s); d != nil && li.amountDiscount > 0 {
			ds = append(ds, map[string]any{"amount": li.amountDiscount, "discount": d})
		}
		w.Discounts = ds
	}
	if x.has("taxes") {
		ts := []any{}
		if s.AutomaticTax["enabled"] == true {
			ts = append(ts, map[string]any{"amount": li.amountTax, "rate": e.rateLocked(s.taxPercent, li.taxInclusive),
				"taxability_reason": "standard_rated", "taxable_amount": li.amountSubtotal - li.amountDiscount - exclusiveOf(li)})
		}
		w.Taxes = ts
	}
	return w
}

// exclusiveOf is the tax inside a line's amounts: none for exclusive tax.
func exclusiveOf(li lineItem) int64 {
	if li.taxInclusive {
		return li.amountTax
	}
	return 0
}

// sessionDiscountJSON is the discount a session's coupon or promotion code
// makes.
type sessionDiscountJSON struct {
	ID              string  `json:"id"`
	Object          string  `json:"object"`
	CheckoutSession string  `json:"checkout_session"`
	Coupon          any     `json:"coupon"`
	Customer        *string `json:"customer"`
	End             *int64  `json:"end"`
	Invoice         *string `json:"invoice"`
	InvoiceItem     *string `json:"invoice_item"`
	PromotionCode   *string `json:"promotion_code"`
	Start           int64   `json:"start"`
	Subscription    *string `json:"subscription"`
}

// renderSessionDiscount renders s's discount, or nil.
func (e *Emulator) renderSessionDiscount(s *session) any {
	if s.discountID == "" {
		return nil
	}
	couponID := s.spec.coupon
	if p, ok := e.promos.get(s.spec.promotionCode); ok {
		couponID = p.couponID
	}
	var cp any
	if c, ok := e.coupons[couponID]; ok {
		cp = c.render(e.nowUnix())
	}
	return sessionDiscountJSON{ID: s.discountID, Object: "discount", CheckoutSession: s.ID, Coupon: cp, Customer: optString(s.customerID),
		PromotionCode: optString(s.spec.promotionCode), Start: s.Created}
}

// renderBreakdown renders total_details.breakdown: the session's discount
// and its taxes, one entry per rate.
func (e *Emulator) renderBreakdown(s *session) map[string]any {
	discounts, taxes := []any{}, []any{}
	if d := e.renderSessionDiscount(s); d != nil && s.TotalDetails.AmountDiscount > 0 {
		discounts = append(discounts, map[string]any{"amount": s.TotalDetails.AmountDiscount, "discount": d})
	}
	if s.AutomaticTax["enabled"] == true {
		for _, inclusive := range []bool{false, true} {
			var amount, taxable int64
			found := false
			for _, li := range s.lineItems {
				if li.taxInclusive == inclusive {
					found = true
					amount += li.amountTax
					taxable += li.amountSubtotal - li.amountDiscount - exclusiveOf(li)
				}
			}
			if found {
				taxes = append(taxes, map[string]any{"amount": amount, "rate": e.rateLocked(s.taxPercent, inclusive),
					"taxability_reason": "standard_rated", "taxable_amount": taxable})
			}
		}
	}
	return map[string]any{"discounts": discounts, "taxes": taxes}
}

// pageLineItems serves GET /v1/checkout/sessions/{id}/line_items: the
// lines in the order they were given, paged by line item id.
func (e *Emulator) pageLineItems(c *call, s *session) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	items, more, ae := pageSlice(s.lineItems, func(li lineItem) string { return li.id }, q, "line_item")
	if ae != nil {
		return nil, ae
	}
	x := c.expand.sub("data")
	return renderList("/v1/checkout/sessions/"+s.ID+"/line_items", items, more, func(li lineItem) any {
		return e.renderLineItem(s, li, x)
	}), nil
}

// embeddedListLimit is how many items a list embedded in an object holds,
// as on Stripe; the rest are fetched from the list's own endpoint.
const embeddedListLimit = 10

// pageSlice returns one page of items kept in their natural (ascending)
// order: starting_after=X the items after X, ending_before=X those before
// it, nearest first but returned in order.
func pageSlice[T any](items []T, id func(T) string, q pageQuery, kind string) ([]T, bool, *apiError) {
	find := func(param, want string) (int, *apiError) {
		for i, it := range items {
			if id(it) == want {
				return i, nil
			}
		}
		return 0, invalid(param, "resource_missing", "No such %s: '%s'", kind, want)
	}
	switch {
	case q.startingAfter != "":
		i, ae := find("starting_after", q.startingAfter)
		if ae != nil {
			return nil, false, ae
		}
		rest := items[i+1:]
		if len(rest) > q.limit {
			return rest[:q.limit], true, nil
		}
		return rest, false, nil
	case q.endingBefore != "":
		i, ae := find("ending_before", q.endingBefore)
		if ae != nil {
			return nil, false, ae
		}
		before := items[:i]
		if len(before) > q.limit {
			return before[len(before)-q.limit:], true, nil
		}
		return before, false, nil
	}
	if len(items) > q.limit {
		return items[:q.limit], true, nil
	}
	return items, false, nil
}

// taxCheckoutSpec reads automatic_tax of a session request; the emulator
// models tax on one-time payments only.
func taxCheckoutSpec(c *call, spec *sessionSpec) *apiError {
	on, _, ae := formBool(c.form, "automatic_tax[enabled]")
	if ae != nil {
		return ae
	}
	if on && spec.mode == "subscription" {
		return invalid("automatic_tax[enabled]", "", "The Stripe emulator models automatic tax on payment-mode sessions only.")
	}
	spec.automaticTax = on
	return nil
}
