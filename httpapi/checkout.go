// Checkout: the "Pay" button. POST /api/checkout creates a Stripe Checkout
// Session for a configured product and records a pending purchase with the
// session's id, so the reconciler can follow the session to its end even
// if the buyer never comes back.
package httpapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/catalog"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// CheckoutCreator creates Checkout Sessions; *stripeapi.API satisfies it.
type CheckoutCreator interface {
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

var (
	// GitHub's rules: 1-39 characters, letters, digits and single hyphens,
	// neither first nor last.
	githubUsernameRE = regexp.MustCompile(`^[A-Za-z0-9](?:-?[A-Za-z0-9])*$`)
	couponRE         = regexp.MustCompile(`^[A-Za-z0-9_\-]{1,200}$`)
)

// validGitHubUsername reports whether name follows GitHub's username rules.
func validGitHubUsername(name string) bool {
	return len(name) <= 39 && githubUsernameRE.MatchString(name)
}

type checkoutRequest struct {
	Product        string `json:"product"`
	Quantity       *int64 `json:"quantity"`
	Coupon         string `json:"coupon"`
	GitHubUsername string `json:"github_username"`
}

type checkoutResponse struct {
	URL       string `json:"url"`
	SessionID string `json:"session_id"`
}

func (a *api) checkout(w http.ResponseWriter, r *http.Request, u User) error {
	var req checkoutRequest
	if err := decodeJSON(w, r, a.cfg.HTTP.MaxBodyBytes, &req); err != nil {
		return err
	}
	product, ok := a.products[req.Product]
	if !ok {
		return Errorf(http.StatusBadRequest, "unknown_product", "there is no product %q", req.Product)
	}
	quantity := int64(1)
	if req.Quantity != nil {
		quantity = *req.Quantity
	}
	if quantity < minQuantity || quantity > maxQuantity {
		return Errorf(http.StatusBadRequest, "invalid_quantity", "quantity must be between %d and %d", minQuantity, maxQuantity)
	}
	if req.GitHubUsername != "" && !validGitHubUsername(req.GitHubUsername) {
		return Errorf(http.StatusBadRequest, "invalid_github_username",
			"a GitHub username has 1-39 letters, digits or single hyphens, and does not start or end with a hyphen")
	}
	if req.Coupon != "" && !couponRE.MatchString(req.Coupon) {
		return Errorf(http.StatusBadRequest, "invalid_coupon", "coupon %q is not valid", req.Coupon)
	}
	if a.stripe == nil || a.prices == nil {
		return unavailable("checkout")
	}

	priceID, _, priceCurrency, err := a.prices.PriceID(r.Context(), product.Key)
	if errors.Is(err, catalog.ErrNoPrice) {
		a.log.ErrorContext(r.Context(), "product has no Stripe price; run `paymentd catalog sync`", "product", product.Key)
		return Errorf(http.StatusServiceUnavailable, "product_unavailable", "%s cannot be bought right now", product.Name)
	}
	if err != nil {
		a.log.WarnContext(r.Context(), "resolve price", "product", product.Key, "err", err)
		return Errorf(http.StatusBadGateway, "stripe_unavailable", "the payment provider is unavailable; try again shortly")
	}

	purchaseID := uuid.NewString()
	sess, err := a.stripe.CreateCheckoutSession(r.Context(), stripeapi.CheckoutRequest{
		PriceID:           priceID,
		Quantity:          quantity,
		SuccessURL:        a.cfg.Stripe.SuccessURL,
		CancelURL:         a.cfg.Stripe.CancelURL,
		Metadata:          map[string]string{"user_id": u.ID, "product": product.Key, "purchase_id": purchaseID},
		ClientReferenceID: u.ID,
		CustomerEmail:     u.Email,
		Coupon:            req.Coupon,
		ConsentPromotions: a.cfg.Fulfillment.AbandonedRequiresConsent,
		Recovery:          true,
	}, "paymentd-checkout-"+purchaseID)
	if err != nil {
		return a.checkoutError(r, req.Coupon, err)
	}

	now := a.clock.Now()
	currency := strings.ToLower(string(sess.Currency))
	if currency == "" {
		currency = priceCurrency
	}
	p := store.Purchase{
		ID: purchaseID, UserID: &u.ID, Email: &u.Email, ProductKey: product.Key, Quantity: int(quantity),
		Status: store.PurchasePending, StripeSessionID: sess.ID, AmountTotal: sess.AmountTotal, Currency: currency,
		AccessState: store.AccessNone, ConsentRequired: a.cfg.Fulfillment.AbandonedRequiresConsent,
		CreatedAt: now, UpdatedAt: now,
	}
	if req.GitHubUsername != "" {
		p.GitHubUsername = &req.GitHubUsername
	}
	if sess.ExpiresAt > 0 {
		exp := time.Unix(sess.ExpiresAt, 0).UTC()
		p.SessionExpiresAt = &exp
	}
	err = a.db.InTx(r.Context(), func(q *store.Queries) error {
		if _, err := q.InsertPurchase(r.Context(), p); err != nil {
			return err
		}
		return q.UpsertAccount(r.Context(), u.ID, u.Email, req.GitHubUsername, now)
	})
	if err != nil {
		// The session exists at Stripe and carries purchase_id and user_id in
		// its metadata; the reconciler's listing records it if it is paid.
		return err
	}
	a.log.InfoContext(r.Context(), "checkout session created", "purchase_id", purchaseID,
		"stripe_session_id", sess.ID, "product", product.Key, "user_id", u.ID)
	writeJSON(w, http.StatusOK, checkoutResponse{URL: sess.URL, SessionID: sess.ID})
	return nil
}

// checkoutError maps a failed session creation: a coupon Stripe does not
// know is the buyer's mistake; anything else is Stripe's or ours.
func (a *api) checkoutError(r *http.Request, coupon string, err error) error {
	var se *stripe.Error
	if coupon != "" && errors.As(err, &se) && se.HTTPStatusCode == http.StatusBadRequest &&
		(strings.Contains(se.Param, "coupon") || strings.Contains(se.Param, "discounts") ||
			(se.Param == "" && se.Code == stripe.ErrorCodeResourceMissing)) {
		return Errorf(http.StatusBadRequest, "invalid_coupon", "coupon %q does not exist or can no longer be used", coupon)
	}
	a.log.ErrorContext(r.Context(), "create checkout session", "err", err)
	return Errorf(http.StatusBadGateway, "stripe_unavailable", "the payment provider is unavailable; try again shortly")
}
