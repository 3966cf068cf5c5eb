// Subscriptions: the Stripe calls paymentd makes to sell and reconcile
// them: recurring prices, subscription-mode Checkout Sessions, customers,
// subscriptions, invoices and billing portal sessions. Like the rest of
// this package each is one method, exercised by the contract suite.

package stripeapi

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// SubscriptionEventTypes are the event types of the subscription lifecycle
// paymentd acts on, kept apart from EventTypes so the purchase reconciler
// is unchanged by them. Each is a hint: the subscription, invoice or
// customer is re-read from Stripe. customer.subscription.trial_will_end,
// invoice.payment_succeeded (the same moment as invoice.paid) and
// invoice.upcoming (a preview without an id) add nothing to that and are
// left out, which keeps EventTypes plus these within the 20 types one
// events list request accepts.
var SubscriptionEventTypes = []string{
	"customer.subscription.created",
	"customer.subscription.updated",
	"customer.subscription.deleted",
	"customer.subscription.paused",
	"customer.subscription.resumed",
	"invoice.created",
	"invoice.finalized",
	"invoice.paid",
	"invoice.payment_failed",
	"invoice.voided",
	"invoice.marked_uncollectible",
	"customer.updated",
}

// UsesSubscriptionEventType reports whether t is one of
// SubscriptionEventTypes.
func UsesSubscriptionEventType(t string) bool { return slices.Contains(SubscriptionEventTypes, t) }

// FeedEventTypes are the types the events feed reads in one request:
// EventTypes and SubscriptionEventTypes, which fit within
// MaxEventTypesPerList together (a test checks).
func FeedEventTypes() []string {
	return append(append([]string{}, EventTypes...), SubscriptionEventTypes...)
}

// MaxEventTypesPerList is how many types one GET /v1/events accepts.
const MaxEventTypesPerList = 20

// --- catalog ---

// RecurringPriceSpec is a recurring price for a product, found by its
// lookup key.
type RecurringPriceSpec struct {
	PriceSpec
	// Interval is day, week, month or year; IntervalCount (default 1)
	// bills every that many intervals.
	Interval      string
	IntervalCount int64
}

// CreateRecurringPrice creates a recurring price.
func (a *API) CreateRecurringPrice(ctx context.Context, p RecurringPriceSpec, idempotencyKey string) (*stripe.Price, error) {
	params := &stripe.PriceParams{
		Product: stripe.String(p.ProductID), UnitAmount: stripe.Int64(p.Amount), Currency: stripe.String(p.Currency),
		LookupKey: stripe.String(p.LookupKey),
		Recurring: &stripe.PriceRecurringParams{Interval: stripe.String(p.Interval), IntervalCount: stripe.Int64(max(p.IntervalCount, 1))},
	}
	if p.Nickname != "" {
		params.Nickname = stripe.String(p.Nickname)
	}
	if p.TransferLookupKey {
		params.TransferLookupKey = stripe.Bool(true)
	}
	params.Context = ctx
	if idempotencyKey != "" {
		params.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.Prices.New(params)
}

// --- checkout ---

// SubscriptionCheckoutRequest is a subscription-mode Checkout Session to
// create.
type SubscriptionCheckoutRequest struct {
	PriceID    string
	Quantity   int64
	SuccessURL string // carries {CHECKOUT_SESSION_ID}
	CancelURL  string
	// Metadata goes on the session; SubscriptionMetadata on the
	// subscription it creates (Stripe does not copy one to the other).
	Metadata             map[string]string
	SubscriptionMetadata map[string]string
	ClientReferenceID    string
	// CustomerID reuses the user's Stripe customer; without one,
	// CustomerEmail prefills the email of the customer Checkout creates.
	CustomerID    string
	CustomerEmail string
	// TrialDays starts the subscription with a trial.
	TrialDays int64
	// PromotionCodeID (promo_...) applies a promotion code; without one,
	// the customer may enter codes on the page.
	PromotionCodeID string
}

// CreateSubscriptionCheckoutSession creates a Checkout Session in
// subscription mode.
func (a *API) CreateSubscriptionCheckoutSession(ctx context.Context, r SubscriptionCheckoutRequest, idempotencyKey string) (*stripe.CheckoutSession, error) {
	if r.CustomerID != "" && r.CustomerEmail != "" {
		return nil, fmt.Errorf("create subscription checkout session: customer and customer email are exclusive")
	}
	p := &stripe.CheckoutSessionParams{
		Mode:       stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(r.PriceID), Quantity: stripe.Int64(max(r.Quantity, 1))}},
		SuccessURL: stripe.String(r.SuccessURL),
		CancelURL:  stripe.String(r.CancelURL),
		SubscriptionData: &stripe.CheckoutSessionSubscriptionDataParams{
			Metadata: r.SubscriptionMetadata,
		},
	}
	if r.TrialDays > 0 {
		p.SubscriptionData.TrialPeriodDays = stripe.Int64(r.TrialDays)
	}
	if r.ClientReferenceID != "" {
		p.ClientReferenceID = stripe.String(r.ClientReferenceID)
	}
	if r.CustomerID != "" {
		p.Customer = stripe.String(r.CustomerID)
	}
	if r.CustomerEmail != "" {
		p.CustomerEmail = stripe.String(r.CustomerEmail)
	}
	for k, v := range r.Metadata {
		p.AddMetadata(k, v)
	}
	if r.PromotionCodeID != "" {
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(r.PromotionCodeID)}}
	} else {
		p.AllowPromotionCodes = stripe.Bool(true)
	}
	p.Context = ctx
	if idempotencyKey != "" {
		p.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.CheckoutSessions.New(p)
}

