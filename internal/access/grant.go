// Package access holds the providers that give a buyer what they paid for
// and take it back on refund: GitHub repository access, a signed outbound
// webhook to the product's own backend, and a best-effort PostHog analytics
// capture.
//
// Providers are called from durable steps (package steps), so their errors
// follow the steps conventions: steps.Permanent for failures retrying cannot
// fix, steps.RetryAfter when the remote named a time to come back (rate
// limits, Retry-After), and a plain error for anything transient. Every call
// is safe to repeat with the same arguments.
package access

// Grant describes one purchase's entitlement as the providers see it. It is
// also the data payload of the outbound webhook.
type Grant struct {
	// PurchaseID is paymentd's identifier of the purchase.
	PurchaseID string `json:"purchase_id"`
	// UserID is the buyer's identifier in the product, if known.
	UserID string `json:"user_id,omitempty"`
	// Email is the buyer's email address.
	Email string `json:"email"`
	// ProductKey names the product bought, as configured in paymentd.
	ProductKey string `json:"product_key"`
	// GitHubUsername is the login to grant repository access to, for
	// products delivered through GitHub.
	GitHubUsername string `json:"github_username,omitempty"`
	// AmountTotal is the amount paid, in the currency's minor unit.
	AmountTotal int64 `json:"amount_total"`
	// AmountRefunded is the amount refunded so far, in the minor unit.
	AmountRefunded int64 `json:"amount_refunded"`
	// Currency is the lower-case ISO 4217 currency code, as Stripe gives it.
	Currency string `json:"currency"`
	// Event is the lifecycle event this grant is reported for: one of
	// EventPurchaseCompleted, EventPurchaseRefunded and
	// EventPurchasePartiallyRefunded.
	Event string `json:"event"`
}

// Lifecycle events reported to the outbound webhook.
const (
	// EventPurchaseCompleted is sent when a purchase was paid and access
	// granted.
	EventPurchaseCompleted = "purchase.completed"
	// EventPurchaseRefunded is sent when a purchase was refunded in full
	// and access revoked.
	EventPurchaseRefunded = "purchase.refunded"
	// EventPurchasePartiallyRefunded is sent when part of a purchase was
	// refunded; access is kept.
	EventPurchasePartiallyRefunded = "purchase.partially_refunded"
)

// Subscription lifecycle events reported to the outbound webhook, with a
// Subscription as their data.
const (
	// EventSubscriptionActivated: a subscription started (trial or paid).
	EventSubscriptionActivated = "subscription.activated"
	// EventSubscriptionUpdated: its status, plan or scheduled
	// cancellation changed otherwise (active again, resumed, plan changed).
	EventSubscriptionUpdated = "subscription.updated"
	// EventSubscriptionPastDue: a renewal failed; access is kept for the
	// grace period.
	EventSubscriptionPastDue = "subscription.past_due"
	// EventSubscriptionCanceled: it was canceled; it ends at the period end
	// (cancel_at_period_end) or has ended.
	EventSubscriptionCanceled = "subscription.canceled"
	// EventSubscriptionEnded: it ended (canceled, unpaid or expired) and
	// access was revoked.
	EventSubscriptionEnded = "subscription.ended"
)

// Subscription is the data of a subscription event.
type Subscription struct {
	// SubscriptionID is paymentd's identifier of the subscription.
	SubscriptionID       string `json:"subscription_id"`
	StripeSubscriptionID string `json:"stripe_subscription_id"`
	// OrganizationID is the seller's tenant id given at checkout.
	OrganizationID string `json:"organization_id,omitempty"`
	UserID         string `json:"user_id,omitempty"`
	Email          string `json:"email,omitempty"`
	ProductKey     string `json:"product_key"`
	PriceKey       string `json:"price_key"`
	// Status is Stripe's status; Entitled whether it gives access now.
	Status            string `json:"status"`
	Entitled          bool   `json:"entitled"`
	CancelAtPeriodEnd bool   `json:"cancel_at_period_end"`
	// CurrentPeriodEnd and EndedAt are RFC 3339 times ("" for none).
	CurrentPeriodEnd string `json:"current_period_end"`
	EndedAt          string `json:"ended_at,omitempty"`
	Event            string `json:"event"`
}
