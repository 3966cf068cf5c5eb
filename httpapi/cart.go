// The cart: GET /api/cart and PUT /api/cart for the caller. A cart lives
// in Postgres, kept cart.ttl after its last change, and is priced on every
// read from the Stripe prices (cached by the catalog's resolver), with the
// promotion code's discount computed as Stripe computes it and, when
// stripe.automatic_tax is on, Stripe Tax's estimate for the caller's
// location. Checking a cart out is in cart_checkout.go.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// OrderStripe is what carts and their checkouts need from Stripe;
// *stripeapi.API satisfies it.
type OrderStripe interface {
	ActivePromotionCodes(ctx context.Context, code string) ([]*stripe.PromotionCode, error)
	CreateCartCheckoutSession(ctx context.Context, r stripeapi.CartCheckoutRequest, idempotencyKey string) (*stripe.CheckoutSession, error)
	CreatePaymentIntent(ctx context.Context, r stripeapi.PaymentIntentRequest, idempotencyKey string) (*stripe.PaymentIntent, error)
	CreateTaxCalculation(ctx context.Context, r stripeapi.TaxCalculationRequest, idempotencyKey string) (*stripe.TaxCalculation, error)
	CreateCustomer(ctx context.Context, c stripeapi.CustomerSpec, idempotencyKey string) (*stripe.Customer, error)
}

// Cart limits.
const (
	maxCartLines    = 50
	maxLineQuantity = 99
)

type cartItemRequest struct {
	Product  string `json:"product"`
	Quantity *int   `json:"quantity"`
}

type cartRequest struct {
	Items         []cartItemRequest `json:"items"`
	PromotionCode *string           `json:"promotion_code"`
}

// cartLineView is one priced line, in minor units of the cart's currency.
type cartLineView struct {
	Product        string `json:"product"`
	Name           string `json:"name"`
	Quantity       int64  `json:"quantity"`
	UnitAmount     int64  `json:"unit_amount"`
	AmountSubtotal int64  `json:"amount_subtotal"`
	AmountDiscount int64  `json:"amount_discount"`
	AmountTax      *int64 `json:"amount_tax"`
	AmountTotal    int64  `json:"amount_total"`
}

// cartView is the cart as the API shows it. Tax is null when Stripe Tax is
// on but could not locate the caller (a hosted checkout then computes it
// from the address entered on Stripe's page); it is 0 when Stripe Tax is off.
type cartView struct {
	Items         []cartLineView `json:"items"`
	PromotionCode *string        `json:"promotion_code"`
	Subtotal      int64          `json:"subtotal"`
	Discount      int64          `json:"discount"`
	Tax           *int64         `json:"tax"`
	Total         int64          `json:"total"`
	Currency      *string        `json:"currency"`
	AutomaticTax  bool           `json:"automatic_tax"`
	ExpiresAt     *time.Time     `json:"expires_at"`
}

// pricedCart is a cart priced from Stripe.
type pricedCart struct {
	lines    []pricedLine
	currency string
	// promo is the usable promotion code, nil without one.
	promo *stripe.PromotionCode
	// taxKnown: the lines' tax is Stripe Tax's (or there is none); false
	// when Stripe Tax is on and could not locate the buyer.
	taxKnown bool
	taxCalc  *stripe.TaxCalculation
	totals   cartTotals
}

// pricing says what pricing a cart involves beyond its lines.
type pricing struct {
	// tax asks Stripe Tax for the lines' tax at ip (when it is on).
	tax bool
	ip  string
	// embedded prices a cart a PaymentIntent will charge: the promotion
	// code's restrictions Stripe enforces only on sessions are checked
	// here, and paymentd's own count of its uses.
	embedded bool
	user     User
}

func (a *api) getCart(w http.ResponseWriter, r *http.Request, u User) error {
	if a.orderStripe == nil || a.prices == nil {
		return unavailable("carts")
	}
	c, err := a.db.GetCart(r.Context(), u.ID, a.clock.Now())
	if err != nil {
		return err
	}
	// Products dropped from the catalog since are left out of the view;
	// an unusable code shows as none.
	var items []store.CartItem
	for _, it := range c.Items {
		if _, ok := a.products[it.Product]; ok {
			items = append(items, it)
		}
	}
	code := ""
	if c.PromotionCode != nil {
		code = *c.PromotionCode
	}
	if a.pricingAsksStripe(items, code) {
		if err := a.takeStripeLookup(w, r, u); err != nil {
			return err
		}
	}
	pc, err := a.priceCart(r.Context(), items, code, pricing{tax: true, ip: clientIP(r), user: u})
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Code == "invalid_promotion_code" {
		pc, err = a.priceCart(r.Context(), items, "", pricing{tax: true, ip: clientIP(r), user: u})
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.viewCart(c, pc))
	return nil
}

