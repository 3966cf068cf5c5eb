// Coupons, promotion codes and the discounts they give Checkout Sessions,
// driven through the real stripe-go v76 client.

package stripeemu_test

import (
	"errors"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// promoSession creates a session for qty units of priceID with a promotion
// code, and an email when one is given.
func (f *fixture) promoSession(priceID string, qty int64, promo, email string) (*stripe.CheckoutSession, error) {
	p := &stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(priceID), Quantity: stripe.Int64(qty)}},
		Discounts: []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(promo)}}}
	if email != "" {
		p.CustomerEmail = stripe.String(email)
	}
	return f.sc.CheckoutSessions.New(p)
}

func TestCouponsAndPromotionCodesOverTheAPI(t *testing.T) {
	f := newFixture(t)
	c, err := f.sc.Coupons.New(&stripe.CouponParams{PercentOff: stripe.Float64(12.5), Duration: stripe.String("once"),
		MaxRedemptions: stripe.Int64(5), Name: stripe.String("Spring")})
	if err != nil || c.PercentOff != 12.5 || c.MaxRedemptions != 5 || !c.Valid || c.TimesRedeemed != 0 {
		t.Fatalf("create coupon = %+v, %v", c, err)
	}
	_, err = f.sc.Coupons.New(&stripe.CouponParams{PercentOff: stripe.Float64(10.123), Duration: stripe.String("once")})
	stripeErr(t, err, 400, "", "percent_off")
	_, err = f.sc.Coupons.New(&stripe.CouponParams{AmountOff: stripe.Int64(500), Duration: stripe.String("once")})
	stripeErr(t, err, 400, stripe.ErrorCodeParameterMissing, "currency")

	pc, err := f.sc.PromotionCodes.New(&stripe.PromotionCodeParams{Coupon: stripe.String(c.ID), Code: stripe.String("Spring24"),
		MaxRedemptions: stripe.Int64(3), ExpiresAt: stripe.Int64(start.Add(48 * time.Hour).Unix()),
		Restrictions: &stripe.PromotionCodeRestrictionsParams{FirstTimeTransaction: stripe.Bool(true),
			MinimumAmount: stripe.Int64(1000), MinimumAmountCurrency: stripe.String("EUR")}})
	if err != nil {
		t.Fatal(err)
	}
	if pc.Code != "Spring24" || !pc.Active || pc.Coupon == nil || pc.Coupon.ID != c.ID || pc.MaxRedemptions != 3 ||
		pc.ExpiresAt != start.Add(48*time.Hour).Unix() || pc.Restrictions == nil || !pc.Restrictions.FirstTimeTransaction ||
		pc.Restrictions.MinimumAmount != 1000 || pc.Restrictions.MinimumAmountCurrency != "eur" || pc.Object != "promotion_code" {
		t.Fatalf("promotion code = %+v", pc)
	}
	// An active code is unique regardless of case.
	_, err = f.sc.PromotionCodes.New(&stripe.PromotionCodeParams{Coupon: stripe.String(c.ID), Code: stripe.String("SPRING24")})
	stripeErr(t, err, 400, "", "code")
	_, err = f.sc.PromotionCodes.New(&stripe.PromotionCodeParams{Coupon: stripe.String("nope"), Code: stripe.String("X1")})
	stripeErr(t, err, 400, stripe.ErrorCodeResourceMissing, "coupon")
	_, err = f.sc.PromotionCodes.New(&stripe.PromotionCodeParams{Coupon: stripe.String(c.ID), Code: stripe.String("no spaces")})
	stripeErr(t, err, 400, "", "code")

	list := func(code string, active *bool) []*stripe.PromotionCode {
		t.Helper()
		p := &stripe.PromotionCodeListParams{Code: stripe.String(code), Active: active}
		var out []*stripe.PromotionCode
		it := f.sc.PromotionCodes.List(p)
		for it.Next() {
			out = append(out, it.PromotionCode())
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := list("spring24", stripe.Bool(true)); len(got) != 1 || got[0].ID != pc.ID || got[0].Coupon.PercentOff != 12.5 {
		t.Fatalf("list by code, any case = %+v", got)
	}
	if got := list("SPRING2", nil); len(got) != 0 {
		t.Fatalf("a prefix matched %d codes", len(got))
	}
	if _, err := f.sc.PromotionCodes.Update(pc.ID, &stripe.PromotionCodeParams{Active: stripe.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	if got := list("SPRING24", stripe.Bool(true)); len(got) != 0 {
		t.Fatalf("an inactive code listed as active: %+v", got)
	}
	if got := list("SPRING24", stripe.Bool(false)); len(got) != 1 || got[0].Active {
		t.Fatalf("list inactive = %+v", got)
	}
	got, err := f.sc.PromotionCodes.Get(pc.ID, nil)
	if err != nil || got.Active || got.Code != "Spring24" {
		t.Fatalf("get = %+v, %v", got, err)
	}
}

func TestPromotionCodeDiscountsASession(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Course").ID, 1999, "")
	coupon, err := f.emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 12.5})
	if err != nil {
		t.Fatal(err)
	}
	promo, err := f.emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "SAVE", Coupon: coupon})
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.promoSession(pr.ID, 3, promo, "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	// 12.5% of 5997 is 749.625: rounded to 750 minor units.
	if s.AmountSubtotal != 5997 || s.TotalDetails.AmountDiscount != 750 || s.AmountTotal != 5247 {
		t.Fatalf("session amounts %d - %d = %d; want 5997 - 750 = 5247", s.AmountSubtotal, s.TotalDetails.AmountDiscount, s.AmountTotal)
	}
	got, err := f.sc.CheckoutSessions.Get(s.ID, &stripe.CheckoutSessionParams{Expand: []*string{stripe.String("line_items")}})
	if err != nil || got.LineItems.Data[0].AmountDiscount != 750 || got.LineItems.Data[0].AmountTotal != 5247 {
		t.Fatalf("line item = %+v, %v", got.LineItems, err)
	}
	// Redemptions count when the session completes, not when it is created.
	pc, _ := f.emu.PromotionCode(promo)
	if pc.TimesRedeemed != 0 {
		t.Fatalf("times_redeemed %d before payment", pc.TimesRedeemed)
	}
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	pc, _ = f.emu.PromotionCode(promo)
	c, _ := f.emu.Coupon(coupon)
	if pc.TimesRedeemed != 1 || c.TimesRedeemed != 1 {
		t.Fatalf("after payment: promotion code redeemed %d, coupon %d; want 1 and 1", pc.TimesRedeemed, c.TimesRedeemed)
	}
	if paid, err := f.emu.Session(s.ID); err != nil || paid.PaymentIntent == nil {
		t.Fatalf("paid session = %+v, %v", paid, err)
	} else if pi, err := f.sc.PaymentIntents.Get(paid.PaymentIntent.ID, nil); err != nil || pi.Amount != 5247 {
		t.Fatalf("payment intent = %+v, %v; want 5247", pi, err)
	}

	// A 100% coupon makes a free session.
	free, _ := f.emu.CreateCoupon(stripeemu.CouponParams{ID: "FREE100", PercentOff: 100})
	freePromo, _ := f.emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "GIFT", Coupon: free})
	s, err = f.promoSession(pr.ID, 1, freePromo, "")
	if err != nil || s.AmountTotal != 0 || s.TotalDetails.AmountDiscount != 1999 {
		t.Fatalf("100%% promotion code session = %+v, %v", s, err)
	}

	// One discount: a coupon and a promotion code together, or a promotion
	// code with allow_promotion_codes, are refused.
	_, err = f.sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(pr.ID), Quantity: stripe.Int64(1)}},
		Discounts: []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(promo), Coupon: stripe.String(coupon)}}})
	stripeErr(t, err, 400, "", "discounts[0]")
	_, err = f.sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("payment"),
		LineItems:           []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(pr.ID), Quantity: stripe.Int64(1)}},
		Discounts:           []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(promo)}},
		AllowPromotionCodes: stripe.Bool(true)})
	stripeErr(t, err, 400, "", "allow_promotion_codes")
}

