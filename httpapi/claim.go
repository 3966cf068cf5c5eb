// Claim: the buyer's browser comes back from Stripe with a session id and
// asks for the purchase. The API never trusts the id's say-so: the
// reconciler asks Stripe whether the session is paid and whose it is.
package httpapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/paymentd/paymentd/reconcile"
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
	a.log.InfoContext(r.Context(), "purchase claimed", "purchase_id", res.Purchase.ID, "stripe_session_id",
		req.SessionID, "user_id", u.ID, "already_claimed", res.AlreadyClaimed)
	writeJSON(w, http.StatusOK, claimResponse{Status: string(res.Purchase.Status), Product: res.Purchase.ProductKey,
		AlreadyClaimed: res.AlreadyClaimed})
	return nil
}