// --- customers ---

// CustomerSpec is a customer's email, name and metadata. On update, empty
// fields are left alone and metadata keys are merged.
type CustomerSpec struct {
	Email, Name string
	Metadata    map[string]string
}

func (c CustomerSpec) params() *stripe.CustomerParams {
	p := &stripe.CustomerParams{}
	if c.Email != "" {
		p.Email = stripe.String(c.Email)
	}
	if c.Name != "" {
		p.Name = stripe.String(c.Name)
	}
	for k, v := range c.Metadata {
		p.AddMetadata(k, v)
	}
	return p
}

// CreateCustomer creates a customer. Pass an idempotency key derived from
// the user so a retry cannot create a second customer.
func (a *API) CreateCustomer(ctx context.Context, c CustomerSpec, idempotencyKey string) (*stripe.Customer, error) {
	p := c.params()
	p.Context = ctx
	if idempotencyKey != "" {
		p.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.Customers.New(p)
}

// Customer retrieves a customer.
func (a *API) Customer(ctx context.Context, id string) (*stripe.Customer, error) {
	p := &stripe.CustomerParams{}
	p.Context = ctx
	return a.sc.Customers.Get(id, p)
}

// UpdateCustomer changes a customer's email, name or metadata.
func (a *API) UpdateCustomer(ctx context.Context, id string, c CustomerSpec) (*stripe.Customer, error) {
	p := c.params()
	p.Context = ctx
	return a.sc.Customers.Update(id, p)
}

// CustomersByEmail calls fn for every customer whose email is exactly
// email (Stripe's list filter is case-sensitive), newest first.
func (a *API) CustomersByEmail(ctx context.Context, email string, fn func(*stripe.Customer) error) error {
	p := &stripe.CustomerListParams{Email: stripe.String(email)}
	p.Context = ctx
	p.Limit = stripe.Int64(PageSize)
	it := a.sc.Customers.List(p)
	for it.Next() {
		if err := fn(it.Customer()); err != nil {
			return err
		}
	}
	return it.Err()
}

// metadataKey is what a metadata key in a search query may hold.
var metadataKey = regexp.MustCompile(`^[A-Za-z0-9_\-]{1,40}$`)

// CustomersByMetadata returns the customers whose metadata key holds
// value, through Stripe's search. Search lags writes (usually by under a
// minute), so it finds customers made earlier, for recovery and backfill;
// it cannot replace remembering the customer id.
func (a *API) CustomersByMetadata(ctx context.Context, key, value string) ([]*stripe.Customer, error) {
	if !metadataKey.MatchString(key) || value == "" || strings.ContainsAny(value, `'\`) {
		return nil, fmt.Errorf("search customers: unsupported metadata key %q or value %q", key, value)
	}
	p := &stripe.CustomerSearchParams{SearchParams: stripe.SearchParams{Query: fmt.Sprintf("metadata['%s']:'%s'", key, value)}}
	p.Context = ctx
	p.Limit = stripe.Int64(PageSize)
	var out []*stripe.Customer
	it := a.sc.Customers.Search(p)
	for it.Next() {
		out = append(out, it.Customer())
	}
	return out, it.Err()
}

// --- subscriptions and invoices ---

// Subscription retrieves a subscription with its latest invoice expanded.
func (a *API) Subscription(ctx context.Context, id string) (*stripe.Subscription, error) {
	p := &stripe.SubscriptionParams{}
	p.Context = ctx
	p.AddExpand("latest_invoice")
	return a.sc.Subscriptions.Get(id, p)
}

// ListSubscriptions calls fn for every subscription created at or after
// since (every one when since is zero) in any status, canceled included
// (Stripe omits those without status=all), with latest invoices expanded,
// a page of PageSize at a time, newest first.
func (a *API) ListSubscriptions(ctx context.Context, since time.Time, fn func(*stripe.Subscription) error) error {
	p := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	p.Context = ctx
	p.Limit = stripe.Int64(PageSize)
	if !since.IsZero() {
		p.CreatedRange = createdSince(since)
	}
	p.AddExpand("data.latest_invoice")
	it := a.sc.Subscriptions.List(p)
	for it.Next() {
		if err := fn(it.Subscription()); err != nil {
			return err
		}
	}
	return it.Err()
}

// Invoice retrieves an invoice.
func (a *API) Invoice(ctx context.Context, id string) (*stripe.Invoice, error) {
	p := &stripe.InvoiceParams{}
	p.Context = ctx
	return a.sc.Invoices.Get(id, p)
}

// ListInvoices calls fn for every invoice created at or after since (every
// one when since is zero), newest first.
func (a *API) ListInvoices(ctx context.Context, since time.Time, fn func(*stripe.Invoice) error) error {
	p := &stripe.InvoiceListParams{}
	if !since.IsZero() {
		p.CreatedRange = createdSince(since)
	}
	return a.listInvoices(ctx, p, fn)
}

// SubscriptionInvoices calls fn for every invoice of a subscription,
// newest first.
func (a *API) SubscriptionInvoices(ctx context.Context, subscriptionID string, fn func(*stripe.Invoice) error) error {
	return a.listInvoices(ctx, &stripe.InvoiceListParams{Subscription: stripe.String(subscriptionID)}, fn)
}

func (a *API) listInvoices(ctx context.Context, p *stripe.InvoiceListParams, fn func(*stripe.Invoice) error) error {
	p.Context = ctx
	p.Limit = stripe.Int64(PageSize)
	it := a.sc.Invoices.List(p)
	for it.Next() {
		if err := fn(it.Invoice()); err != nil {
			return err
		}
	}
	return it.Err()
}

// --- billing portal ---

// CreatePortalSession creates a billing portal session for a customer; the
// customer returns to returnURL (empty: the portal's default).
func (a *API) CreatePortalSession(ctx context.Context, customerID, returnURL string) (*stripe.BillingPortalSession, error) {
	p := &stripe.BillingPortalSessionParams{Customer: stripe.String(customerID)}
	if returnURL != "" {
		p.ReturnURL = stripe.String(returnURL)
	}
	p.Context = ctx
	return a.sc.BillingPortalSessions.New(p)
}
