// Subscriptions, the reconcile: every signal about a subscription (a hint
// or event naming it, one of its invoices or its checkout session, the
// list walk, the sweep of due rows) leads here, to a retrieve of the
// subscription with its latest invoice and a write of what Stripe says now,
// under the subscription's row lock. What the snapshot means is
// decideSubscription's; this file reads Stripe, locks, and writes.
package reconcile

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// SubscriptionFulfillment turns subscriptions' changes into scheduled
// steps (emails, access, outbound webhooks) on their subjects. The
// reconciler calls it inside the transaction that records the changes (one
// subscription's, or a page's together), so the rows and their steps commit
// together; it must be idempotent (steps are unique per subject, pipeline
// and name, and each change names its pipelines after its causes).
type SubscriptionFulfillment interface {
	SubscriptionsChanged(ctx context.Context, q *store.Queries, cs []SubscriptionChange) error
	// RepairSubscriptionAccess schedules, in q's transaction, the access
	// step that brings the subscription's access back to want (the access
	// drift pass found it otherwise on GitHub or in the grants).
	RepairSubscriptionAccess(ctx context.Context, q *store.Queries, s store.Subscription, want store.AccessState) error
}

// SubscriptionOptions configures the reconcile of subscriptions.
type SubscriptionOptions struct {
	// Fulfillment schedules what a change sets in motion; nil records the
	// rows only.
	Fulfillment SubscriptionFulfillment
	// Grace and DunningReminder are config's subscriptions section.
	Grace, DunningReminder time.Duration
	// Quiet schedules no customer or admin email (a backfill).
	Quiet bool
	// NotifyWindow is fulfillment.notify_window: a subscription that
	// started longer ago when first seen, or an invoice paid longer ago,
	// is recorded without email. Zero means no limit.
	NotifyWindow time.Duration
}

// MetaSubscriptionID is the metadata key of paymentd's id for a
// subscription, on its checkout session and on the subscription itself.
const MetaSubscriptionID = "subscription_id"

// Kinds of the subscription lifecycle's objects.
const (
	kindSubscription = "subscription"
	kindInvoice      = "invoice"
	kindCustomer     = "customer"
)

// subscriptionPrices maps each configured subscription price's lookup key
// to its product and price.
func subscriptionPrices(products []config.Product) map[string]config.ProductPrice {
	c := config.Config{Products: products}
	return c.SubscriptionPrices()
}

// adoptSubscription decides whether a subscription paymentd has no row for
// is paymentd's, the adoption rule of sessions extended: it carries our
// metadata (a subscription id that is a UUID), or its price's lookup key is
// a configured subscription price.
func adoptSubscription(s *stripe.Subscription, prices map[string]config.ProductPrice) SkipReason {
	if _, err := uuid.Parse(s.Metadata[MetaSubscriptionID]); err == nil {
		return ""
	}
	key := lookupKeyOf(s)
	switch {
	case key == "":
		return SkipNoLookupKey
	case prices[key].Product.Key == "":
		return SkipUnknownProduct
	}
	return ""
}

func firstItem(s *stripe.Subscription) *stripe.SubscriptionItem {
	if s.Items == nil || len(s.Items.Data) == 0 {
		return nil
	}
	return s.Items.Data[0]
}

func lookupKeyOf(s *stripe.Subscription) string {
	if it := firstItem(s); it != nil && it.Price != nil {
		return it.Price.LookupKey
	}
	return ""
}

// unixPtr is a Stripe time, nil for none.
func unixPtr(t int64) *time.Time {
	if t <= 0 {
		return nil
	}
	u := time.Unix(t, 0).UTC()
	return &u
}

