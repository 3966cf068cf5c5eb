// Checkout: the "Pay" button. POST /api/checkout creates a Stripe Checkout
// Session for a configured product and records a pending purchase with the
// session's id, so the reconciler can follow the session to its end even
// if the buyer never comes back. A promotion code the customer typed is
// resolved through Stripe (promotion.go), and each user may start
// http.checkout_rate checkouts a minute, counted across every replica.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// CheckoutCreator finds promotion codes and creates Checkout Sessions;
// *stripeapi.API satisfies it.
type CheckoutCreator interface {
	ActivePromotionCodes(ctx context.Context, code string) ([]*stripe.PromotionCode, error)
	CreateCheckoutSession(ctx context.Context, r stripeapi.CheckoutRequest, idempotencyKey string) (*stripe.CheckoutSession, error)
}

// PriceResolver resolves a product key to the id, unit amount and currency
// of its current Stripe price; *catalog.Resolver satisfies it.
type PriceResolver interface {
	PriceID(ctx context.Context, key string) (priceID string, unitAmount int64, currency string, err error)
}

// Quantity bounds of a checkout.
const (
	minQuantity = 1
	maxQuantity = 100
)

// A checkout's time budget. The lookups before the session exists (price,
// promotion code) share checkoutLookupBudget; creating the session may take
// the Stripe client's whole timeout; recording the purchase afterwards has
// checkoutRecordBudget, detached from the buyer's connection, so a session
// Stripe created is recorded even if the buyer stopped waiting.
const (
	checkoutLookupBudget = 20 * time.Second
	checkoutRecordBudget = 10 * time.Second
)

// CheckoutBudget is the longest a checkout can take; WriteTimeout is above
// it, so a session Stripe created late still reaches the buyer.
const CheckoutBudget = checkoutLookupBudget + stripeclient.Timeout + checkoutRecordBudget

// GitHub's rules: 1-39 characters, letters, digits and single hyphens,
// neither first nor last.
var githubUsernameRE = regexp.MustCompile(`^[A-Za-z0-9](?:-?[A-Za-z0-9])*$`)

// validGitHubUsername reports whether name follows GitHub's username rules.
func validGitHubUsername(name string) bool {
	return len(name) <= 39 && githubUsernameRE.MatchString(name)
}

type checkoutRequest struct {
	Product        string `json:"product"`
	Quantity       *int64 `json:"quantity"`
	PromotionCode  string `json:"promotion_code"`
	GitHubUsername string `json:"github_username"`
	// Price and OrganizationID are for subscription products
	// (subscriptions.go).
	Price          string `json:"price"`
	OrganizationID string `json:"organization_id"`
	// Coupon is declared only to be refused by name, so a frontend that
	// still sends it notices: a coupon id never comes from a client.
	Coupon json.RawMessage `json:"coupon"`
	// Cart checks the caller's cart out instead of one product, paid as
	// UIMode says (cart_checkout.go).
	Cart   bool   `json:"cart"`
	UIMode string `json:"ui_mode"`
}

// checkoutOrder is a validated checkout request.
type checkoutOrder struct {
	product        config.Product
	quantity       int64
	promotionCode  string
	githubUsername string
	// cart: check the caller's cart out, paid as uiMode says.
	cart   bool
	uiMode string
	// price and organizationID: a subscription product's (subscriptions.go).
	price, organizationID string
}

type checkoutResponse struct {
	URL       string `json:"url"`
	SessionID string `json:"session_id"`
}

func (a *api) checkout(w http.ResponseWriter, r *http.Request, u User) error {
	if err := a.limitCheckouts(w, r, u); err != nil {
		return err
	}
	order, err := a.readCheckout(w, r)
	if err != nil {
		return err
	}
	if order.cart {
		return a.checkoutCart(w, r, u, order)
	}
	if order.product.IsSubscription() {
		return a.subscriptionCheckout(w, r, u, order)
	}
	if err := a.refuseStocked(r.Context(), order.product); err != nil {
		return err
	}
	if a.stripe == nil || a.prices == nil {
		return unavailable("checkout")
	}
	lookup, cancel := context.WithTimeout(r.Context(), checkoutLookupBudget)
	defer cancel()
	priceID, priceCurrency, err := a.resolvePrice(lookup, order.product)
	if err != nil {
		return err
	}
	promotionCodeID, err := a.resolvePromotionCode(lookup, order.promotionCode)
	if err != nil {
		return err
	}

	purchaseID := uuid.NewString()
	sess, err := a.stripe.CreateCheckoutSession(r.Context(), stripeapi.CheckoutRequest{
		PriceID:           priceID,
		Quantity:          order.quantity,
		SuccessURL:        a.cfg.Stripe.SuccessURL,
		CancelURL:         a.cfg.Stripe.CancelURL,
		Metadata:          map[string]string{"user_id": u.ID, "product": order.product.Key, "purchase_id": purchaseID},
		ClientReferenceID: u.ID,
		CustomerEmail:     u.Email,
		PromotionCode:     promotionCodeID,
		ConsentPromotions: a.cfg.Fulfillment.AbandonedRequiresConsent,
		Recovery:          true,
	}, "paymentd-checkout-"+purchaseID)
	if err != nil {
		return a.checkoutError(r, promotionCodeID != "", err)
	}
	if err := a.recordCheckout(r.Context(), u, order, purchaseID, priceCurrency, sess); err != nil {
		// The session exists at Stripe and carries purchase_id and user_id in
		// its metadata; the reconciler's listing records it if it is paid.
		return err
	}
	a.log.InfoContext(r.Context(), "checkout session created", "purchase_id", purchaseID,
		"stripe_session_id", sess.ID, "product", order.product.Key, "user_id", u.ID,
		"promotion_code_id", promotionCodeID, "amount_total", sess.AmountTotal)
	writeJSON(w, http.StatusOK, checkoutResponse{URL: sess.URL, SessionID: sess.ID})
	return nil
}

