// Go entry points for billing, for tests and dev tools, beside the HTTP
// API: starting a subscription directly (also in the past, for backfill
// tests), cancelling, changing price, moving trials, pausing collection,
// resuming, paying invoices, and copies of the objects as stripe-go decodes
// them. Each takes the emulator's lock, applies what the clock made due,
// and records the same events the API would.

package stripeemu

import (
	"time"

	"github.com/stripe/stripe-go/v76"
)

// SubscriptionParams describes a subscription created with
// CreateSubscription.
type SubscriptionParams struct {
	// Customer is an existing customer; without one a customer is created
	// from Email and Name.
	Customer    string
	Email, Name string
	// Items are the recurring prices; at least one is required.
	Items []LineItem
	// Start backdates the subscription: it is created at Start and its
	// history (renewals, retries, trial end) is replayed up to now, each
	// step at its own time. Zero means now.
	Start time.Time
	// TrialDays starts a trial of that many days.
	TrialDays int
	// TrialEndBehavior is trial_settings.end_behavior.missing_payment_method
	// for a customer without a card: create_invoice (default), pause or
	// cancel.
	TrialEndBehavior string
	// NoCard creates the customer without a payment method.
	NoCard bool
	// Decline gives the customer a card that declines: without a trial the
	// subscription starts incomplete.
	Decline bool
	// Metadata is the subscription's metadata.
	Metadata map[string]string
	// Coupon applies a coupon for its duration (once, repeating, forever).
	Coupon string
}

// CreateSubscription starts a subscription as POST /v1/subscriptions with
// payment_behavior=allow_incomplete would, recording customer.created (for
// a new customer), customer.subscription.created and the first invoice's
// events.
func (e *Emulator) CreateSubscription(p SubscriptionParams) (*stripe.Subscription, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	now := e.bill.clock.unpinnedNow()
	if !p.Start.IsZero() && p.Start.After(now) {
		return nil, opError("create subscription", invalid("start", "", "Start %s is in the future.", p.Start.Format(time.RFC3339)))
	}
	switch p.TrialEndBehavior {
	case "", "create_invoice", "pause", "cancel":
	default:
		return nil, opError("create subscription", invalid("trial_settings", "", "Invalid TrialEndBehavior %q.", p.TrialEndBehavior))
	}
	items := make([]specItem, len(p.Items))
	for i, it := range p.Items {
		items[i] = specItem{price: it.Price, quantity: max(it.Quantity, 1)}
	}
	currency, ae := e.validateSubPricesLocked(items, "items")
	if ae != nil {
		return nil, opError("create subscription", ae)
	}
	if _, ok := e.coupons[p.Coupon]; p.Coupon != "" && !ok {
		return nil, opError("create subscription", invalid("coupon", "resource_missing", "No such coupon: '%s'", p.Coupon))
	}
	if p.Customer != "" {
		if _, ok := e.customers.get(p.Customer); !ok {
			return nil, opError("create subscription", invalid("customer", "resource_missing", "No such customer: '%s'", p.Customer))
		}
	}
	if !p.Start.IsZero() {
		e.bill.clock.pin(p.Start.Unix())
		defer e.tickLocked()
		defer e.bill.clock.unpin()
	}
	cusID := p.Customer
	if cusID == "" {
		cusID = e.newCustomerLocked(p.Email, p.Name, nil, eventRequestJSON{}).ID
	}
	if !p.NoCard {
		e.newSessionCardLocked(cusID, p.Decline)
	}
	spec := subSpec{customerID: cusID, items: items, trialEndBehavior: p.TrialEndBehavior, metadata: p.Metadata, couponID: p.Coupon}
	if p.TrialDays > 0 {
		spec.trialEnd = e.nowUnix() + int64(p.TrialDays)*24*3600
	}
	s := e.createSubscriptionLocked(spec, currency, eventRequestJSON{})
	return decodeAs[stripe.Subscription](e.renderSubscription(s, nil))
}

// subOp runs fn on a subscription under the lock, after the due
// transitions.
func (e *Emulator) subOp(op, id string, fn func(s *subscription) *apiError) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	s, ok := e.bill.subs.get(id)
	if !ok {
		return opError(op, missing("subscription", id))
	}
	return opError(op+" "+id, fn(s))
}

// CancelSubscription cancels a subscription now (DELETE
// /v1/subscriptions/{id}).
func (e *Emulator) CancelSubscription(id string) error {
	return e.subOp("cancel subscription", id, func(s *subscription) *apiError {
		return e.cancelNowLocked(s, "", "", eventRequestJSON{})
	})
}

// SetCancelAtPeriodEnd sets or clears cancel_at_period_end.
func (e *Emulator) SetCancelAtPeriodEnd(id string, cancel bool) error {
	return e.subOp("set cancel_at_period_end", id, func(s *subscription) *apiError {
		return e.updateSubscriptionLocked(s, subUpdate{cancelAtPeriodEnd: &cancel}, eventRequestJSON{})
	})
}

