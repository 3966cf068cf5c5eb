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

	"github.com/paymentd/paymentd/store"
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

// holdPromotion takes, in the transaction q that records order o, a use of
// promo for it, or refuses with errInvalidPromotionCode. Stripe counts a
// code's redemptions (and its coupon's) by Checkout Sessions only, never
// by the PaymentIntents of embedded orders, to which paymentd applies the
// discount itself; so the uses are Stripe's times_redeemed plus paymentd's
// embedded orders that are open or paid. They are counted under a lock on
// the coupon held until the order is recorded, so concurrent checkouts
// cannot all take the last use. An embedded order with a first-time code
// also holds it against the buyer's other embedded orders with a code, which
// paid first would make it not theirs: that, too, Stripe checks only on
// sessions. A hosted order takes no use (Stripe counts it when it is paid)
// but is refused when embedded orders hold the uses left.
func (a *api) holdPromotion(ctx context.Context, q *store.Queries, o store.Order, promo *stripe.PromotionCode) error {
	firstTime := o.UIMode == store.UIModeEmbedded && promo.Restrictions != nil && promo.Restrictions.FirstTimeTransaction
	lockUser := ""
	if firstTime {
		lockUser = o.UserID
	}
	if err := q.LockPromotion(ctx, promo.Coupon.ID, lockUser); err != nil {
		return err
	}
	held, err := q.PromotionUses(ctx, promo.ID, promo.Coupon.ID)
	if err != nil {
		return err
	}
	if usedUp(promo, held) {
		a.log.InfoContext(ctx, "promotion code refused: redemptions held", "order_id", o.ID, "user_id", o.UserID,
			"code_uses", held.Code, "coupon_uses", held.Coupon)
		return errInvalidPromotionCode()
	}
	if !firstTime {
		return nil
	}
	paid, err := q.UserHasPaid(ctx, o.UserID)
	if err != nil {
		return err
	}
	open, err := q.UserHasOpenDiscountedOrder(ctx, o.UserID)
	if err != nil {
		return err
	}
	if paid || open {
		a.log.InfoContext(ctx, "promotion code refused: not a first-time buyer", "order_id", o.ID, "user_id", o.UserID,
			"paid", paid, "open_order", open)
		return errInvalidPromotionCode()
	}
	return nil
}

// usedUp reports whether promo or its coupon has no redemption left,
// counting Stripe's redemptions and the uses paymentd's embedded orders
// hold, which Stripe never counts.
func usedUp(promo *stripe.PromotionCode, held store.PromotionUse) bool {
	if promo.MaxRedemptions > 0 && promo.TimesRedeemed+int64(held.Code) >= promo.MaxRedemptions {
		return true
	}
	c := promo.Coupon
	return c.MaxRedemptions > 0 && c.TimesRedeemed+int64(held.Coupon) >= c.MaxRedemptions
}
