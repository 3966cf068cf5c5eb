// Checkout of a cart: POST /api/checkout {"cart": true, "ui_mode": ...}.
// The order is recorded with its lines and its stock reserved, in one
// transaction, before the Stripe object exists: a hosted order opens a
// Checkout Session with one line per cart line, an embedded one a
// PaymentIntent for the cart's total that the storefront confirms with
// Stripe Elements. Both carry the order's id in their metadata and are
// created with an idempotency key derived from it. Should Stripe fail, the
// reservation is released at once; should paymentd fail after Stripe
// succeeded, the reconciler finds the object by its metadata. The cart is
// left as it is: it is emptied when the order is paid.
package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// sessionExpiryMargin keeps a hosted order's session expiry at least this
// far past Stripe's 30-minute minimum, which Stripe measures from when it
// receives the request.
const sessionExpiryMargin = 32 * time.Minute

type hostedCheckoutResponse struct {
	URL       string `json:"url"`
	SessionID string `json:"session_id"`
	OrderID   string `json:"order_id"`
}

type embeddedCheckoutResponse struct {
	ClientSecret    string `json:"client_secret"`
	PaymentIntentID string `json:"payment_intent_id"`
	OrderID         string `json:"order_id"`
}

// checkoutCart checks the caller's cart out as co.uiMode says.
func (a *api) checkoutCart(w http.ResponseWriter, r *http.Request, u User, co checkoutOrder) error {
	mode := store.UIMode(co.uiMode)
	if mode != store.UIModeHosted && mode != store.UIModeEmbedded {
		return Errorf(http.StatusBadRequest, "invalid_ui_mode", `ui_mode must be "hosted" or "embedded"`)
	}
	if a.orderStripe == nil || a.prices == nil {
		return unavailable("checkout of carts")
	}
	ctx := r.Context()
	cart, err := a.db.GetCart(ctx, u.ID, a.clock.Now())
	if err != nil {
		return err
	}
	if len(cart.Items) == 0 {
		return Errorf(http.StatusBadRequest, "empty_cart", "the cart is empty")
	}
	lookup, cancel := context.WithTimeout(ctx, checkoutLookupBudget)
	defer cancel()
	code := ""
	if cart.PromotionCode != nil {
		code = *cart.PromotionCode
	}
	embedded := mode == store.UIModeEmbedded
	pc, err := a.priceCart(lookup, cart.Items, code, pricing{tax: embedded, ip: clientIP(r), embedded: embedded, user: u})
	if err != nil {
		return err
	}
	customerID := ""
	if embedded {
		switch {
		case !pc.taxKnown:
			return Errorf(http.StatusBadRequest, "tax_location_unknown",
				"Stripe Tax cannot tell where you are; use the hosted checkout, which asks for an address")
		case pc.totals.Total <= 0:
			return Errorf(http.StatusBadRequest, "nothing_to_pay", "the cart's total is zero; use the hosted checkout")
		}
		if customerID, err = a.stripeCustomer(lookup, u); err != nil {
			return err
		}
	}

	o, lines := a.newOrder(u, co, mode, pc, customerID)
	if err := a.reserveOrder(ctx, u, o, lines, pc.promo); err != nil {
		return err
	}
	switch mode {
	case store.UIModeHosted:
		return a.openSession(w, r, u, o, lines, pc)
	default:
		return a.openIntent(w, r, o, pc)
	}
}

// newOrder is the pending order of cart pc, with its lines.
func (a *api) newOrder(u User, co checkoutOrder, mode store.UIMode, pc pricedCart, customerID string) (store.Order, []store.OrderLine) {
	now := a.clock.Now()
	email := u.Email
	o := store.Order{
		ID: uuid.NewString(), UserID: u.ID, Email: &email, UIMode: mode, Status: store.OrderPending, Currency: pc.currency,
		AmountSubtotal: pc.totals.Subtotal, AmountDiscount: pc.totals.Discount, AmountTax: pc.totals.Tax,
		AmountTotal: pc.totals.Total, ExpiresAt: now.Add(a.cfg.Cart.CheckoutTTL), CreatedAt: now, UpdatedAt: now,
	}
	if mode == store.UIModeHosted && a.cfg.Cart.CheckoutTTL < sessionExpiryMargin {
		o.ExpiresAt = now.Add(sessionExpiryMargin)
	}
	if pc.promo != nil {
		code, id := pc.promo.Code, pc.promo.ID
		o.PromotionCode, o.PromotionCodeID = &code, &id
		coupon := pc.promo.Coupon.ID // cartPromotion takes only codes with a coupon
		o.CouponID = &coupon
	}
	if customerID != "" {
		o.StripeCustomerID = &customerID
	}
	if pc.taxCalc != nil {
		o.TaxCalculationID = &pc.taxCalc.ID
	}
	if co.githubUsername != "" {
		o.GitHubUsername = &co.githubUsername
	}
	lines := make([]store.OrderLine, len(pc.lines))
	for i, l := range pc.lines {
		lines[i] = store.OrderLine{Line: i, ProductKey: l.Product, Quantity: int(l.Quantity), UnitAmount: l.UnitAmount,
			AmountSubtotal: l.Subtotal, AmountDiscount: l.Discount, AmountTax: l.Tax, AmountTotal: l.Total()}
	}
	return o, lines
}