// ChangePrice moves a one-item subscription to another recurring price,
// with proration "none", "create_prorations" or "always_invoice" (empty
// means none).
func (e *Emulator) ChangePrice(id, priceID, proration string) error {
	return e.subOp("change price", id, func(s *subscription) *apiError {
		if len(s.items) != 1 {
			return invalid("items", "", "ChangePrice needs a subscription with one item (it has %d).", len(s.items))
		}
		proration = orDefault(proration, "none")
		if ae := oneOf("proration_behavior", proration, []string{"always_invoice", "create_prorations", "none"}); ae != nil {
			return ae
		}
		u := subUpdate{items: []itemChange{{id: s.items[0].id, price: priceID}}, proration: proration}
		return e.updateSubscriptionLocked(s, u, eventRequestJSON{})
	})
}

// SetTrialEnd moves the end of a trialing subscription's trial to t (in
// the future), or ends it now when t is zero, which invoices at once.
func (e *Emulator) SetTrialEnd(id string, t time.Time) error {
	return e.subOp("set trial end", id, func(s *subscription) *apiError {
		u := subUpdate{trialEndNow: t.IsZero()}
		if !t.IsZero() {
			u.trialEnd = t.Unix()
		}
		return e.updateSubscriptionLocked(s, u, eventRequestJSON{})
	})
}

// PauseCollection sets pause_collection (behavior keep_as_draft,
// mark_uncollectible or void; resumesAt may be zero), or clears it when
// behavior is empty. The subscription stays active.
func (e *Emulator) PauseCollection(id, behavior string, resumesAt time.Time) error {
	return e.subOp("pause collection", id, func(s *subscription) *apiError {
		u := subUpdate{unpause: behavior == ""}
		if behavior != "" {
			if ae := oneOf("pause_collection[behavior]", behavior, []string{"keep_as_draft", "mark_uncollectible", "void"}); ae != nil {
				return ae
			}
			u.pause = &pauseCollectionJSON{Behavior: behavior}
			if !resumesAt.IsZero() {
				at := resumesAt.Unix()
				u.pause.ResumesAt = &at
			}
		}
		return e.updateSubscriptionLocked(s, u, eventRequestJSON{})
	})
}

// Resume resumes a paused subscription (POST
// /v1/subscriptions/{id}/resume): a new cycle starts now and is charged.
func (e *Emulator) Resume(id string) error {
	return e.subOp("resume", id, func(s *subscription) *apiError {
		return e.resumeLocked(s, eventRequestJSON{})
	})
}

// PayInvoice pays an invoice now with the customer's card, as the customer
// on the hosted invoice page does. A declined card returns an error
// matching ErrCardDeclined, after recording invoice.payment_failed.
func (e *Emulator) PayInvoice(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	inv, ok := e.bill.invoices.get(id)
	if !ok {
		return opError("pay invoice", missing("invoice", id))
	}
	return opError("pay invoice "+id, e.payInvoiceLocked(inv, false, eventRequestJSON{}))
}

// Subscription returns a copy of a subscription, latest_invoice expanded.
func (e *Emulator) Subscription(id string) (*stripe.Subscription, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	s, ok := e.bill.subs.get(id)
	if !ok {
		return nil, opError("subscription", missing("subscription", id))
	}
	return decodeAs[stripe.Subscription](e.renderSubscription(s, expander{"latest_invoice": true}))
}

// Subscriptions returns copies of every subscription, oldest first.
func (e *Emulator) Subscriptions() []*stripe.Subscription {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	out := make([]*stripe.Subscription, 0, len(e.bill.subs.items))
	for _, s := range e.bill.subs.items {
		if c, err := decodeAs[stripe.Subscription](e.renderSubscription(s, nil)); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// Invoice returns a copy of an invoice.
func (e *Emulator) Invoice(id string) (*stripe.Invoice, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	inv, ok := e.bill.invoices.get(id)
	if !ok {
		return nil, opError("invoice", missing("invoice", id))
	}
	return e.invoiceCopyLocked(inv)
}

// Invoices returns copies of the invoices of a subscription, or of every
// invoice when subscriptionID is empty, oldest first.
func (e *Emulator) Invoices(subscriptionID string) []*stripe.Invoice {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	src := e.bill.invoices.items
	if subscriptionID != "" {
		src = sortedSubset(e.bill.invoicesBySub[subscriptionID])
	}
	out := make([]*stripe.Invoice, 0, len(src))
	for _, inv := range src {
		if c, err := e.invoiceCopyLocked(inv); err == nil {
			out = append(out, c)
		}
	}
	return out
}
