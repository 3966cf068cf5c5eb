// Coupons and promotion codes as Stripe models them for API 2023-10-16. A
// coupon is the discount itself (percent or amount off, with its own
// redemption limit and redeem_by date); a promotion code is a
// customer-facing code on top of one coupon, with its own active flag,
// expiry, redemption limit and restrictions (first-time customers, a
// minimum amount). A Checkout Session takes one of them in discounts[0];
// the redemption is counted when the session completes.

package stripeemu

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// couponJSON is a Stripe coupon.
type couponJSON struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	AmountOff        *int64            `json:"amount_off"`
	Created          int64             `json:"created"`
	Currency         *string           `json:"currency"`
	Duration         string            `json:"duration"`
	DurationInMonths *int64            `json:"duration_in_months"`
	Livemode         bool              `json:"livemode"`
	MaxRedemptions   *int64            `json:"max_redemptions"`
	Metadata         map[string]string `json:"metadata"`
	Name             *string           `json:"name"`
	PercentOff       *float64          `json:"percent_off"`
	RedeemBy         *int64            `json:"redeem_by"`
	TimesRedeemed    int64             `json:"times_redeemed"`
	Valid            bool              `json:"valid"`
}

// coupon is a stored coupon. Its percentage is kept in hundredths of a
// percent (Stripe allows two decimals), so discounts are integer
// arithmetic on minor units; percent_off is rendered from it.
type coupon struct {
	couponJSON
	percentBP int64 // 2000 is 20%; 0 for an amount_off coupon
}

// validAt reports whether the coupon can still be redeemed at now: its
// redeem_by has not passed and it has redemptions left.
func (c *coupon) validAt(now int64) bool {
	return (c.RedeemBy == nil || now < *c.RedeemBy) && (c.MaxRedemptions == nil || c.TimesRedeemed < *c.MaxRedemptions)
}

// render returns the coupon's wire form at now.
func (c *coupon) render(now int64) couponJSON {
	w := c.couponJSON
	w.Valid = c.validAt(now)
	if c.percentBP > 0 {
		pct := float64(c.percentBP) / 100
		w.PercentOff = &pct
	}
	return w
}

// discount returns the coupon's discount on subtotal in currency, and
// whether the coupon applies to that currency at all. A percentage is
// rounded half up to the minor unit; an amount off never exceeds the
// subtotal.
func (c *coupon) discount(subtotal int64, currency string) (int64, bool) {
	if c.percentBP > 0 {
		return (subtotal*c.percentBP + 5000) / 10000, true
	}
	if c.AmountOff != nil && c.Currency != nil && *c.Currency == currency {
		return min(*c.AmountOff, subtotal), true
	}
	return 0, false
}

// restrictionsJSON is a promotion code's restrictions.
type restrictionsJSON struct {
	CurrencyOptions       map[string]any `json:"currency_options"`
	FirstTimeTransaction  bool           `json:"first_time_transaction"`
	MinimumAmount         *int64         `json:"minimum_amount"`
	MinimumAmountCurrency *string        `json:"minimum_amount_currency"`
}

// promotionCodeJSON is a Stripe promotion code; its coupon is always the
// whole coupon object.
type promotionCodeJSON struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Active         bool              `json:"active"`
	Code           string            `json:"code"`
	Coupon         couponJSON        `json:"coupon"`
	Created        int64             `json:"created"`
	Customer       *string           `json:"customer"`
	ExpiresAt      *int64            `json:"expires_at"`
	Livemode       bool              `json:"livemode"`
	MaxRedemptions *int64            `json:"max_redemptions"`
	Metadata       map[string]string `json:"metadata"`
	Restrictions   restrictionsJSON  `json:"restrictions"`
	TimesRedeemed  int64             `json:"times_redeemed"`
}

// promotionCode is a stored promotion code. active is its own flag; the
// rendered active is also false while its coupon is not valid, as on
// Stripe.
type promotionCode struct {
	promotionCodeJSON
	couponID string
	active   bool
}