// subscriptionSnapshot reads a Stripe subscription in the row's terms: id
// from our metadata (a new one otherwise), user and organization from our
// metadata, the product from the price's lookup key (else our metadata).
func subscriptionSnapshot(s *stripe.Subscription, prices map[string]config.ProductPrice, now time.Time) (store.Subscription, error) {
	it := firstItem(s)
	if it == nil || it.Price == nil {
		return store.Subscription{}, fmt.Errorf("subscription %s has no price", s.ID)
	}
	pr := it.Price
	row := store.Subscription{ID: s.Metadata[MetaSubscriptionID], StripeSubscriptionID: s.ID,
		Status: store.SubscriptionStatus(s.Status), StripePriceID: pr.ID, PriceKey: pr.LookupKey,
		Quantity: max(it.Quantity, 0), Amount: pr.UnitAmount * max(it.Quantity, 0),
		Currency: strings.ToLower(string(pr.Currency)), Interval: "month", IntervalCount: 1,
		CurrentPeriodStart: timeOf(s.CurrentPeriodStart, now), CurrentPeriodEnd: timeOf(s.CurrentPeriodEnd, now),
		TrialEnd: unixPtr(s.TrialEnd), CancelAtPeriodEnd: s.CancelAtPeriodEnd, CanceledAt: unixPtr(s.CanceledAt),
		EndedAt: unixPtr(s.EndedAt), AccessState: store.AccessNone, CreatedAt: timeOf(s.Created, now), UpdatedAt: now}
	if _, err := uuid.Parse(row.ID); err != nil {
		row.ID = uuid.NewString()
	}
	if pr.Recurring != nil {
		row.Interval, row.IntervalCount = string(pr.Recurring.Interval), max(pr.Recurring.IntervalCount, 1)
	}
	if s.Customer != nil {
		row.StripeCustomerID = s.Customer.ID
		if s.Customer.Email != "" {
			row.CustomerEmail = &s.Customer.Email
		}
	}
	if inv := s.LatestInvoice; inv != nil && inv.ID != "" {
		row.LatestInvoiceID = &inv.ID
		if row.CustomerEmail == nil && inv.CustomerEmail != "" {
			row.CustomerEmail = &inv.CustomerEmail
		}
	}
	if row.Status.Started() {
		row.StartedAt = unixPtr(s.StartDate)
	}
	if u := s.Metadata["user_id"]; u != "" {
		row.UserID = &u
	}
	if o := s.Metadata["organization_id"]; o != "" {
		row.OrganizationID = &o
	}
	// The price says the product: a plan changed to another product's
	// price (the billing portal) keeps the first product in its metadata.
	row.ProductKey = s.Metadata["product"]
	if pp, ok := prices[pr.LookupKey]; ok && pp.Product.Key != "" {
		row.ProductKey = pp.Product.Key
	}
	if row.ProductKey == "" {
		row.ProductKey = "unknown"
	}
	return row, nil
}

// invoiceRow reads a Stripe invoice in the row's terms; its subscription
// and first failure are the decision's. The period is its first line's
// (the service period it bills), else the invoice's own.
func invoiceRow(inv *stripe.Invoice, now time.Time) store.Invoice {
	row := store.Invoice{ID: inv.ID, Status: store.InvoiceStatus(inv.Status), BillingReason: string(inv.BillingReason),
		Currency: strings.ToLower(string(inv.Currency)), AmountDue: inv.AmountDue, AmountPaid: inv.AmountPaid,
		AmountRemaining: inv.AmountRemaining, AttemptCount: inv.AttemptCount,
		NextPaymentAttempt: unixPtr(inv.NextPaymentAttempt), PeriodStart: unixPtr(inv.PeriodStart),
		PeriodEnd: unixPtr(inv.PeriodEnd), CreatedAt: timeOf(inv.Created, now), UpdatedAt: now}
	if inv.Number != "" {
		row.Number = &inv.Number
	}
	if inv.HostedInvoiceURL != "" {
		row.HostedInvoiceURL = &inv.HostedInvoiceURL
	}
	if inv.Lines != nil && len(inv.Lines.Data) > 0 && inv.Lines.Data[0].Period != nil {
		p := inv.Lines.Data[0].Period
		row.PeriodStart, row.PeriodEnd = unixPtr(p.Start), unixPtr(p.End)
	}
	if row.Status == store.InvoicePaid {
		at := now
		if inv.StatusTransitions != nil && inv.StatusTransitions.PaidAt > 0 {
			at = time.Unix(inv.StatusTransitions.PaidAt, 0).UTC()
		}
		row.PaidAt = &at
	}
	return row
}

// subscriptionResult is what applying a subscription did.
type subscriptionResult struct {
	sub     store.Subscription
	found   bool // a row exists (or was created)
	skipped SkipReason
	// wasStarted: the row had already started before this call.
	wasStarted bool
}

// subscription retrieves a subscription with its latest invoice and
// applies it, with more (other invoices of it) beside that one. One that is
// not ours is left alone; the report's skip counts are of Checkout
// Sessions, so it is counted there only through its session.
func (r *Reconciler) subscription(ctx context.Context, id string, more []*stripe.Invoice, rep *Report) error {
	s, err := r.stripe.Subscription(ctx, id)
	if err != nil {
		return fmt.Errorf("retrieve subscription: %w", err)
	}
	_, err = r.applySubscription(ctx, s, more, nil, rep)
	return err
}

// invoice retrieves an invoice and applies its subscription with it. An
// invoice of no subscription is not one of ours.
func (r *Reconciler) invoice(ctx context.Context, id string, rep *Report) error {
	inv, err := r.stripe.Invoice(ctx, id)
	if err != nil {
		return fmt.Errorf("retrieve invoice: %w", err)
	}
	rep.seen(1)
	if inv.Subscription == nil || inv.Subscription.ID == "" {
		return nil
	}
	return r.subscription(ctx, inv.Subscription.ID, []*stripe.Invoice{inv}, rep)
}

