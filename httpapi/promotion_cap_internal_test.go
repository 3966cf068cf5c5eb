package httpapi

import (
	"testing"

	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// TestUsedUp: a code or its coupon is used up when Stripe's redemptions
// plus the uses paymentd's embedded orders hold reach its max_redemptions;
// no limit is never used up.
func TestUsedUp(t *testing.T) {
	t.Parallel()
	promo := func(codeMax, codeTimes, couponMax, couponTimes int64) *stripe.PromotionCode {
		return &stripe.PromotionCode{MaxRedemptions: codeMax, TimesRedeemed: codeTimes,
			Coupon: &stripe.Coupon{MaxRedemptions: couponMax, TimesRedeemed: couponTimes}}
	}
	for _, c := range []struct {
		name  string
		promo *stripe.PromotionCode
		held  store.PromotionUse
		want  bool
	}{
		{"no limits", promo(0, 40, 0, 40), store.PromotionUse{Code: 9, Coupon: 9}, false},
		{"code: one left", promo(3, 1, 0, 0), store.PromotionUse{Code: 1, Coupon: 1}, false},
		{"code: held by an order", promo(3, 2, 0, 0), store.PromotionUse{Code: 1, Coupon: 1}, true},
		{"code: held by orders alone", promo(1, 0, 0, 0), store.PromotionUse{Code: 1, Coupon: 1}, true},
		{"coupon: one left", promo(0, 0, 2, 1), store.PromotionUse{Code: 0, Coupon: 0}, false},
		{"coupon: held through another code", promo(5, 0, 2, 1), store.PromotionUse{Code: 0, Coupon: 1}, true},
	} {
		if got := usedUp(c.promo, c.held); got != c.want {
			t.Errorf("%s: usedUp = %v, want %v", c.name, got, c.want)
		}
	}
}