// reserveOrder records o and its lines, reserves their stock and takes a
// use of promo (nil without a code), in one transaction: either the order
// holds its units and its use, or nothing is recorded (409 out_of_stock
// with what is left, or 400 invalid_promotion_code).
func (a *api) reserveOrder(ctx context.Context, u User, o store.Order, lines []store.OrderLine, promo *stripe.PromotionCode) error {
	stock := make([]store.StockLine, len(lines))
	for i, l := range lines {
		stock[i] = store.StockLine{ProductKey: l.ProductKey, Quantity: l.Quantity}
	}
	err := a.db.InTx(ctx, func(q *store.Queries) error {
		if promo != nil {
			if err := a.holdPromotion(ctx, q, o, promo); err != nil {
				return err
			}
		}
		if err := q.InsertOrder(ctx, o, lines); err != nil {
			return err
		}
		if err := q.ReserveStock(ctx, o.ID, stock, o.CreatedAt); err != nil {
			return err
		}
		if o.GitHubUsername != nil {
			return q.UpsertAccount(ctx, u.ID, u.Email, *o.GitHubUsername, o.CreatedAt)
		}
		return nil
	})
	var oos *store.OutOfStockError
	if errors.As(err, &oos) {
		a.log.InfoContext(ctx, "checkout refused: out of stock", "user_id", u.ID, "product", oos.ProductKey,
			"requested", oos.Requested, "available", oos.Available)
		return errOutOfStock(oos.ProductKey, oos.Available)
	}
	return err
}

// openSession creates the Checkout Session of hosted order o and records
// it on the order.
func (a *api) openSession(w http.ResponseWriter, r *http.Request, u User, o store.Order, lines []store.OrderLine, pc pricedCart) error {
	req := stripeapi.CartCheckoutRequest{
		SuccessURL: withOrderID(a.cfg.Stripe.SuccessURL, o.ID), CancelURL: a.cfg.Stripe.CancelURL,
		Metadata: map[string]string{"order_id": o.ID, "user_id": u.ID}, ClientReferenceID: u.ID, CustomerEmail: u.Email,
		AutomaticTax: a.cfg.Stripe.AutomaticTax, ExpiresAt: o.ExpiresAt,
		ConsentPromotions: a.cfg.Fulfillment.AbandonedRequiresConsent,
	}
	for _, l := range pc.lines {
		req.Lines = append(req.Lines, stripeapi.CartLine{PriceID: l.PriceID, Quantity: l.Quantity})
	}
	if pc.promo != nil {
		req.PromotionCode = pc.promo.ID
	} else {
		req.AllowPromotionCodes = true
	}
	sess, err := a.orderStripe.CreateCartCheckoutSession(r.Context(), req, "paymentd-order-"+o.ID)
	if err != nil {
		a.abandonOrder(r.Context(), o)
		return a.checkoutError(r, pc.promo != nil, err)
	}
	o.StripeSessionID, o.CheckoutURL = &sess.ID, &sess.URL
	if sess.ExpiresAt > 0 {
		o.ExpiresAt = time.Unix(sess.ExpiresAt, 0).UTC()
	}
	o.AmountSubtotal, o.AmountTotal = sess.AmountSubtotal, sess.AmountTotal
	if td := sess.TotalDetails; td != nil {
		o.AmountDiscount, o.AmountTax = td.AmountDiscount, td.AmountTax
	}
	if err := a.recordOpened(r.Context(), o); err != nil {
		return err
	}
	a.log.InfoContext(r.Context(), "cart checkout session created", "order_id", o.ID, "stripe_session_id", sess.ID,
		"user_id", o.UserID, "lines", len(lines), "amount_total", sess.AmountTotal)
	writeJSON(w, http.StatusOK, hostedCheckoutResponse{URL: sess.URL, SessionID: sess.ID, OrderID: o.ID})
	return nil
}