func (a *api) putCart(w http.ResponseWriter, r *http.Request, u User) error {
	var req cartRequest
	if err := decodeJSON(w, r, a.cfg.HTTP.MaxBodyBytes, &req); err != nil {
		return err
	}
	items, err := a.readCartItems(req.Items)
	if err != nil {
		return err
	}
	if a.orderStripe == nil || a.prices == nil {
		return unavailable("carts")
	}
	code := ""
	if req.PromotionCode != nil {
		code = strings.TrimSpace(*req.PromotionCode)
	}
	if err := a.limitPromotionCode(w, r, u, code); err != nil {
		return err
	}
	if a.pricingAsksStripe(items, code) {
		if err := a.takeStripeLookup(w, r, u); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), checkoutLookupBudget)
	defer cancel()
	pc, err := a.priceCart(ctx, items, code, pricing{tax: true, ip: clientIP(r), user: u})
	if err != nil {
		return err
	}
	if err := a.checkStock(ctx, items); err != nil {
		return err
	}
	c := store.Cart{UserID: u.ID, Items: items}
	if pc.promo != nil {
		c.PromotionCode = &code
	}
	c, err = a.db.PutCart(r.Context(), c, a.clock.Now(), a.cfg.Cart.TTL)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.viewCart(c, pc))
	return nil
}

// limitPromotionCode spends the user's checkout rate (limitCheckouts) on a
// PUT of the cart whose promotion code differs from the one the cart holds:
// its answer tells a valid code and its discount from an invalid one, so
// without this the cart would be an unmetered oracle for guessing codes.
// One bucket for both routes keeps http.checkout_rate the bound on guesses
// a minute, however they are split. A PUT keeping the stored code (in any
// case, as Stripe compares codes) or carrying none is not counted; a
// refusal (429) comes before Stripe is asked or the cart is written.
func (a *api) limitPromotionCode(w http.ResponseWriter, r *http.Request, u User, code string) error {
	if code == "" {
		return nil
	}
	c, err := a.db.GetCart(r.Context(), u.ID, a.clock.Now())
	if err != nil {
		return err
	}
	if c.PromotionCode != nil && strings.EqualFold(*c.PromotionCode, code) {
		return nil
	}
	return a.takeCheckoutRate(w, r, u, "promotion codes")
}

// takeStripeLookup spends one of the user's Stripe lookups: every request
// that asks Stripe on one user's behalf (a cart priced with Stripe Tax or a
// promotion code, a claim Stripe must answer, a billing portal session)
// takes from the bucket "stripe:"+user, http.stripe_lookup_rate a minute
// (default 60) with bursts of as many. All of paymentd's Stripe traffic,
// the reconciler's included, shares one client-side limit
// (stripe.rate_limit a second), so without this one user's loop would
// queue every other caller's checkout and claim behind theirs. 60 a minute
// is far above what a frontend makes (a cart page re-reading the cart on
// each change or every few seconds, a success page claiming a few times)
// and holds a single user to a twentieth of the default shared 20 a
// second. A refusal (429 rate_limited, Retry-After) comes before Stripe is
// asked or anything is written.
func (a *api) takeStripeLookup(w http.ResponseWriter, r *http.Request, u User) error {
	return a.takeRate(w, r, "stripe:"+u.ID, store.Rate{N: a.cfg.HTTP.StripeLookupRate, Per: time.Minute},
		"requests to the payment provider")
}

// pricingAsksStripe says whether priceCart(items, code) makes a request to
// Stripe for this user: a promotion code it would look up, or Stripe Tax
// on a cart with lines. Prices come from the catalog's resolver, whose
// cache every user shares, and are not counted against anyone.
func (a *api) pricingAsksStripe(items []store.CartItem, code string) bool {
	return (code != "" && promotionCodeRE.MatchString(code)) || (a.cfg.Stripe.AutomaticTax && len(items) > 0)
}

// readCartItems validates a cart's items: known products, quantities 1 to
// 99, at most 50 lines. A product listed twice is one line with the sum.
func (a *api) readCartItems(req []cartItemRequest) ([]store.CartItem, error) {
	var items []store.CartItem
	at := map[string]int{}
	for _, it := range req {
		if p, ok := a.products[it.Product]; !ok || p.IsSubscription() {
			return nil, Errorf(http.StatusBadRequest, "unknown_product", "there is no one-time product %q", it.Product)
		}
		if it.Quantity == nil || *it.Quantity < 1 || *it.Quantity > maxLineQuantity {
			return nil, Errorf(http.StatusBadRequest, "invalid_quantity", "quantity must be between 1 and %d", maxLineQuantity)
		}
		if i, ok := at[it.Product]; ok {
			items[i].Quantity += *it.Quantity
			if items[i].Quantity > maxLineQuantity {
				return nil, Errorf(http.StatusBadRequest, "invalid_quantity", "quantity must be between 1 and %d", maxLineQuantity)
			}
			continue
		}
		at[it.Product] = len(items)
		items = append(items, store.CartItem{Product: it.Product, Quantity: *it.Quantity})
	}
	if len(items) > maxCartLines {
		return nil, Errorf(http.StatusBadRequest, "too_many_items", "a cart holds at most %d products", maxCartLines)
	}
	return items, nil
}

