// Checkout sessions: a session's current state decides its purchase's
// status. Paid means completed (and the purchase pipeline scheduled);
// expired means expired (and the abandoned-checkout step scheduled); a
// complete but unpaid session waits for its asynchronous payment, and a
// failed one means failed.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// sessionState is what a Checkout Session means for its purchase.
type sessionState string

const (
	sessionOpen    sessionState = "open"    // the buyer has not finished
	sessionPaid    sessionState = "paid"    // complete and paid (or nothing to pay)
	sessionUnpaid  sessionState = "unpaid"  // complete, its asynchronous payment still pending
	sessionFailed  sessionState = "failed"  // complete, its asynchronous payment failed
	sessionExpired sessionState = "expired" // expired unpaid
)

// stateOf is the one reading of a session's own fields. It cannot tell a
// pending asynchronous payment from a failed one (both are unpaid); facts
// asks the payment intent for that.
func stateOf(s *stripe.CheckoutSession) sessionState {
	switch {
	case s.Status == stripe.CheckoutSessionStatusExpired:
		return sessionExpired
	case s.Status == stripe.CheckoutSessionStatusComplete && (s.PaymentStatus == stripe.CheckoutSessionPaymentStatusPaid ||
		s.PaymentStatus == stripe.CheckoutSessionPaymentStatusNoPaymentRequired):
		return sessionPaid
	case s.Status == stripe.CheckoutSessionStatusComplete:
		return sessionUnpaid
	}
	return sessionOpen
}

// sessionFacts is what Stripe says about a session, with what it takes a
// second call to learn (an async payment's fate, a Payment Link's product).
type sessionFacts struct {
	s          *stripe.CheckoutSession
	state      sessionState
	productKey string
}

func (r *Reconciler) facts(ctx context.Context, s *stripe.CheckoutSession, needProduct bool) (sessionFacts, error) {
	f := sessionFacts{s: s, state: stateOf(s), productKey: s.Metadata["product"]}
	if f.state == sessionUnpaid && s.PaymentIntent != nil {
		pi, err := r.stripe.PaymentIntent(ctx, s.PaymentIntent.ID)
		if err != nil {
			return f, fmt.Errorf("retrieve payment intent: %w", err)
		}
		if pi.Status == stripe.PaymentIntentStatusCanceled || pi.Status == stripe.PaymentIntentStatusRequiresPaymentMethod {
			f.state = sessionFailed
		}
	}
	if f.productKey == "" && needProduct && f.state != sessionOpen {
		full, err := r.stripe.CheckoutSessionLineItems(ctx, s.ID)
		if err != nil {
			return f, fmt.Errorf("retrieve line items: %w", err)
		}
		if full.LineItems != nil {
			for _, li := range full.LineItems.Data {
				if li.Price != nil && li.Price.LookupKey != "" {
					f.productKey = li.Price.LookupKey
					break
				}
			}
		}
	}
	return f, nil
}

// sessionResult is what applying a session did to its purchase.
type sessionResult struct {
	purchase store.Purchase
	found    bool // a purchase exists (or was created) for the session
	// wasFinal: the purchase had already left pending before this call.
	wasFinal bool
}

// applySession makes the session's purchase agree with s. A claimant, when
// set, is the verified user claiming the session (see Claim).
func (r *Reconciler) applySession(ctx context.Context, s *stripe.CheckoutSession, c *Claimant, rep *Report) error {
	_, err := r.applySessionResult(ctx, s, c, rep)
	return err
}

func (r *Reconciler) applySessionResult(ctx context.Context, s *stripe.CheckoutSession, c *Claimant, rep *Report) (sessionResult, error) {
	rep.seen(1)
	var res sessionResult
	// Learn what needs a second Stripe call before taking row locks.
	f, err := r.facts(ctx, s, true)
	if err != nil {
		return res, err
	}
	err = r.inTx(ctx, rep, func(q *store.Queries) error {
		p, err := q.LockPurchaseBySession(ctx, s.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if f.state == sessionOpen {
				return nil // nothing to record until it completes or expires
			}
			created, err := r.createPurchase(ctx, q, f, rep)
			if err != nil {
				return err
			}
			if p, err = q.LockPurchaseBySession(ctx, created); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			res.wasFinal = p.Status != store.PurchasePending
		}
		res.found = true
		if c != nil && p.UserID != nil && *p.UserID != c.UserID {
			return ErrNotYours // recorded for another user
		}
		next, what := r.nextSessionState(p, f)
		if c != nil && p.UserID == nil {
			next.UserID = &c.UserID // a Payment Link purchase, claimed by its buyer's verified email
		}
		if equalPurchases(next, p) {
			res.purchase = p
			return nil // matches: write nothing
		}
		now := r.clock.Now()
		next.CheckedAt = &now
		if err := q.UpdatePurchase(ctx, next, now); err != nil {
			return err
		}
		res.purchase = next
		if what == "" {
			return nil
		}
		if err := r.record(ctx, q, rep, Change{Kind: "session", ObjectID: s.ID, PurchaseID: p.ID, What: what}); err != nil {
			return err
		}
		switch what {
		case "completed":
			return r.ful.Completed(ctx, q, next)
		case "expired":
			return r.ful.Expired(ctx, q, next)
		case "failed":
			return r.ful.PaymentFailed(ctx, q, next)
		}
		return nil
	})
	return res, err
}

