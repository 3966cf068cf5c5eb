package httpapi

import (
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

func TestUsablePromotionCode(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	valid := &stripe.Coupon{ID: "c", Valid: true}
	good := func(mod func(*stripe.PromotionCode)) *stripe.PromotionCode {
		pc := &stripe.PromotionCode{ID: "promo_1", Code: "SPRING", Active: true, Coupon: valid}
		if mod != nil {
			mod(pc)
		}
		return pc
	}
	for _, c := range []struct {
		name  string
		codes []*stripe.PromotionCode
		want  string
	}{
		{"none listed", nil, ""},
		{"usable", []*stripe.PromotionCode{good(nil)}, "promo_1"},
		{"typed in another case", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.Code = "spring" })}, "promo_1"},
		{"another code", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.Code = "SPRING2" })}, ""},
		{"inactive", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.Active = false })}, ""},
		{"expires now", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.ExpiresAt = now.Unix() })}, ""},
		{"expires later", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.ExpiresAt = now.Add(time.Second).Unix() })}, "promo_1"},
		{"used up", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.MaxRedemptions, pc.TimesRedeemed = 3, 3 })}, ""},
		{"one redemption left", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.MaxRedemptions, pc.TimesRedeemed = 3, 2 })}, "promo_1"},
		{"coupon no longer valid", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.Coupon = &stripe.Coupon{ID: "c"} })}, ""},
		{"no coupon", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.Coupon = nil })}, ""},
		{"one customer's", []*stripe.PromotionCode{good(func(pc *stripe.PromotionCode) { pc.Customer = &stripe.Customer{ID: "cus_1"} })}, ""},
		{"the second is usable", []*stripe.PromotionCode{
			good(func(pc *stripe.PromotionCode) { pc.Customer = &stripe.Customer{ID: "cus_1"} }),
			good(func(pc *stripe.PromotionCode) { pc.ID = "promo_2" }),
		}, "promo_2"},
	} {
		if got := usablePromotionCode(c.codes, "SPRING", now); got != c.want {
			t.Errorf("%s: %q; want %q", c.name, got, c.want)
		}
	}
}