// priceCart prices items from their Stripe prices, applies promotion code
// code (none when ""), and asks Stripe Tax for their tax when p.tax and
// stripe.automatic_tax are on. Every line must be in the same currency.
func (a *api) priceCart(ctx context.Context, items []store.CartItem, code string, p pricing) (pricedCart, error) {
	pc := pricedCart{taxKnown: true}
	for _, it := range items {
		prod, ok := a.products[it.Product]
		if !ok || prod.IsSubscription() {
			return pc, Errorf(http.StatusBadRequest, "unknown_product", "there is no product %q", it.Product)
		}
		priceID, unit, currency, err := a.prices.PriceID(ctx, prod.Key)
		if errors.Is(err, catalog.ErrNoPrice) {
			a.log.ErrorContext(ctx, "product has no Stripe price; run `paymentd catalog sync`", "product", prod.Key)
			return pc, Errorf(http.StatusBadRequest, "unknown_product", "%s cannot be bought right now", prod.Name)
		}
		if err != nil {
			a.log.WarnContext(ctx, "resolve price", "product", prod.Key, "err", err)
			return pc, errStripeUnavailable()
		}
		if pc.currency != "" && currency != pc.currency {
			return pc, Errorf(http.StatusBadRequest, "mixed_currency",
				"%s is priced in %s and the cart in %s: a cart holds one currency", prod.Key, currency, pc.currency)
		}
		pc.currency = currency
		q := int64(it.Quantity)
		pc.lines = append(pc.lines, pricedLine{Product: prod.Key, Name: prod.Name, PriceID: priceID, Quantity: q,
			UnitAmount: unit, Subtotal: unit * q})
	}
	if code != "" {
		promo, discount, err := a.cartPromotion(ctx, code, pc, p)
		if err != nil {
			return pc, err
		}
		pc.promo = promo
		spreadDiscount(pc.lines, discount)
	}
	if p.tax && a.cfg.Stripe.AutomaticTax && len(pc.lines) > 0 {
		if err := a.taxCart(ctx, &pc, p.ip); err != nil {
			return pc, err
		}
	}
	pc.totals = totalsOf(pc.lines)
	return pc, nil
}

// cartPromotion resolves the code a buyer typed for cart pc and returns it
// with its discount on the cart's subtotal. It refuses, with the one
// invalid_promotion_code answer, every code checkout refuses, a coupon
// limited to some products or in another currency, and for an embedded
// order the restrictions Stripe checks only on sessions (a minimum amount,
// first-time buyers) and redemptions used up counting paymentd's open and
// paid embedded orders (an early answer: the order's own transaction takes
// the use under the coupon's lock, holdPromotion in promotion.go).
func (a *api) cartPromotion(ctx context.Context, code string, pc pricedCart, p pricing) (*stripe.PromotionCode, int64, error) {
	if !promotionCodeRE.MatchString(code) {
		return nil, 0, errInvalidPromotionCode()
	}
	codes, err := a.orderStripe.ActivePromotionCodes(ctx, code)
	if err != nil {
		a.log.WarnContext(ctx, "look up promotion code", "err", err)
		return nil, 0, errStripeUnavailable()
	}
	id := usablePromotionCode(codes, code, a.clock.Now())
	var promo *stripe.PromotionCode
	for _, c := range codes {
		if c != nil && c.ID == id {
			promo = c
		}
	}
	if promo == nil || (promo.Coupon.AppliesTo != nil && len(promo.Coupon.AppliesTo.Products) > 0) {
		return nil, 0, errInvalidPromotionCode()
	}
	subtotal := int64(0)
	for _, l := range pc.lines {
		subtotal += l.Subtotal
	}
	discount, ok := termsOf(promo.Coupon).discount(subtotal, pc.currency)
	if !ok {
		return nil, 0, errInvalidPromotionCode()
	}
	if p.embedded {
		if err := a.embeddedPromotionAllowed(ctx, promo, subtotal, pc.currency, p.user); err != nil {
			return nil, 0, err
		}
	}
	return promo, discount, nil
}

