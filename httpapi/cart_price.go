// Cart arithmetic: a cart's lines priced from their Stripe prices and a
// promotion code's discount computed as Stripe computes it for a Checkout
// Session, so the total a cart shows, the PaymentIntent an embedded order
// charges and the session a hosted order opens agree to the minor unit.
// These are pure functions; the emulator's sessions check them
// (TestCartDiscountMatchesStripe).
package httpapi

import (
	"math"
	"sort"
	"strings"

	"github.com/stripe/stripe-go/v76"
)

// pricedLine is one cart line priced in minor units of the cart's currency.
type pricedLine struct {
	Product    string
	Name       string
	PriceID    string
	Quantity   int64
	UnitAmount int64
	Subtotal   int64 // UnitAmount * Quantity
	Discount   int64 // the line's share of the cart's discount
	Tax        int64 // Stripe Tax on Subtotal - Discount; 0 without
}

// Total is what the line costs after its discount, tax added on top.
func (l pricedLine) Total() int64 { return l.Subtotal - l.Discount + l.Tax }

// couponTerms is what of a coupon the arithmetic needs: a percentage in
// hundredths of a percent (2000 is 20%), or an amount off in Currency.
type couponTerms struct {
	PercentBP int64
	AmountOff int64
	Currency  string
}

// termsOf reads a Stripe coupon. Stripe allows percent_off two decimals,
// so hundredths of a percent hold it exactly.
func termsOf(c *stripe.Coupon) couponTerms {
	if c == nil {
		return couponTerms{}
	}
	return couponTerms{PercentBP: int64(math.Round(c.PercentOff * 100)), AmountOff: c.AmountOff,
		Currency: strings.ToLower(string(c.Currency))}
}

// discount returns the coupon's discount on subtotal in currency, and
// whether the coupon applies to that currency at all: a percentage of the
// subtotal rounded half up to the minor unit, or an amount off in the same
// currency, never more than the subtotal.
func (c couponTerms) discount(subtotal int64, currency string) (int64, bool) {
	switch {
	case c.PercentBP > 0:
		return (subtotal*c.PercentBP + 5000) / 10000, true
	case c.AmountOff > 0 && c.Currency == currency:
		return min(c.AmountOff, subtotal), true
	}
	return 0, false
}

// spreadDiscount gives each line its share of discount in proportion to
// its subtotal, as Stripe does on a session's line items: each line gets
// the whole minor units of its share, and the units left over go one each
// to the lines with the largest remainders (the earlier line on a tie), so
// the lines add up to the discount exactly.
func spreadDiscount(lines []pricedLine, discount int64) {
	var subtotal int64
	for _, l := range lines {
		subtotal += l.Subtotal
	}
	for i := range lines {
		lines[i].Discount = 0
	}
	if subtotal == 0 || discount == 0 {
		return
	}
	left := discount
	rem := make([]int64, len(lines))
	for i := range lines {
		share := discount * lines[i].Subtotal
		lines[i].Discount, rem[i] = share/subtotal, share%subtotal
		left -= lines[i].Discount
	}
	order := make([]int, len(lines))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rem[order[a]] > rem[order[b]] })
	for _, i := range order[:left] {
		lines[i].Discount++
	}
}

// cartTotals are a priced cart's sums.
type cartTotals struct {
	Subtotal, Discount, Tax, Total int64
}

// totalsOf adds up the lines.
func totalsOf(lines []pricedLine) cartTotals {
	var t cartTotals
	for _, l := range lines {
		t.Subtotal += l.Subtotal
		t.Discount += l.Discount
		t.Tax += l.Tax
	}
	t.Total = t.Subtotal - t.Discount + t.Tax
	return t
}
