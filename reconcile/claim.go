// Claims: the buyer's browser returns with a session id and the API asks
// the reconciler to apply that session now, on behalf of the verified user.
// Stripe is asked; the client is never trusted.
package reconcile

import (
	"context"
	"errors"
	"strings"

	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// Claimant is the authenticated caller claiming a session.
type Claimant struct {
	UserID string // the verified JWT subject
	Email  string // the token's email
	// EmailVerified is the token's email_verified claim. Only a verified
	// email may claim a session by email: anyone can sign up with an
	// address they do not own.
	EmailVerified bool
}

// ClaimResult is the claimed purchase, or for a subscription-mode session
// the claimed subscription (Subscription set, Purchase zero).
type ClaimResult struct {
	Purchase     store.Purchase
	Subscription *store.Subscription
	// AlreadyClaimed is set when the purchase had already been completed
	// (by an earlier claim, or by the reconciler) before this call.
	AlreadyClaimed bool
}

// Claim errors, mapped to HTTP statuses by the API.
var (
	ErrNotPaid  = errors.New("the checkout session is not complete and paid")
	ErrNotYours = errors.New("the checkout session belongs to another user")
	// ErrEmailUnverified refuses a claim by email (a session without user
	// metadata) from a caller whose email is not verified.
	ErrEmailUnverified = errors.New("claiming by email needs a verified email address")
	ErrUnknownSession  = errors.New("no such checkout session")
)

// Claim retrieves the session from Stripe and, when it is complete and paid
// and belongs to c, records its purchase as completed and schedules its
// pipeline (unless already done). Concurrent claims of one session make
// one purchase and one pipeline: the purchase row is locked while applied.
func (r *Reconciler) Claim(ctx context.Context, sessionID string, c Claimant) (ClaimResult, error) {
	s, err := r.stripe.CheckoutSession(ctx, sessionID)
	if isNotFound(err) {
		return ClaimResult{}, ErrUnknownSession
	}
	if err != nil {
		return ClaimResult{}, err
	}
	if s.Status != stripe.CheckoutSessionStatusComplete || (s.PaymentStatus != stripe.CheckoutSessionPaymentStatusPaid &&
		s.PaymentStatus != stripe.CheckoutSessionPaymentStatusNoPaymentRequired) {
		return ClaimResult{}, ErrNotPaid
	}
	if err := sessionBelongsTo(s, c); err != nil {
		return ClaimResult{}, err
	}
	if routedToSubscription(s) {
		return r.claimSubscription(ctx, s, c)
	}
	res, err := r.applySessionResult(ctx, s, &c, newReport(false), false)
	if err != nil {
		return ClaimResult{}, err
	}
	return ClaimResult{Purchase: res.purchase, AlreadyClaimed: res.wasFinal}, nil
}

// sessionBelongsTo checks the session's own word on who bought it: its
// user metadata, or without one, its customer email, which only a caller
// with a verified email may match. An unverified caller is refused before
// the emails are compared, so the refusal says nothing about the session's
// email.
func sessionBelongsTo(s *stripe.CheckoutSession, c Claimant) error {
	if u := s.Metadata["user_id"]; u != "" {
		if u != c.UserID {
			return ErrNotYours
		}
		return nil
	}
	if !c.EmailVerified {
		return ErrEmailUnverified
	}
	if e := sessionEmail(s); e == "" || c.Email == "" || !strings.EqualFold(e, c.Email) {
		return ErrNotYours
	}
	return nil
}
