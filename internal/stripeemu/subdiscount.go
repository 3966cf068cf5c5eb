// Discounts on subscriptions: a coupon (or the coupon behind a promotion
// code) applied at checkout stays on the subscription for its duration:
// once (the first invoice that charges something), repeating (invoices
// created within duration_in_months of the start) or forever.

package stripeemu

import "time"

// subDiscount is a coupon applied to a subscription.
type subDiscount struct {
	id       string
	couponID string
	promoID  string
	start    int64
	end      int64 // 0: no end (once or forever)
	used     bool  // a once discount has been applied
}

// discountJSON is a Stripe discount.
type discountJSON struct {
	ID              string  `json:"id"`
	Object          string  `json:"object"`
	CheckoutSession *string `json:"checkout_session"`
	Coupon          any     `json:"coupon"`
	Customer        string  `json:"customer"`
	End             *int64  `json:"end"`
	Invoice         any     `json:"invoice"`
	InvoiceItem     any     `json:"invoice_item"`
	PromotionCode   *string `json:"promotion_code"`
	Start           int64   `json:"start"`
	Subscription    string  `json:"subscription"`
}

// newSubDiscountLocked starts the discount of coupon (or of promotion code
// promoID's coupon) on s now; nil when there is neither.
func (e *Emulator) newSubDiscountLocked(s *subscription, couponID, promoID string) *subDiscount {
	if promoID != "" {
		p, ok := e.promos.get(promoID)
		if !ok {
			return nil
		}
		couponID = p.couponID
	}
	c, ok := e.coupons[couponID]
	if !ok {
		return nil
	}
	d := &subDiscount{id: "di_" + e.newIDLocked("")[:24], couponID: couponID, promoID: promoID, start: e.nowUnix()}
	if c.Duration == "repeating" && c.DurationInMonths != nil {
		d.end = addMonthsClamped(time.Unix(d.start, 0).UTC(), *c.DurationInMonths).Unix()
	}
	return d
}

// activeDiscountLocked returns s's discount if it still applies now.
func (e *Emulator) activeDiscountLocked(s *subscription) (*subDiscount, *coupon) {
	d := s.discount
	if d == nil || d.used || d.end != 0 && e.nowUnix() >= d.end {
		return nil, nil
	}
	c, ok := e.coupons[d.couponID]
	if !ok {
		return nil, nil
	}
	return d, c
}

// applyDiscountLocked takes s's discount off a new invoice. A once discount
// is spent on the first invoice that charges something, not on a trial's
// zero invoice.
func (e *Emulator) applyDiscountLocked(s *subscription, inv *invoice) {
	d, c := e.activeDiscountLocked(s)
	if d == nil || inv.subtotal <= 0 {
		return
	}
	off, ok := c.discount(inv.subtotal, inv.currency)
	if !ok || off == 0 {
		return
	}
	inv.discount, inv.discountID = off, d.id
	inv.amountDue = max(inv.total(), 0)
	if c.Duration == "once" {
		d.used = true
	}
}

// renderSubDiscount renders s's discount while it applies, else nil.
func (e *Emulator) renderSubDiscount(s *subscription) any {
	d, c := e.activeDiscountLocked(s)
	if d == nil {
		return nil
	}
	return discountJSON{ID: d.id, Object: "discount", Coupon: c.render(e.nowUnix()), Customer: s.customerID, End: optInt(d.end),
		PromotionCode: optString(d.promoID), Start: d.start, Subscription: s.id}
}