// customer retrieves a customer and writes its email and name to the
// accounts and subscriptions that name it; a customer paymentd does not
// know is left alone.
func (r *Reconciler) customer(ctx context.Context, id string, rep *Report) error {
	cu, err := r.stripe.Customer(ctx, id)
	if err != nil {
		return fmt.Errorf("retrieve customer: %w", err)
	}
	rep.seen(1)
	if cu.Deleted {
		return nil
	}
	return r.inTx(ctx, rep, func(q *store.Queries) error {
		known, err := q.KnownCustomer(ctx, id)
		if err != nil || !known {
			return err
		}
		n, err := q.SetCustomerContact(ctx, id, cu.Email, cu.Name, r.clock.Now())
		if err != nil || n == 0 {
			return err
		}
		return r.record(ctx, q, rep, Change{Kind: kindCustomer, ObjectID: id, What: "customer_updated"})
	})
}

// applySubscription makes the subscription's row and invoices agree with
// s (and more, other invoices of it), in one transaction with the row
// locked, and hands what the change sets in motion to the fulfillment in
// that transaction: writeSubscriptions for one. A subscription paymentd
// has no row for is recorded only when adoptSubscription says it is ours.
// A claimant, when set, is the verified user claiming it through its
// checkout session.
func (r *Reconciler) applySubscription(ctx context.Context, s *stripe.Subscription, more []*stripe.Invoice, c *Claimant,
	rep *Report) (subscriptionResult, error) {
	rep.seen(1)
	it, err := r.newSubItem(s, more, r.clock.Now())
	if err != nil {
		return subscriptionResult{}, err
	}
	var report []Change
	err = r.inTx(ctx, rep, func(q *store.Queries) (err error) {
		report, err = r.writeSubscriptions(ctx, q, []*subItem{it}, c)
		return err
	})
	if err != nil {
		return it.res, err
	}
	for _, ch := range report {
		r.report(rep, ch)
	}
	return it.res, nil
}

func (r *Reconciler) subPolicy() subPolicy {
	o := r.opts.Subscriptions
	credits := map[string]bool{}
	for _, p := range r.opts.Products {
		if p.Mode == config.ModeSubscription && p.Credits > 0 {
			credits[p.Key] = true
		}
	}
	return subPolicy{Grace: o.Grace, DunningReminder: o.DunningReminder, Quiet: o.Quiet, NotifyWindow: o.NotifyWindow,
		Credits: credits}
}

// routedToSubscription reports whether a Checkout Session is handled as
// its subscription: a subscription-mode session without a purchase's
// metadata (one with it stays a purchase, see adopt).
func routedToSubscription(s *stripe.CheckoutSession) bool {
	_, err := uuid.Parse(s.Metadata["purchase_id"])
	return s.Mode == stripe.CheckoutSessionModeSubscription && err != nil
}

// sessionSubscription applies the subscription a subscription-mode
// Checkout Session created. A session without one (open, expired) has
// nothing to record, and one whose subscription is not ours is counted as
// skipped (not_payment_mode, as before subscriptions were sold); both
// report skipped.
func (r *Reconciler) sessionSubscription(ctx context.Context, s *stripe.CheckoutSession, c *Claimant, rep *Report) (subscriptionResult, error) {
	rep.seen(1)
	if s.Subscription == nil || s.Subscription.ID == "" {
		// Nothing to record (open, or expired unpaid); one not ours is
		// counted as before.
		if s.Status != stripe.CheckoutSessionStatusOpen && !ourSubscriptionSession(s, r.subPrices) {
			rep.skip(s.ID, SkipNotPaymentMode)
		}
		return subscriptionResult{skipped: SkipNotPaymentMode}, nil
	}
	sub, err := r.stripe.Subscription(ctx, s.Subscription.ID)
	if err != nil {
		return subscriptionResult{}, fmt.Errorf("retrieve subscription: %w", err)
	}
	res, err := r.applySubscription(ctx, sub, nil, c, rep)
	if err == nil && res.skipped != "" {
		rep.skip(s.ID, SkipNotPaymentMode)
	}
	return res, err
}

// ourSubscriptionSession reports whether a subscription-mode session's
// subscription is paymentd's by the adoption rule, from the session alone:
// our metadata, or a line item whose price is a configured subscription
// price (the line items as the listing expanded them).
func ourSubscriptionSession(s *stripe.CheckoutSession, prices map[string]config.ProductPrice) bool {
	if _, err := uuid.Parse(s.Metadata[MetaSubscriptionID]); err == nil {
		return true
	}
	if s.LineItems == nil {
		return false
	}
	for _, li := range s.LineItems.Data {
		if li.Price != nil && prices[li.Price.LookupKey].Product.Key != "" {
			return true
		}
	}
	return false
}

// claimSubscription records the subscription of a complete
// subscription-mode session for its verified buyer (see Claim).
// AlreadyClaimed is set when the subscription had already started in the
// database before this call.
func (r *Reconciler) claimSubscription(ctx context.Context, s *stripe.CheckoutSession, c Claimant) (ClaimResult, error) {
	res, err := r.sessionSubscription(ctx, s, &c, newReport(false))
	switch {
	case err != nil:
		return ClaimResult{}, err
	case !res.found:
		return ClaimResult{}, fmt.Errorf("%w: not a paymentd subscription", ErrUnknownSession)
	}
	return ClaimResult{Subscription: &res.sub, AlreadyClaimed: res.wasStarted}, nil
}