func (p *promotionCode) sortKey() (int64, string) { return p.Created, p.ID }

// activeLocked reports whether p is active: its own flag, and its coupon
// still valid.
func (e *Emulator) activeLocked(p *promotionCode) bool {
	c, ok := e.coupons[p.couponID]
	return p.active && ok && c.validAt(e.nowUnix())
}

// renderPromotionCode returns p's wire form.
func (e *Emulator) renderPromotionCode(p *promotionCode) any {
	w := p.promotionCodeJSON
	w.Active = e.activeLocked(p)
	if c, ok := e.coupons[p.couponID]; ok {
		w.Coupon = c.render(e.nowUnix())
	}
	return w
}

// promotionRoutes mounts the coupon and promotion code endpoints.
func (e *Emulator) promotionRoutes(h func(pattern string, fn apiFunc)) {
	h("POST /v1/coupons", e.createCouponCall)
	h("GET /v1/coupons/{id}", e.getCoupon)
	h("POST /v1/promotion_codes", e.createPromotionCodeCall)
	h("GET /v1/promotion_codes", e.listPromotionCodes)
	h("GET /v1/promotion_codes/{id}", e.getPromotionCode)
	h("POST /v1/promotion_codes/{id}", e.updatePromotionCode)
}

// CouponParams describes a coupon: PercentOff (up to two decimals), or
// AmountOff in Currency.
type CouponParams struct {
	// ID is the coupon's id; empty generates one.
	ID   string
	Name string
	// PercentOff is the percentage taken off, in (0, 100].
	PercentOff float64
	// AmountOff is taken off in Currency's minor units when PercentOff is 0.
	AmountOff int64
	Currency  string
	// MaxRedemptions limits the coupon's redemptions; 0 means no limit.
	MaxRedemptions int64
	// RedeemBy is when the coupon stops being redeemable; zero means never.
	RedeemBy time.Time
}

// couponSpec is a validated coupon creation.
type couponSpec struct {
	id, name, currency, duration string
	percentBP, amountOff         int64
	durationInMonths             int64
	maxRedemptions, redeemBy     int64
	metadata                     map[string]string
}

// percentBasisPoints converts a percent_off in (0, 100] with at most two
// decimals to hundredths of a percent.
func percentBasisPoints(pct float64) (int64, *apiError) {
	bp := math.Round(pct * 100)
	if pct <= 0 || pct > 100 || math.Abs(pct*100-bp) > 1e-6 {
		return 0, invalid("percent_off", "", "Invalid percent_off: must be greater than 0 and at most 100, with at most two decimal places.")
	}
	return int64(bp), nil
}

// couponSpecFromForm decodes POST /v1/coupons.
func couponSpecFromForm(c *call) (couponSpec, *apiError) {
	f := c.form
	s := couponSpec{id: f.Get("id"), name: f.Get("name"), currency: strings.ToLower(f.Get("currency")),
		duration: orDefault(f.Get("duration"), "once"), metadata: formMap(f, "metadata")}
	switch {
	case f.Has("percent_off") && f.Has("amount_off"):
		return s, invalid("percent_off", "", "You may only specify one of these parameters: amount_off, percent_off.")
	case f.Has("percent_off"):
		pct, err := strconv.ParseFloat(f.Get("percent_off"), 64)
		if err != nil {
			return s, invalid("percent_off", "", "Invalid decimal: %s", f.Get("percent_off"))
		}
		var ae *apiError
		if s.percentBP, ae = percentBasisPoints(pct); ae != nil {
			return s, ae
		}
	case f.Has("amount_off"):
		var ae *apiError
		if s.amountOff, ae = formInt(f, "amount_off"); ae != nil {
			return s, ae
		}
	default:
		return s, invalid("percent_off", "parameter_missing", "You must specify either amount_off or percent_off.")
	}
	for name, dst := range map[string]*int64{"max_redemptions": &s.maxRedemptions, "redeem_by": &s.redeemBy,
		"duration_in_months": &s.durationInMonths} {
		if f.Has(name) {
			v, ae := formInt(f, name)
			if ae != nil {
				return s, ae
			}
			*dst = v
		}
	}
	return s, nil
}