// openIntent creates the PaymentIntent of embedded order o for its total
// and records it on the order.
func (a *api) openIntent(w http.ResponseWriter, r *http.Request, o store.Order, pc pricedCart) error {
	req := stripeapi.PaymentIntentRequest{Amount: o.AmountTotal, Currency: o.Currency,
		Metadata: map[string]string{"order_id": o.ID, "user_id": o.UserID}, Description: "Order " + o.ID}
	if o.StripeCustomerID != nil {
		req.CustomerID = *o.StripeCustomerID
	}
	pi, err := a.orderStripe.CreatePaymentIntent(r.Context(), req, "paymentd-order-"+o.ID)
	if err != nil {
		a.abandonOrder(r.Context(), o)
		a.log.ErrorContext(r.Context(), "create payment intent", "order_id", o.ID, "err", err)
		return errStripeUnavailable()
	}
	o.StripePaymentIntentID, o.ClientSecret = &pi.ID, &pi.ClientSecret
	if err := a.recordOpened(r.Context(), o); err != nil {
		return err
	}
	a.log.InfoContext(r.Context(), "cart payment intent created", "order_id", o.ID, "stripe_payment_intent_id", pi.ID,
		"user_id", o.UserID, "lines", len(pc.lines), "amount", pi.Amount)
	writeJSON(w, http.StatusOK, embeddedCheckoutResponse{ClientSecret: pi.ClientSecret, PaymentIntentID: pi.ID, OrderID: o.ID})
	return nil
}

// recordOpened writes the Stripe object of an order that was just opened,
// detached from the buyer's connection (within checkoutRecordBudget), so
// an object Stripe created is recorded even if the buyer stopped waiting.
// Should it fail, the reconciler finds the object by the order id in its
// metadata.
func (a *api) recordOpened(ctx context.Context, o store.Order) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkoutRecordBudget)
	defer cancel()
	return a.db.InTx(ctx, func(q *store.Queries) error {
		cur, err := q.LockOrder(ctx, o.ID)
		if err != nil {
			return err
		}
		if cur.Status != store.OrderPending || cur.StripeObjectID() != "" {
			return nil // the reconciler got there first
		}
		return q.UpdateOrder(ctx, o, a.clock.Now())
	})
}

// abandonOrder ends an order whose Stripe object could not be created: its
// stock is released at once and it is marked failed. Should Stripe have
// created the object after all, the buyer never saw it, it expires, and a
// payment of it would still complete the order.
func (a *api) abandonOrder(ctx context.Context, o store.Order) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkoutRecordBudget)
	defer cancel()
	now := a.clock.Now()
	err := a.db.InTx(ctx, func(q *store.Queries) error {
		cur, err := q.LockOrder(ctx, o.ID)
		if err != nil || cur.Status != store.OrderPending {
			return err
		}
		if _, err := q.ReleaseStock(ctx, o.ID, now); err != nil {
			return err
		}
		cur.Status, cur.EndedAt = store.OrderFailed, &now
		return q.UpdateOrder(ctx, cur, now)
	})
	if err != nil {
		// The reconciler's sweep expires it and releases its stock.
		a.log.ErrorContext(ctx, "release the stock of an order Stripe refused", "order_id", o.ID, "err", err)
	}
}

// stripeCustomer is the buyer's Stripe customer: the one they last paid
// as, else a new one, created once per user (the idempotency key is the
// user's).
func (a *api) stripeCustomer(ctx context.Context, u User) (string, error) {
	id, err := a.db.UserStripeCustomer(ctx, u.ID)
	if err != nil || id != "" {
		return id, err
	}
	c, err := a.orderStripe.CreateCustomer(ctx, stripeapi.CustomerSpec{Email: u.Email,
		Metadata: map[string]string{"user_id": u.ID}}, "paymentd-customer-"+u.ID)
	if err != nil {
		a.log.WarnContext(ctx, "create customer", "user_id", u.ID, "err", err)
		return "", errStripeUnavailable()
	}
	return c.ID, nil
}

// withOrderID adds order_id=id to a URL's query, leaving the rest of it
// (such as Stripe's {CHECKOUT_SESSION_ID} template) untouched.
func withOrderID(u, id string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "order_id=" + id
}