// createPurchase records a purchase for a session paymentd has no row for:
// made by the API but its row was lost, or not made by the API at all (a
// Payment Link), in which case it is keyed by the customer's email and
// claimable later by that email's user. It returns the session id.
func (r *Reconciler) createPurchase(ctx context.Context, q *store.Queries, f sessionFacts, rep *Report) (string, error) {
	s := f.s
	now := r.clock.Now()
	id := s.Metadata["purchase_id"]
	if _, err := uuid.Parse(id); err != nil {
		id = uuid.NewString()
	} else if _, err := q.GetPurchase(ctx, id); err == nil {
		id = uuid.NewString() // the id is taken by another session's row
	}
	p := store.Purchase{
		ID: id, ProductKey: f.productKey, Quantity: 1, Status: store.PurchasePending, StripeSessionID: s.ID,
		AmountTotal: s.AmountTotal, Currency: strings.ToLower(string(s.Currency)), AccessState: store.AccessNone,
		CreatedAt: timeOf(s.Created, now), UpdatedAt: now,
	}
	if p.ProductKey == "" {
		p.ProductKey = "unknown"
	}
	if p.Currency == "" {
		p.Currency = "usd"
	}
	if u := s.Metadata["user_id"]; u != "" {
		p.UserID = &u
	} else if s.ClientReferenceID != "" {
		p.UserID = &s.ClientReferenceID
	}
	if e := sessionEmail(s); e != "" {
		p.Email = &e
	}
	if s.ExpiresAt > 0 {
		t := timeOf(s.ExpiresAt, now)
		p.SessionExpiresAt = &t
	}
	p.ConsentRequired = s.ConsentCollection != nil && s.ConsentCollection.Promotions == "auto"
	inserted, err := q.InsertPurchase(ctx, p)
	if err != nil {
		return "", err
	}
	if inserted {
		if err := r.record(ctx, q, rep, Change{Kind: "session", ObjectID: s.ID, PurchaseID: p.ID, What: "created"}); err != nil {
			return "", err
		}
	}
	return s.ID, nil
}

// nextSessionState returns p as the session says it should be, and the
// lifecycle transition that takes it there ("" when only details change).
// A purchase's status only moves forward: a paid purchase is never made
// pending, expired or failed again.
func (r *Reconciler) nextSessionState(p store.Purchase, f sessionFacts) (store.Purchase, string) {
	s := f.s
	next := p
	if next.SessionExpiresAt == nil && s.ExpiresAt > 0 {
		t := timeOf(s.ExpiresAt, r.clock.Now())
		next.SessionExpiresAt = &t
	}
	if next.Email == nil {
		if e := sessionEmail(s); e != "" {
			next.Email = &e
		}
	}
	if s.Consent != nil && s.Consent.Promotions != "" {
		yes := s.Consent.Promotions == stripe.CheckoutSessionConsentPromotionsOptIn
		next.PromotionsConsent = &yes
	}
	what := ""
	switch f.state {
	case sessionPaid:
		if s.Customer != nil && s.Customer.ID != "" {
			next.StripeCustomerID = &s.Customer.ID
		}
		if s.PaymentIntent != nil && s.PaymentIntent.ID != "" {
			next.StripePaymentIntentID = &s.PaymentIntent.ID
		}
		next.AmountTotal = s.AmountTotal
		if s.Currency != "" {
			next.Currency = strings.ToLower(string(s.Currency))
		}
		if p.Status == store.PurchasePending || p.Status == store.PurchaseExpired || p.Status == store.PurchaseFailed {
			next.Status = store.PurchaseCompleted
			now := r.clock.Now()
			next.CompletedAt = &now
			what = "completed"
		}
	case sessionUnpaid:
		if s.PaymentIntent != nil && s.PaymentIntent.ID != "" {
			next.StripePaymentIntentID = &s.PaymentIntent.ID
		}
	case sessionFailed:
		if p.Status == store.PurchasePending {
			next.Status = store.PurchaseFailed
			what = "failed"
		}
	case sessionExpired:
		if s.AfterExpiration != nil && s.AfterExpiration.Recovery != nil && s.AfterExpiration.Recovery.URL != "" {
			next.RecoveryURL = &s.AfterExpiration.Recovery.URL
		}
		if p.Status == store.PurchasePending {
			next.Status = store.PurchaseExpired
			what = "expired"
		}
	}
	return next, what
}

func sessionEmail(s *stripe.CheckoutSession) string {
	if s.CustomerDetails != nil && s.CustomerDetails.Email != "" {
		return s.CustomerDetails.Email
	}
	return s.CustomerEmail
}