// createCouponLocked validates and stores a coupon.
func (e *Emulator) createCouponLocked(s couponSpec) (*coupon, *apiError) {
	now := e.nowUnix()
	switch {
	case s.amountOff < 0 || (s.percentBP == 0 && s.amountOff == 0):
		return nil, invalid("amount_off", "", "Invalid amount_off: must be a positive integer.")
	case s.amountOff > 0 && s.currency == "":
		return nil, invalid("currency", "parameter_missing", "Missing required param: currency.")
	case s.duration != "once" && s.duration != "forever" && s.duration != "repeating":
		return nil, invalid("duration", "", "Invalid duration: must be one of forever, once, or repeating")
	case s.duration == "repeating" && s.durationInMonths < 1:
		return nil, invalid("duration_in_months", "parameter_missing", "Missing required param: duration_in_months.")
	case s.maxRedemptions < 0:
		return nil, invalid("max_redemptions", "", "Invalid max_redemptions: must be a positive integer.")
	case s.redeemBy != 0 && s.redeemBy <= now:
		return nil, invalid("redeem_by", "", "Invalid redeem_by: must be in the future.")
	}
	if s.id == "" {
		s.id = e.newIDLocked("")[16:24]
	} else if _, ok := e.coupons[s.id]; ok {
		return nil, invalid("id", "resource_already_exists", "Coupon already exists.")
	}
	c := &coupon{percentBP: s.percentBP}
	c.couponJSON = couponJSON{ID: s.id, Object: "coupon", Created: now, Duration: s.duration,
		Metadata: cloneMeta(s.metadata), Name: optString(s.name)}
	if s.amountOff > 0 {
		amt := s.amountOff
		c.AmountOff, c.Currency = &amt, optString(s.currency)
	}
	if s.duration == "repeating" {
		n := s.durationInMonths
		c.DurationInMonths = &n
	}
	if s.maxRedemptions > 0 {
		n := s.maxRedemptions
		c.MaxRedemptions = &n
	}
	if s.redeemBy > 0 {
		t := s.redeemBy
		c.RedeemBy = &t
	}
	e.coupons[c.ID] = c
	return c, nil
}

func (e *Emulator) createCouponCall(c *call) (any, error) {
	s, ae := couponSpecFromForm(c)
	if ae != nil {
		return nil, ae
	}
	cp, ae := e.createCouponLocked(s)
	if ae != nil {
		return nil, ae
	}
	return cp.render(e.nowUnix()), nil
}

func (e *Emulator) getCoupon(c *call) (any, error) {
	cp, ok := e.coupons[c.r.PathValue("id")]
	if !ok {
		return nil, missing("coupon", c.r.PathValue("id"))
	}
	return cp.render(e.nowUnix()), nil
}