// embeddedPromotionAllowed checks what Stripe would check on a session
// but cannot on a PaymentIntent: the code's minimum amount, its first-time
// restriction, and its and its coupon's redemptions, counting the embedded
// orders paymentd charged with them (Stripe counts only sessions), as
// holdPromotion counts them again under the coupon's lock.
func (a *api) embeddedPromotionAllowed(ctx context.Context, promo *stripe.PromotionCode, subtotal int64, currency string, u User) error {
	if r := promo.Restrictions; r != nil {
		if r.MinimumAmount > 0 && (strings.ToLower(string(r.MinimumAmountCurrency)) != currency || subtotal < r.MinimumAmount) {
			return errInvalidPromotionCode()
		}
		if r.FirstTimeTransaction {
			paid, err := a.db.UserHasPaid(ctx, u.ID)
			if err != nil {
				return err
			}
			if paid {
				return errInvalidPromotionCode()
			}
		}
	}
	if promo.MaxRedemptions > 0 || promo.Coupon.MaxRedemptions > 0 {
		held, err := a.db.PromotionUses(ctx, promo.ID, promo.Coupon.ID)
		if err != nil {
			return err
		}
		if usedUp(promo, held) {
			return errInvalidPromotionCode()
		}
	}
	return nil
}

// errTaxLocation means Stripe Tax could not tell where the buyer is.
var errTaxLocation = errors.New("stripe tax could not locate the buyer")

// taxCart asks Stripe Tax for the tax of pc's lines, each after its
// discount, for a buyer at ip. When Stripe cannot locate ip, the tax is
// left unknown (taxKnown false).
func (a *api) taxCart(ctx context.Context, pc *pricedCart, ip string) error {
	req := stripeapi.TaxCalculationRequest{Currency: pc.currency, IPAddress: ip}
	for _, l := range pc.lines {
		req.Lines = append(req.Lines, stripeapi.TaxLine{Reference: l.Product, Amount: l.Subtotal - l.Discount, Quantity: l.Quantity})
	}
	calc, err := a.orderStripe.CreateTaxCalculation(ctx, req, "")
	var se *stripe.Error
	if errors.As(err, &se) && se.HTTPStatusCode == http.StatusBadRequest {
		a.log.InfoContext(ctx, "Stripe Tax could not locate the buyer", "stripe_code", se.Code)
		pc.taxKnown = false
		return nil
	}
	if err != nil {
		a.log.WarnContext(ctx, "calculate tax", "err", err)
		return errStripeUnavailable()
	}
	byRef := map[string]int64{}
	if calc.LineItems != nil {
		for _, li := range calc.LineItems.Data {
			byRef[li.Reference] = li.AmountTax
		}
	}
	var sum int64
	for i := range pc.lines {
		pc.lines[i].Tax = byRef[pc.lines[i].Product]
		sum += pc.lines[i].Tax
	}
	if sum != calc.TaxAmountExclusive {
		return fmt.Errorf("tax calculation %s: lines add up to %d, its exclusive tax is %d", calc.ID, sum, calc.TaxAmountExclusive)
	}
	pc.taxCalc = calc
	return nil
}

// checkStock refuses a cart asking for more of a stocked product than is
// available now, with 409 out_of_stock and the units available. Nothing is
// reserved: only a checkout reserves.
func (a *api) checkStock(ctx context.Context, items []store.CartItem) error {
	for _, it := range items {
		s, err := a.db.GetStock(ctx, it.Product)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if it.Quantity > s.Available() {
			return errOutOfStock(it.Product, s.Available())
		}
	}
	return nil
}

// errOutOfStock is the 409 for a product with fewer units than asked for.
func errOutOfStock(product string, available int) *Error {
	e := Errorf(http.StatusConflict, "out_of_stock", "only %d of %s left", available, product)
	e.Product, e.Available = product, &available
	return e
}

// viewCart is the API's view of cart c priced as pc.
func (a *api) viewCart(c store.Cart, pc pricedCart) cartView {
	v := cartView{Items: []cartLineView{}, AutomaticTax: a.cfg.Stripe.AutomaticTax}
	for _, l := range pc.lines {
		lv := cartLineView{Product: l.Product, Name: l.Name, Quantity: l.Quantity, UnitAmount: l.UnitAmount,
			AmountSubtotal: l.Subtotal, AmountDiscount: l.Discount, AmountTotal: l.Total()}
		if pc.taxKnown {
			tax := l.Tax
			lv.AmountTax = &tax
		}
		v.Items = append(v.Items, lv)
	}
	if pc.promo != nil {
		code := pc.promo.Code
		v.PromotionCode = &code
	}
	v.Subtotal, v.Discount, v.Total = pc.totals.Subtotal, pc.totals.Discount, pc.totals.Total
	if pc.taxKnown {
		tax := pc.totals.Tax
		v.Tax = &tax
	}
	if pc.currency != "" {
		cur := pc.currency
		v.Currency = &cur
	}
	if len(c.Items) > 0 || c.PromotionCode != nil {
		exp := c.ExpiresAt
		v.ExpiresAt = &exp
	}
	return v
}

// clientIP is the caller's address as the listener saw it, for Stripe
// Tax's location.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
