// Promotion codes at checkout: the code a customer types is looked up
// among Stripe's active promotion codes (case-insensitive, as Stripe
// compares them) and passed to the session as discounts[0][promotion_code].
// A client never names a coupon: an internal coupon (100% off for staff,
// say) would otherwise give the product away. Every code that cannot be
// used, whatever the reason, gets the same answer byte for byte, so codes
// cannot be told apart, let alone enumerated, by their errors.
package httpapi

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// promotionCodeRE is what is worth asking Stripe about: Stripe's codes are
// letters and digits; hyphens and underscores are allowed through, as
// Stripe simply finds no such code.
var promotionCodeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// errInvalidPromotionCode is the one answer for a code that cannot be used:
// malformed, unknown, inactive, expired, used up, or refused by Stripe when
// the session is created. It never echoes the code.
func errInvalidPromotionCode() *Error {
	return Errorf(http.StatusBadRequest, "invalid_promotion_code", "this promotion code is not valid")
}

// resolvePromotionCode returns the id of the promotion code a customer
// typed, "" when none was, or errInvalidPromotionCode.
func (a *api) resolvePromotionCode(ctx context.Context, code string) (string, error) {
	if code == "" {
		return "", nil
	}
	if !promotionCodeRE.MatchString(code) {
		return "", errInvalidPromotionCode()
	}
	codes, err := a.stripe.ActivePromotionCodes(ctx, code)
	if err != nil {
		a.log.WarnContext(ctx, "look up promotion code", "err", err)
		return "", errStripeUnavailable()
	}
	id := usablePromotionCode(codes, code, a.clock.Now())
	if id == "" {
		a.log.InfoContext(ctx, "promotion code refused", "matches", len(codes))
		return "", errInvalidPromotionCode()
	}
	return id, nil
}

// usablePromotionCode picks, from what Stripe listed for code, the first
// promotion code that can be redeemed at now: its code matches (regardless
// of case), it is active and not expired, it has redemptions left, its
// coupon is valid, and it is not restricted to one customer (paymentd's
// sessions name no customer). It returns "" when there is none. Stripe
// enforces the remaining restrictions (first-time customers, a minimum
// amount) when the session is created.
func usablePromotionCode(codes []*stripe.PromotionCode, code string, now time.Time) string {
	for _, pc := range codes {
		switch {
		case pc == nil || !strings.EqualFold(pc.Code, code):
		case !pc.Active:
		case pc.ExpiresAt != 0 && !now.Before(time.Unix(pc.ExpiresAt, 0)):
		case pc.MaxRedemptions > 0 && pc.TimesRedeemed >= pc.MaxRedemptions:
		case pc.Coupon == nil || !pc.Coupon.Valid:
		case pc.Customer != nil:
		default:
			return pc.ID
		}
	}
	return ""
}

// refusesDiscount reports whether Stripe's refusal of a session is about
// its discount: the promotion code or its coupon.
func refusesDiscount(se *stripe.Error) bool {
	return strings.HasPrefix(se.Param, "discounts") || strings.HasPrefix(string(se.Code), "promotion_code") ||
		se.Code == stripe.ErrorCodeCouponExpired
}
