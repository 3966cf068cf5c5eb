// Package reconcile makes the database agree with Stripe. It is level-based:
// a request names one Stripe object; the reconciler retrieves that object's
// current state from Stripe and writes the difference, in one transaction,
// idempotently, whatever the order or number of the signals that led there
// (webhook hints, the events feed, resource listings, open purchases).
package reconcile

import (
	"context"

	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// Fulfillment turns a purchase's lifecycle transitions into scheduled
// steps. The reconciler calls it inside the transaction that records the
// transition, so the purchase row and its steps commit together. Every
// method must be idempotent: scheduling a pipeline already scheduled is a
// no-op (steps are unique per purchase, pipeline and name).
type Fulfillment interface {
	// Completed schedules the purchase pipelines of purchases that just
	// became completed (confirmation, admin notification, access,
	// follow-ups); a page of purchases recorded together comes in one call.
	// walk is set when a walk of the lists recorded them: the refunds and
	// disputes of their payments are read later in the walk, so an old
	// payment's access may be held until WalkEnded.
	Completed(ctx context.Context, q *store.Queries, ps []store.Purchase, walk bool) error
	// WalkEnded is called when a walk of the lists has passed its refunds
	// and disputes phases: access Completed held for a walk is owed now
	// to the purchases still entitled.
	WalkEnded(ctx context.Context, q *store.Queries) error
	// Refunded schedules the refund pipeline for refund r, once per refund.
	// p.AmountRefunded is the cumulative amount refunded up to and including
	// r, so of two partial refunds adding up to the total the second is
	// full: p.AmountRefunded >= p.AmountTotal means full (revoke access,
	// cancel pending follow-ups), else partial (access kept).
	Refunded(ctx context.Context, q *store.Queries, p store.Purchase, r store.Refund) error
	// RefundReversed handles refund r having failed or been canceled after
	// it was recorded: access restored if it had been revoked, operator alerted.
	RefundReversed(ctx context.Context, q *store.Queries, p store.Purchase, r store.Refund) error
	// Expired schedules the abandoned-checkout step at the session's expiry
	// plus the configured delay.
	Expired(ctx context.Context, q *store.Queries, p store.Purchase) error
	// PaymentFailed tells the customer an asynchronous payment failed.
	PaymentFailed(ctx context.Context, q *store.Queries, p store.Purchase) error
	// DisputeOpened alerts the operator.
	DisputeOpened(ctx context.Context, q *store.Queries, p store.Purchase, d store.Dispute) error
	// DisputeLost treats a lost dispute as a full refund: access revoked,
	// follow-ups canceled, operator told.
	DisputeLost(ctx context.Context, q *store.Queries, p store.Purchase, d store.Dispute) error
	// Claimed schedules what a purchase recorded past pending before its
	// buyer was known needs now that a claim attached the buyer (p.UserID
	// is theirs): a GitHub product's access, to the account's GitHub
	// username. It is called once, in the claim's transaction, with the row
	// locked; a later claim finds the user set and does not call it.
	Claimed(ctx context.Context, q *store.Queries, p store.Purchase) error
	// RepairAccess schedules steps that move the purchase's access to want
	// (store.AccessGranted or store.AccessRevoked), found by the access
	// drift check.
	RepairAccess(ctx context.Context, q *store.Queries, p store.Purchase, want store.AccessState) error
	// Alert tells the operator something the reconciler cannot fix on its
	// own (it has stalled; an object keeps failing). key names the
	// occurrence: an alert is scheduled once per key, however often it is
	// raised.
	Alert(ctx context.Context, q *store.Queries, key string, a steps.AlertArgs) error
}