// CreateCoupon creates a coupon, as POST /v1/coupons does, and returns its id.
func (e *Emulator) CreateCoupon(p CouponParams) (string, error) {
	s := couponSpec{id: p.ID, name: p.Name, amountOff: p.AmountOff, currency: strings.ToLower(p.Currency),
		duration: "once", maxRedemptions: p.MaxRedemptions}
	if !p.RedeemBy.IsZero() {
		s.redeemBy = p.RedeemBy.Unix()
	}
	if p.PercentOff != 0 {
		var ae *apiError
		if s.percentBP, ae = percentBasisPoints(p.PercentOff); ae != nil {
			return "", opError("create coupon", ae)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ae := e.createCouponLocked(s)
	if ae != nil {
		return "", opError("create coupon", ae)
	}
	return c.ID, nil
}

// AddCoupon creates or replaces a coupon taking percentOff percent, or
// amountOff in currency when percentOff is zero.
func (e *Emulator) AddCoupon(id string, percentOff int, amountOff int64, currency string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.coupons, id)
	_, _ = e.createCouponLocked(couponSpec{id: id, percentBP: int64(percentOff) * 100, amountOff: amountOff,
		currency: strings.ToLower(currency), duration: "once"})
}

// Coupon returns a copy of a coupon.
func (e *Emulator) Coupon(id string) (*stripe.Coupon, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.coupons[id]
	if !ok {
		return nil, opError("coupon", missing("coupon", id))
	}
	return decodeAs[stripe.Coupon](c.render(e.nowUnix()))
}

// PromotionCodeParams describes a promotion code on a coupon.
type PromotionCodeParams struct {
	// Code is what the customer types; empty generates one.
	Code string
	// Coupon is the coupon's id (required).
	Coupon string
	// Inactive creates the code deactivated.
	Inactive bool
	// ExpiresAt is when the code stops being redeemable; zero means never.
	ExpiresAt time.Time
	// MaxRedemptions limits the code's redemptions; 0 means no limit.
	MaxRedemptions int64
	// FirstTimeTransaction restricts the code to customers without a
	// successful payment.
	FirstTimeTransaction bool
	// MinimumAmount, in MinimumAmountCurrency's minor units, is the least
	// subtotal the code applies to; 0 means no minimum.
	MinimumAmount         int64
	MinimumAmountCurrency string
	// Customer restricts the code to one customer id.
	Customer string
	Metadata map[string]string
}

// promotionSpec is a validated promotion code creation.
type promotionSpec struct {
	PromotionCodeParams
	expiresAt int64
}

// validCode reports whether code is a customer-facing code Stripe
// accepts: letters and digits.
func validCode(code string) bool {
	if code == "" || len(code) > 500 {
		return false
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// promotionSpecFromForm decodes POST /v1/promotion_codes.
func promotionSpecFromForm(c *call) (promotionSpec, *apiError) {
	f := c.form
	s := promotionSpec{PromotionCodeParams: PromotionCodeParams{Code: f.Get("code"), Coupon: f.Get("coupon"),
		MinimumAmountCurrency: strings.ToLower(f.Get("restrictions[minimum_amount_currency]")),
		Customer:              f.Get("customer"), Metadata: formMap(f, "metadata")}}
	active, hasActive, ae := formBool(f, "active")
	if ae != nil {
		return s, ae
	}
	s.Inactive = hasActive && !active
	if s.FirstTimeTransaction, _, ae = formBool(f, "restrictions[first_time_transaction]"); ae != nil {
		return s, ae
	}
	for name, dst := range map[string]*int64{"expires_at": &s.expiresAt, "max_redemptions": &s.MaxRedemptions,
		"restrictions[minimum_amount]": &s.MinimumAmount} {
		if f.Has(name) {
			v, ae := formInt(f, name)
			if ae != nil {
				return s, ae
			}
			*dst = v
		}
	}
	return s, nil
}

// createPromotionCodeLocked validates and stores a promotion code.
func (e *Emulator) createPromotionCodeLocked(s promotionSpec) (*promotionCode, *apiError) {
	now := e.nowUnix()
	if s.Coupon == "" {
		return nil, invalid("coupon", "parameter_missing", "Missing required param: coupon.")
	}
	cp, ok := e.coupons[s.Coupon]
	switch {
	case !ok:
		return nil, invalid("coupon", "resource_missing", "No such coupon: '%s'", s.Coupon)
	case s.Code != "" && !validCode(s.Code):
		return nil, invalid("code", "", "Invalid code: it may contain only letters and digits.")
	case s.expiresAt != 0 && s.expiresAt <= now:
		return nil, invalid("expires_at", "", "Invalid expires_at: must be in the future.")
	case s.expiresAt != 0 && cp.RedeemBy != nil && s.expiresAt > *cp.RedeemBy:
		return nil, invalid("expires_at", "", "The promotion code's expires_at cannot be later than its coupon's redeem_by.")
	case s.MaxRedemptions < 0:
		return nil, invalid("max_redemptions", "", "Invalid max_redemptions: must be a positive integer.")
	case s.MinimumAmount < 0:
		return nil, invalid("restrictions[minimum_amount]", "", "Invalid restrictions[minimum_amount]: must be a positive integer.")
	case s.MinimumAmount > 0 && s.MinimumAmountCurrency == "":
		return nil, invalid("restrictions[minimum_amount_currency]", "parameter_missing", "Missing required param: restrictions[minimum_amount_currency].")
	}
	if s.Customer != "" {
		if _, ok := e.customers.get(s.Customer); !ok {
			return nil, invalid("customer", "resource_missing", "No such customer: '%s'", s.Customer)
		}
	}
	if s.Code == "" {
		s.Code = strings.ToUpper(e.newIDLocked("")[14:22])
	}
	if !s.Inactive {
		if ae := e.codeTakenLocked(s.Code, s.Customer, ""); ae != nil {
			return nil, ae
		}
	}
	p := &promotionCode{couponID: cp.ID, active: !s.Inactive}
	p.promotionCodeJSON = promotionCodeJSON{ID: e.newIDLocked("promo_"), Object: "promotion_code", Code: s.Code,
		Created: now, Customer: optString(s.Customer), Metadata: cloneMeta(s.Metadata),
		Restrictions: restrictionsJSON{CurrencyOptions: map[string]any{}, FirstTimeTransaction: s.FirstTimeTransaction}}
	if s.expiresAt > 0 {
		t := s.expiresAt
		p.ExpiresAt = &t
	}
	if s.MaxRedemptions > 0 {
		n := s.MaxRedemptions
		p.MaxRedemptions = &n
	}
	if s.MinimumAmount > 0 {
		n := s.MinimumAmount
		p.Restrictions.MinimumAmount, p.Restrictions.MinimumAmountCurrency = &n, optString(s.MinimumAmountCurrency)
	}
	e.promos.add(p)
	return p, nil
}

// codeTakenLocked refuses a code that an active promotion code for the same
// customer (or for anyone) already uses, regardless of case.
func (e *Emulator) codeTakenLocked(code, customer, except string) *apiError {
	for _, o := range e.promos.items {
		if o.ID != except && e.activeLocked(o) && strings.EqualFold(o.Code, code) && ptrValue(o.Customer) == customer {
			return invalid("code", "", "An active promotion code with the code `%s` already exists.", code)
		}
	}
	return nil
}

func (e *Emulator) createPromotionCodeCall(c *call) (any, error) {
	s, ae := promotionSpecFromForm(c)
	if ae != nil {
		return nil, ae
	}
	p, ae := e.createPromotionCodeLocked(s)
	if ae != nil {
		return nil, ae
	}
	return e.renderPromotionCode(p), nil
}

// pathPromotionCode returns the promotion code named in the path.
func (e *Emulator) pathPromotionCode(c *call) (*promotionCode, *apiError) {
	p, ok := e.promos.get(c.r.PathValue("id"))
	if !ok {
		return nil, missing("promotion_code", c.r.PathValue("id"))
	}
	return p, nil
}

func (e *Emulator) getPromotionCode(c *call) (any, error) {
	p, ae := e.pathPromotionCode(c)
	if ae != nil {
		return nil, ae
	}
	return e.renderPromotionCode(p), nil
}

func (e *Emulator) updatePromotionCode(c *call) (any, error) {
	p, ae := e.pathPromotionCode(c)
	if ae != nil {
		return nil, ae
	}
	active, hasActive, ae := formBool(c.form, "active")
	if ae != nil {
		return nil, ae
	}
	if ae := e.setActiveLocked(p, active, hasActive); ae != nil {
		return nil, ae
	}
	p.Metadata = applyMetadata(p.Metadata, c.form)
	return e.renderPromotionCode(p), nil
}

// setActiveLocked changes p's active flag when set is true.
func (e *Emulator) setActiveLocked(p *promotionCode, active, set bool) *apiError {
	if !set || active == p.active {
		return nil
	}
	if active {
		if ae := e.codeTakenLocked(p.Code, ptrValue(p.Customer), p.ID); ae != nil {
			return ae
		}
	}
	p.active = active
	return nil
}

func (e *Emulator) listPromotionCodes(c *call) (any, error) {
	q, ae := parsePageQuery(c.form)
	if ae != nil {
		return nil, ae
	}
	active, hasActive, ae := formBool(c.form, "active")
	if ae != nil {
		return nil, ae
	}
	code, couponID, cust := c.form.Get("code"), c.form.Get("coupon"), c.form.Get("customer")
	items, more, ae := e.promos.page(q, func(p *promotionCode) bool {
		return (!hasActive || e.activeLocked(p) == active) && (code == "" || strings.EqualFold(p.Code, code)) &&
			(couponID == "" || p.couponID == couponID) && (cust == "" || ptrValue(p.Customer) == cust)
	})
	if ae != nil {
		return nil, ae
	}
	return renderList("/v1/promotion_codes", items, more, e.renderPromotionCode), nil
}

// CreatePromotionCode creates a promotion code, as POST /v1/promotion_codes
// does, and returns its id.
func (e *Emulator) CreatePromotionCode(p PromotionCodeParams) (string, error) {
	s := promotionSpec{PromotionCodeParams: p}
	s.MinimumAmountCurrency = strings.ToLower(s.MinimumAmountCurrency)
	if !p.ExpiresAt.IsZero() {
		s.expiresAt = p.ExpiresAt.Unix()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	pc, ae := e.createPromotionCodeLocked(s)
	if ae != nil {
		return "", opError("create promotion code", ae)
	}
	return pc.ID, nil
}

// SetPromotionCodeActive activates or deactivates a promotion code.
func (e *Emulator) SetPromotionCodeActive(id string, active bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.promos.get(id)
	if !ok {
		return opError("update promotion code", missing("promotion_code", id))
	}
	return opError("update promotion code "+id, e.setActiveLocked(p, active, true))
}

// PromotionCode returns a copy of a promotion code.
func (e *Emulator) PromotionCode(id string) (*stripe.PromotionCode, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.promos.get(id)
	if !ok {
		return nil, opError("promotion code", missing("promotion_code", id))
	}
	return decodeAs[stripe.PromotionCode](e.renderPromotionCode(p))
}

// decodeAs decodes an object's wire form into stripe-go's type T.
func decodeAs[T any](wire any) (*T, error) {
	var out T
	if err := json.Unmarshal(mustJSON(wire), &out); err != nil {
		return nil, fmt.Errorf("stripeemu: decode %T: %w", out, err)
	}
	return &out, nil
}

// The refusals of a promotion code in discounts[0], worded as Stripe words
// them.
const promoParam = "discounts[0][promotion_code]"

func promoInactive() *apiError {
	return invalid(promoParam, "", "This promotion code is inactive.")
}

func promoExpired() *apiError {
	return invalid(promoParam, "", "This promotion code has expired.")
}

func promoUsedUp() *apiError {
	return invalid(promoParam, "", "This promotion code cannot be redeemed because it has been used the maximum number of times.")
}

// promotionRefusalLocked says why p cannot be redeemed now, or nil: it is
// inactive (or its coupon is no longer valid), expired, or used up.
func (e *Emulator) promotionRefusalLocked(p *promotionCode) *apiError {
	now := e.nowUnix()
	switch {
	case !e.activeLocked(p):
		return promoInactive()
	case p.ExpiresAt != nil && now >= *p.ExpiresAt:
		return promoExpired()
	case p.MaxRedemptions != nil && p.TimesRedeemed >= *p.MaxRedemptions:
		return promoUsedUp()
	}
	return nil
}

// sessionDiscountLocked returns the discount a new session takes from
// spec's coupon or promotion code on subtotal in currency, refusing a
// discount Stripe would refuse at session creation.
func (e *Emulator) sessionDiscountLocked(spec sessionSpec, subtotal int64, currency string) (int64, *apiError) {
	param := "discounts[0][coupon]"
	var c *coupon
	switch {
	case spec.promotionCode != "":
		param = promoParam
		p, ok := e.promos.get(spec.promotionCode)
		if !ok {
			return 0, invalid(param, "resource_missing", "No such promotion code: '%s'", spec.promotionCode)
		}
		if ae := e.promotionRefusalLocked(p); ae != nil {
			return 0, ae
		}
		if ae := e.restrictionRefusalLocked(p, spec, subtotal, currency); ae != nil {
			return 0, ae
		}
		c = e.coupons[p.couponID]
	case spec.coupon != "":
		var ok bool
		if c, ok = e.coupons[spec.coupon]; !ok {
			return 0, invalid(param, "resource_missing", "No such coupon: '%s'", spec.coupon)
		}
		if !c.validAt(e.nowUnix()) {
			return 0, invalid(param, string(stripe.ErrorCodeCouponExpired), "Coupon expired: %s", c.ID)
		}
	default:
		return 0, nil
	}
	d, ok := c.discount(subtotal, currency)
	if !ok {
		return 0, invalid(param, "", "The coupon %s is not valid for currency %s.", c.ID, currency)
	}
	return d, nil
}

// restrictionRefusalLocked applies p's restrictions to a session: the
// customer it is limited to, a minimum subtotal, and first-time customers
// (judged by the session's email: an earlier successful charge to a
// customer with that email is a prior transaction).
func (e *Emulator) restrictionRefusalLocked(p *promotionCode, spec sessionSpec, subtotal int64, currency string) *apiError {
	r := p.Restrictions
	switch {
	case p.Customer != nil:
		return invalid(promoParam, "", "This promotion code cannot be redeemed because it is restricted to another customer.")
	case r.MinimumAmount != nil && (ptrValue(r.MinimumAmountCurrency) != currency || subtotal < *r.MinimumAmount):
		return invalid(promoParam, "", "This promotion code cannot be redeemed because the associated purchase does not meet the minimum amount requirement.")
	case r.FirstTimeTransaction && spec.customerEmail != "" && e.paidBeforeLocked(spec.customerEmail):
		return invalid(promoParam, "promotion_code_customer_not_first_time",
			"This promotion code cannot be redeemed because the associated customer has prior transactions.")
	}
	return nil
}

// paidBeforeLocked reports whether a customer with this email has a
// successful charge.
func (e *Emulator) paidBeforeLocked(email string) bool {
	for _, ch := range e.charges.items {
		if ch.Status != "succeeded" {
			continue
		}
		if cu, ok := e.customers.get(ch.customerID); ok && strings.EqualFold(ptrValue(cu.Email), email) {
			return true
		}
	}
	return false
}

// redeemLocked counts the redemption of a session's discount as it
// completes. A promotion code that became unusable since the session was
// created (deactivated, expired, used up) refuses the payment.
func (e *Emulator) redeemLocked(s *session) *apiError {
	switch {
	case s.spec.promotionCode != "":
		p, ok := e.promos.get(s.spec.promotionCode)
		if !ok {
			return invalid(promoParam, "resource_missing", "No such promotion code: '%s'", s.spec.promotionCode)
		}
		if ae := e.promotionRefusalLocked(p); ae != nil {
			return ae
		}
		p.TimesRedeemed++
		e.coupons[p.couponID].TimesRedeemed++
	case s.spec.coupon != "":
		if c, ok := e.coupons[s.spec.coupon]; ok {
			c.TimesRedeemed++
		}
	}
	return nil
}
