// Claim: the buyer's browser comes back from Stripe with a session id and
// asks for the purchase. The API never trusts the id's say-so: the
// reconciler asks Stripe whether the session is paid and whose it is,
// unless the database already records the purchase as paid and the
// caller's (claimedBefore). Asking Stripe spends one of the caller's
// Stripe lookups (takeStripeLookup).
package httpapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// Claimer confirms a checkout session for its buyer; *reconcile.Reconciler
// satisfies it. It returns reconcile.ErrNotPaid, ErrNotYours or
// ErrUnknownSession (possibly wrapped) for the cases the caller can fix or
// must be told.
type Claimer interface {
	Claim(ctx context.Context, sessionID string, c reconcile.Claimant) (reconcile.ClaimResult, error)
}

// sessionIDRE matches a Checkout Session id (cs_test_..., cs_live_...).
var sessionIDRE = regexp.MustCompile(`^cs_[A-Za-z0-9_]{1,250}$`)

type claimRequest struct {
	SessionID string `json:"session_id"`
}

type claimResponse struct {
	Status         string `json:"status"`
	Product        string `json:"product"`
	AlreadyClaimed bool   `json:"already_claimed"`
}

func (a *api) claim(w http.ResponseWriter, r *http.Request, u User) error {
	var req claimRequest
	if err := decodeJSON(w, r, a.cfg.HTTP.MaxBodyBytes, &req); err != nil {
		return err
	}
	if !sessionIDRE.MatchString(req.SessionID) {
		return Errorf(http.StatusBadRequest, "invalid_session_id", "session_id must be a Stripe Checkout Session id (cs_...)")
	}
	if a.claimer == nil {
		return unavailable("claiming")
	}
	if done, err := a.claimedBefore(r.Context(), req.SessionID, u); err != nil {
		return err
	} else if done != nil {
		a.writeClaimedPurchase(w, r, u, req.SessionID, *done, true)
		return nil
	}
	if err := a.takeStripeLookup(w, r, u); err != nil {
		return err
	}
	res, err := a.claimer.Claim(r.Context(), req.SessionID, reconcile.Claimant{UserID: u.ID, Email: u.Email,
		EmailVerified: u.EmailVerified})
	var se *stripe.Error
	switch {
	case err == nil:
	case errors.Is(err, reconcile.ErrNotPaid):
		return Errorf(http.StatusBadRequest, "not_paid", "this checkout session is not complete and paid")
	case errors.Is(err, reconcile.ErrNotYours):
		a.log.WarnContext(r.Context(), "claim of another user's session refused", "user_id", u.ID,
			"stripe_session_id", req.SessionID)
		return Errorf(http.StatusForbidden, "forbidden", "this checkout session belongs to someone else")
	case errors.Is(err, reconcile.ErrEmailUnverified):
		return Errorf(http.StatusForbidden, "email_not_verified",
			"this purchase is claimed by email address; sign in with a verified email address to claim it")
	case errors.Is(err, reconcile.ErrUnknownSession):
		return Errorf(http.StatusNotFound, "unknown_session", "there is no such checkout session")
	case errors.As(err, &se):
		a.log.ErrorContext(r.Context(), "claim: stripe failed", "stripe_session_id", req.SessionID, "err", err)
		return Errorf(http.StatusBadGateway, "stripe_unavailable", "the payment provider is unavailable; try again shortly")
	default:
		return err
	}
	if res.Subscription != nil {
		a.log.InfoContext(r.Context(), "subscription claimed", "subscription_id", res.Subscription.ID,
			"stripe_session_id", req.SessionID, "user_id", u.ID, "already_claimed", res.AlreadyClaimed)
		writeClaimedSubscription(w, res)
		return nil
	}
	a.writeClaimedPurchase(w, r, u, req.SessionID, res.Purchase, res.AlreadyClaimed)
	return nil
}

// writeClaimedPurchase logs and answers a claim of purchase p.
func (a *api) writeClaimedPurchase(w http.ResponseWriter, r *http.Request, u User, sessionID string, p store.Purchase,
	already bool) {
	a.log.InfoContext(r.Context(), "purchase claimed", "purchase_id", p.ID, "stripe_session_id", sessionID,
		"user_id", u.ID, "already_claimed", already)
	writeJSON(w, http.StatusOK, claimResponse{Status: string(p.Status), Product: p.ProductKey, AlreadyClaimed: already})
}

// claimedBefore returns the purchase of session sessionID when it is
// already the caller's and past payment (completed or refunded, in part or
// in full), nil otherwise. Such a claim is answered from the database: the
// reconciler would find the session paid, the caller's, and the purchase
// final (already_claimed), and the status it records is the one the
// webhooks and reconciler passes keep current. Answering it here costs no
// Stripe request, so a success page that claims again on every load is
// never rate limited. Everything else (no row, a pending, expired or
// failed purchase, someone else's or nobody's) is Stripe's to judge.
func (a *api) claimedBefore(ctx context.Context, sessionID string, u User) (*store.Purchase, error) {
	p, err := a.db.PurchaseBySession(ctx, sessionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if p.UserID == nil || *p.UserID != u.ID {
		return nil, nil
	}
	switch p.Status {
	case store.PurchaseCompleted, store.PurchasePartiallyRefunded, store.PurchaseRefunded:
		return &p, nil
	}
	return nil, nil
}