func TestPromotionCodeRefusals(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Course").ID, 5000, "")
	coupon, _ := f.emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 20})
	mk := func(p stripeemu.PromotionCodeParams) string {
		t.Helper()
		p.Coupon = coupon
		id, err := f.emu.CreatePromotionCode(p)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	inactive := mk(stripeemu.PromotionCodeParams{Code: "OFF", Inactive: true})
	expiring := mk(stripeemu.PromotionCodeParams{Code: "SOON", ExpiresAt: start.Add(time.Hour)})
	once := mk(stripeemu.PromotionCodeParams{Code: "ONCE", MaxRedemptions: 1})
	minimum := mk(stripeemu.PromotionCodeParams{Code: "BIG", MinimumAmount: 10000, MinimumAmountCurrency: "eur"})
	firstTime := mk(stripeemu.PromotionCodeParams{Code: "WELCOME", FirstTimeTransaction: true})

	refused := func(name, promo string, qty int64, email, msg string) {
		t.Helper()
		_, err := f.promoSession(pr.ID, qty, promo, email)
		se := stripeErr(t, err, 400, "", "discounts[0][promotion_code]")
		if se.Msg != msg {
			t.Errorf("%s: message %q; want %q", name, se.Msg, msg)
		}
	}
	_, err := f.promoSession(pr.ID, 1, "promo_unknown", "")
	stripeErr(t, err, 400, stripe.ErrorCodeResourceMissing, "discounts[0][promotion_code]")
	refused("inactive", inactive, 1, "", "This promotion code is inactive.")
	refused("below the minimum", minimum, 1, "", "This promotion code cannot be redeemed because the associated purchase does not meet the minimum amount requirement.")
	if _, err := f.promoSession(pr.ID, 2, minimum, ""); err != nil {
		t.Errorf("at the minimum: %v", err)
	}

	// First-time customers: an email with a successful payment is refused.
	s, err := f.promoSession(pr.ID, 1, firstTime, "new@example.com")
	if err != nil {
		t.Fatalf("a first-time customer: %v", err)
	}
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	_, err = f.promoSession(pr.ID, 1, firstTime, "NEW@example.com")
	if se := stripeErr(t, err, 400, "promotion_code_customer_not_first_time", "discounts[0][promotion_code]"); se.Msg !=
		"This promotion code cannot be redeemed because the associated customer has prior transactions." {
		t.Errorf("first-time refusal worded %q", se.Msg)
	}

	// Used up: the redemption that completes first uses the last one; a
	// session opened before then can no longer be paid.
	a, err := f.promoSession(pr.ID, 1, once, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.promoSession(pr.ID, 1, once, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.emu.PaySession(a.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.PaySession(b.ID, stripeemu.Pay{}); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Errorf("paying with a used-up promotion code = %v", err)
	}
	refused("used up", once, 1, "", "This promotion code cannot be redeemed because it has been used the maximum number of times.")

	// Expired, by the clock.
	if _, err := f.promoSession(pr.ID, 1, expiring, ""); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	f.clk.Advance(time.Hour)
	refused("expired", expiring, 1, "", "This promotion code has expired.")

	// A code whose coupon is no longer valid is inactive.
	short, _ := f.emu.CreateCoupon(stripeemu.CouponParams{PercentOff: 50, RedeemBy: f.clk.Now().Add(time.Minute)})
	lapsing, _ := f.emu.CreatePromotionCode(stripeemu.PromotionCodeParams{Code: "HALF", Coupon: short})
	f.clk.Advance(time.Minute)
	refused("coupon past redeem_by", lapsing, 1, "", "This promotion code is inactive.")
	if pc, _ := f.emu.PromotionCode(lapsing); pc.Active || pc.Coupon.Valid {
		t.Errorf("promotion code on an expired coupon: active %v, coupon valid %v", pc.Active, pc.Coupon.Valid)
	}
}
