// Plans: which steps a transition gets, decided from its facts alone, so
// the rules for quiet mode and for old objects (a backfill, a long outage)
// are pure functions, tested as tables. A customer must never get, days
// late or in a burst, email about a payment or a refund they have long
// forgotten; access is granted and revoked whatever the age, but an old
// payment a walk of the lists found is granted only once the walk has read
// the refunds and disputes that may have taken it back.
package fulfillment

import (
	"time"

	"github.com/paymentd/paymentd/internal/config"
)

// recoveryMaxAge is how old an expiry may be, when it is scheduled, for
// its checkout recovery email to be sent at all.
const recoveryMaxAge = 24 * time.Hour

// grantHold is how far ahead a held grant is scheduled (see
// purchasePlan.HoldGrant). The walk that held it releases it when it ends,
// long before; the hold's end only matters should no walk ever end, and
// then the grant runs late rather than never.
const grantHold = 7 * 24 * time.Hour

// purchaseFacts is what decides a completed purchase's pipeline.
type purchaseFacts struct {
	Now time.Time
	// CompletedAt is when the payment happened (Stripe's time).
	CompletedAt  time.Time
	NotifyWindow time.Duration
	// Quiet sends no customer email at all.
	Quiet bool
	// Access is set when the product has an access provider and the buyer
	// gave what it needs.
	Access    bool
	FollowUps []config.FollowUp
	// Walk is set when a walk of Stripe's lists recorded the payment: its
	// sessions are recorded before its refunds and disputes are read.
	Walk bool
	// Webhook is set when the access is the seller's webhook rather than a
	// GitHub invitation.
	Webhook bool
}

// purchasePlan is a completed purchase's pipeline, as decided.
type purchasePlan struct {
	Confirmation bool // customer receipt
	AdminEmail   bool // per-sale email to the admin
	Grant        bool
	AccessEmail  bool // waits for the grant
	// FollowUps are the follow-ups still ahead of Now; those already due
	// are skipped, never sent in a burst.
	FollowUps []config.FollowUp
	// Stale is set when the payment is older than the notify window.
	Stale bool
	// HoldGrant holds the grant until the walk that recorded the payment
	// has read its refunds and disputes: an old payment may have been
	// refunded or lost to a dispute long ago, and a buyer who got their
	// money back must not get an invitation in the meantime. A webhook
	// grant is not held: the seller's backend is told purchase.completed
	// and then the refund's or dispute's event, in that order, and undoes
	// what it must; held, the refund's event would come first.
	HoldGrant bool
}

// planPurchase decides a completed purchase's pipeline: a payment older
// than the notify window gets no customer email and no admin email (access
// is still granted, held until the end of the walk that found it, if one
// did); quiet sends no customer email; follow-ups whose time has passed are
// skipped. A payment recent enough to be announced is granted at once,
// walk or not: its buyer is waiting for it.
func planPurchase(f purchaseFacts) purchasePlan {
	stale := f.Now.Sub(f.CompletedAt) > f.NotifyWindow
	customer := !f.Quiet && !stale
	plan := purchasePlan{Confirmation: customer, AdminEmail: !stale, Grant: f.Access,
		AccessEmail: f.Access && customer, Stale: stale, HoldGrant: f.Access && stale && f.Walk && !f.Webhook}
	if f.Quiet {
		return plan
	}
	for _, fu := range f.FollowUps {
		if f.CompletedAt.Add(fu.Delay).After(f.Now) {
			plan.FollowUps = append(plan.FollowUps, fu)
		}
	}
	return plan
}

// refundFacts is what decides a refund's pipeline.
type refundFacts struct {
	Now time.Time
	// RefundedAt is when Stripe created the refund; zero when unknown.
	RefundedAt   time.Time
	NotifyWindow time.Duration
	Quiet        bool
	// Full is set when the purchase is refunded in full.
	Full bool
	// Provider is the product's access provider, "" for none.
	Provider string
}

// refundPlan is a refund's pipeline, as decided.
type refundPlan struct {
	Revoke        bool // a full refund takes access back
	AccessWebhook bool // a partial one tells a webhook product's backend
	CustomerEmail bool
	AdminEmail    bool
	Stale         bool
}

// planRefund decides a refund's pipeline. Access always follows the money.
// A refund older than the notify window is old news for everyone: neither
// the customer nor the admin (who made it, in the Dashboard) is emailed.
// Quiet sends no customer email.
func planRefund(f refundFacts) refundPlan {
	stale := !f.RefundedAt.IsZero() && f.Now.Sub(f.RefundedAt) > f.NotifyWindow
	return refundPlan{
		Revoke:        f.Full && f.Provider != "",
		AccessWebhook: !f.Full && f.Provider == providerWebhook,
		CustomerEmail: !f.Quiet && !stale,
		AdminEmail:    !stale,
		Stale:         stale,
	}
}

// recoveryFacts is what decides a checkout's recovery email.
type recoveryFacts struct {
	Now time.Time
	// ExpiredAt is when the session expired (the earlier of its expires_at
	// and when it was first seen expired); SessionExpiresAt is the
	// expires_at the session was created with. Either may be zero.
	ExpiredAt, SessionExpiresAt time.Time
	Quiet                       bool
}

// planRecovery decides whether an expired checkout gets a recovery email
// and from when its delay counts: the moment the session expired, so one
// expired early is recovered after the configured delay, not a day later.
// An expiry more than a day old, or quiet mode, gets none.
func planRecovery(f recoveryFacts) (anchor time.Time, send bool) {
	anchor = f.Now
	switch {
	case !f.ExpiredAt.IsZero():
		anchor = f.ExpiredAt
	case !f.SessionExpiresAt.IsZero():
		anchor = f.SessionExpiresAt
	}
	return anchor, !f.Quiet && f.Now.Sub(anchor) <= recoveryMaxAge
}