// limitCheckouts counts this checkout against the user's http.checkout_rate
// and refuses it with 429 and Retry-After when the rate is spent. Every
// attempt counts, valid or not, which is also what bounds guessing at
// promotion codes: a cart's new promotion code spends the same rate
// (limitPromotionCode in cart.go).
func (a *api) limitCheckouts(w http.ResponseWriter, r *http.Request, u User) error {
	return a.takeCheckoutRate(w, r, u, "checkouts")
}

// takeCheckoutRate takes one from the user's checkout bucket (takeRate).
func (a *api) takeCheckoutRate(w http.ResponseWriter, r *http.Request, u User, what string) error {
	return a.takeRate(w, r, "checkout:"+u.ID, store.Rate{N: a.cfg.HTTP.CheckoutRate, Per: time.Minute}, what)
}

// takeRate takes one from the bucket key, shared by every replica, or
// answers 429 rate_limited with Retry-After in whole seconds, "too many
// <what>".
func (a *api) takeRate(w http.ResponseWriter, r *http.Request, key string, rate store.Rate, what string) error {
	d, err := a.db.TakeRate(r.Context(), key, rate, a.clock.Now())
	if err != nil {
		return err
	}
	if d.Allowed {
		return nil
	}
	secs := max(1, int(math.Ceil(d.RetryAfter.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	a.log.WarnContext(r.Context(), "rate limited", "key", key, "retry_after", secs, "spent_on", what)
	return Errorf(http.StatusTooManyRequests, "rate_limited", "too many %s; try again in %d seconds", what, secs)
}

// refuseStocked refuses a one-product checkout of a product with limited
// stock, with 400 cart_required: only a cart's checkout reserves stock
// (store.ReserveStock, under the order's row), and a session opened here
// would sell units nobody holds. A product is limited when config.yaml
// gives it a stock or the database has its stock row (`paymentd stock
// set`), the same row a cart's reservation looks for; either is enough, so
// a product configured with stock is refused even before serve seeds it.
func (a *api) refuseStocked(ctx context.Context, product config.Product) error {
	if product.Stock == nil {
		_, err := a.db.GetStock(ctx, product.Key)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	e := Errorf(http.StatusBadRequest, "cart_required",
		"%s has limited stock and is checked out through the cart: put it in the cart (PUT /api/cart) and check out with \"cart\": true",
		product.Name)
	e.Product, e.Cart = product.Key, true
	return e
}

// readCheckout decodes and validates a checkout request.
func (a *api) readCheckout(w http.ResponseWriter, r *http.Request) (checkoutOrder, error) {
	var req checkoutRequest
	if err := decodeJSON(w, r, a.cfg.HTTP.MaxBodyBytes, &req); err != nil {
		return checkoutOrder{}, err
	}
	if req.Coupon != nil {
		return checkoutOrder{}, Errorf(http.StatusBadRequest, "unsupported_field",
			`"coupon" is not accepted; send "promotion_code", the code the customer typed`)
	}
	switch {
	case req.Cart && (req.Product != "" || req.Quantity != nil || req.PromotionCode != ""):
		return checkoutOrder{}, Errorf(http.StatusBadRequest, "unsupported_field",
			`a cart checkout takes the cart's products and promotion code: send "cart" without "product", "quantity" or "promotion_code"`)
	case req.Cart && req.GitHubUsername != "" && !validGitHubUsername(req.GitHubUsername):
		return checkoutOrder{}, Errorf(http.StatusBadRequest, "invalid_github_username",
			"a GitHub username has 1-39 letters, digits or single hyphens, and does not start or end with a hyphen")
	case req.Cart:
		return checkoutOrder{cart: true, uiMode: req.UIMode, githubUsername: req.GitHubUsername}, nil
	case req.UIMode != "":
		return checkoutOrder{}, Errorf(http.StatusBadRequest, "unsupported_field", `"ui_mode" is for a cart checkout ("cart": true)`)
	}
	product, ok := a.products[req.Product]
	if !ok {
		return checkoutOrder{}, Errorf(http.StatusBadRequest, "unknown_product", "there is no product %q", req.Product)
	}
	if err := checkSubscriptionFields(product, req); err != nil {
		return checkoutOrder{}, err
	}
	quantity := int64(1)
	if req.Quantity != nil {
		quantity = *req.Quantity
	}
	if quantity < minQuantity || quantity > maxQuantity {
		return checkoutOrder{}, Errorf(http.StatusBadRequest, "invalid_quantity", "quantity must be between %d and %d",
			minQuantity, maxQuantity)
	}
	if req.GitHubUsername != "" && !validGitHubUsername(req.GitHubUsername) {
		return checkoutOrder{}, Errorf(http.StatusBadRequest, "invalid_github_username",
			"a GitHub username has 1-39 letters, digits or single hyphens, and does not start or end with a hyphen")
	}
	return checkoutOrder{product: product, quantity: quantity, promotionCode: req.PromotionCode,
		githubUsername: req.GitHubUsername, price: req.Price, organizationID: req.OrganizationID}, nil
}

// resolvePrice returns the product's current Stripe price and its currency.
func (a *api) resolvePrice(ctx context.Context, product config.Product) (priceID, currency string, err error) {
	priceID, _, currency, err = a.prices.PriceID(ctx, product.Key)
	if errors.Is(err, catalog.ErrNoPrice) {
		a.log.ErrorContext(ctx, "product has no Stripe price; run `paymentd catalog sync`", "product", product.Key)
		return "", "", Errorf(http.StatusServiceUnavailable, "product_unavailable", "%s cannot be bought right now", product.Name)
	}
	if err != nil {
		a.log.WarnContext(ctx, "resolve price", "product", product.Key, "err", err)
		return "", "", errStripeUnavailable()
	}
	return priceID, currency, nil
}

// recordCheckout inserts the pending purchase for a created session and
// remembers the user's GitHub username, in one transaction that outlives a
// buyer who hung up (within checkoutRecordBudget).
func (a *api) recordCheckout(ctx context.Context, u User, order checkoutOrder, purchaseID, priceCurrency string,
	sess *stripe.CheckoutSession) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkoutRecordBudget)
	defer cancel()
	now := a.clock.Now()
	currency := strings.ToLower(string(sess.Currency))
	if currency == "" {
		currency = priceCurrency
	}
	p := store.Purchase{
		ID: purchaseID, UserID: &u.ID, Email: &u.Email, ProductKey: order.product.Key, Quantity: int(order.quantity),
		Status: store.PurchasePending, StripeSessionID: sess.ID, AmountTotal: sess.AmountTotal, Currency: currency,
		AccessState: store.AccessNone, ConsentRequired: a.cfg.Fulfillment.AbandonedRequiresConsent,
		CreatedAt: now, UpdatedAt: now,
	}
	if order.githubUsername != "" {
		p.GitHubUsername = &order.githubUsername
	}
	if sess.ExpiresAt > 0 {
		exp := time.Unix(sess.ExpiresAt, 0).UTC()
		p.SessionExpiresAt = &exp
	}
	return a.db.InTx(ctx, func(q *store.Queries) error {
		if _, err := q.InsertPurchase(ctx, p); err != nil {
			return err
		}
		return q.UpsertAccount(ctx, u.ID, u.Email, order.githubUsername, now)
	})
}

// checkoutError maps a failed session creation: Stripe refusing the
// promotion code (a restriction it enforces only now) gets the same answer
// as any other unusable code; anything else is Stripe's or ours.
func (a *api) checkoutError(r *http.Request, withPromotionCode bool, err error) error {
	var se *stripe.Error
	if withPromotionCode && errors.As(err, &se) && se.HTTPStatusCode == http.StatusBadRequest && refusesDiscount(se) {
		a.log.InfoContext(r.Context(), "Stripe refused the promotion code", "stripe_code", se.Code, "param", se.Param)
		return errInvalidPromotionCode()
	}
	a.log.ErrorContext(r.Context(), "create checkout session", "err", err)
	return errStripeUnavailable()
}

// errStripeUnavailable is the answer when Stripe fails or cannot be reached.
func errStripeUnavailable() *Error {
	return Errorf(http.StatusBadGateway, "stripe_unavailable", "the payment provider is unavailable; try again shortly")
}
