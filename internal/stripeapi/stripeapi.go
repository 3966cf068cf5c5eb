// Package stripeapi is the one door between paymentd and Stripe: every
// Stripe request the project makes is a method here, so the contract suite
// can run each of them against stripe-mock and know it covered them all.
// It speaks stripe-go types and passes the caller's context on every call.
package stripeapi

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// API wraps a stripe-go client (see internal/stripeclient).
type API struct {
	sc *client.API
}

// New wraps sc.
func New(sc *client.API) *API { return &API{sc: sc} }

// EventTypes are the Stripe event types paymentd uses; every other type is
// acknowledged and ignored.
var EventTypes = []string{
	"checkout.session.completed",
	"checkout.session.async_payment_succeeded",
	"checkout.session.async_payment_failed",
	"checkout.session.expired",
	"charge.refunded",
	"charge.refund.updated",
	"charge.dispute.created",
	"charge.dispute.closed",
}

// UsesEventType reports whether paymentd acts on events of type t.
func UsesEventType(t string) bool { return slices.Contains(EventTypes, t) }

// EventRef is what a webhook hint keeps of an event body: its id, its type
// and the id of the object it names. Decoding only these reads no map of
// the payload.
type EventRef struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		Object struct {
			ID string `json:"id"`
		} `json:"object"`
	} `json:"data"`
}

// Acts reports whether paymentd acts on events of type t in any of its
// lists: purchases, subscriptions or PaymentIntents.
func Acts(t string) bool {
	return UsesEventType(t) || UsesSubscriptionEventType(t) || UsesPaymentIntentEventType(t)
}

// PageSize is the page size of every listing (Stripe's maximum).
const PageSize = 100

// --- catalog ---

// PricesByLookupKeys returns the active prices holding the given lookup
// keys, with their products expanded.
func (a *API) PricesByLookupKeys(ctx context.Context, keys []string) ([]*stripe.Price, error) {
	params := &stripe.PriceListParams{LookupKeys: stripe.StringSlice(keys), Active: stripe.Bool(true)}
	params.Context = ctx
	params.Limit = stripe.Int64(PageSize)
	params.AddExpand("data.product")
	var out []*stripe.Price
	it := a.sc.Prices.List(params)
	for it.Next() {
		out = append(out, it.Price())
	}
	return out, it.Err()
}

// ProductSpec is a product as config.yaml describes it.
type ProductSpec struct {
	Key, Name, Description string
	Features               []string
}

func (p ProductSpec) params() *stripe.ProductParams {
	params := &stripe.ProductParams{Name: stripe.String(p.Name)}
	if p.Description != "" {
		params.Description = stripe.String(p.Description)
	}
	for _, f := range p.Features {
		params.Features = append(params.Features, &stripe.ProductFeatureParams{Name: stripe.String(f)})
	}
	params.AddMetadata("paymentd_product_key", p.Key)
	return params
}

// CreateProduct creates a product.
func (a *API) CreateProduct(ctx context.Context, p ProductSpec, idempotencyKey string) (*stripe.Product, error) {
	params := p.params()
	params.Context = ctx
	if idempotencyKey != "" {
		params.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.Products.New(params)
}

// UpdateProduct sets a product's name, description and features.
func (a *API) UpdateProduct(ctx context.Context, id string, p ProductSpec) (*stripe.Product, error) {
	params := p.params()
	params.Context = ctx
	return a.sc.Products.Update(id, params)
}

// PriceSpec is a one-time price for a product, found by its lookup key.
type PriceSpec struct {
	ProductID, LookupKey, Currency, Nickname string
	Amount                                   int64 // minor units
	// TransferLookupKey moves the lookup key from the price holding it.
	TransferLookupKey bool
}

// CreatePrice creates a price.
func (a *API) CreatePrice(ctx context.Context, p PriceSpec, idempotencyKey string) (*stripe.Price, error) {
	params := &stripe.PriceParams{
		Product: stripe.String(p.ProductID), UnitAmount: stripe.Int64(p.Amount), Currency: stripe.String(p.Currency),
		LookupKey: stripe.String(p.LookupKey),
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

// DeactivatePrice archives a price so no new checkout can use it.
func (a *API) DeactivatePrice(ctx context.Context, id string) (*stripe.Price, error) {
	p := &stripe.PriceParams{Active: stripe.Bool(false)}
	p.Context = ctx
	return a.sc.Prices.Update(id, p)
}

// --- checkout ---

// CheckoutRequest is a one-time-payment Checkout Session to create.
type CheckoutRequest struct {
	PriceID    string
	Quantity   int64
	SuccessURL string // carries {CHECKOUT_SESSION_ID}
	CancelURL  string
	// Metadata links the session to paymentd: user_id, product, purchase_id.
	Metadata          map[string]string
	ClientReferenceID string
	CustomerEmail     string
	// PromotionCode is the id (promo_...) of a promotion code found with
	// ActivePromotionCodes; without one, the buyer may enter a code on
	// Stripe's page. There is deliberately no way to pass a coupon id: an
	// internal coupon (say 100% off) must never be reachable from a client.
	PromotionCode string
	// ConsentPromotions asks the buyer for consent to promotional email
	// (required for abandoned-checkout emails in some jurisdictions).
	ConsentPromotions bool
	// Recovery enables Stripe's recovery URL once the session expires.
	Recovery bool
}

// CreateCheckoutSession creates a Checkout Session in payment mode.
func (a *API) CreateCheckoutSession(ctx context.Context, r CheckoutRequest, idempotencyKey string) (*stripe.CheckoutSession, error) {
	p := &stripe.CheckoutSessionParams{
		Mode:       stripe.String(string(stripe.CheckoutSessionModePayment)),
		LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(r.PriceID), Quantity: stripe.Int64(r.Quantity)}},
		SuccessURL: stripe.String(r.SuccessURL),
		CancelURL:  stripe.String(r.CancelURL),
	}
	if r.ClientReferenceID != "" {
		p.ClientReferenceID = stripe.String(r.ClientReferenceID)
	}
	if r.CustomerEmail != "" {
		p.CustomerEmail = stripe.String(r.CustomerEmail)
	}
	for k, v := range r.Metadata {
		p.AddMetadata(k, v)
	}
	p.PaymentIntentData = &stripe.CheckoutSessionPaymentIntentDataParams{Metadata: r.Metadata}
	if r.PromotionCode != "" {
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(r.PromotionCode)}}
	} else {
		p.AllowPromotionCodes = stripe.Bool(true)
	}
	if r.ConsentPromotions {
		p.ConsentCollection = &stripe.CheckoutSessionConsentCollectionParams{Promotions: stripe.String("auto")}
	}
	if r.Recovery {
		p.AfterExpiration = &stripe.CheckoutSessionAfterExpirationParams{
			Recovery: &stripe.CheckoutSessionAfterExpirationRecoveryParams{Enabled: stripe.Bool(true)},
		}
	}
	p.Context = ctx
	if idempotencyKey != "" {
		p.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.CheckoutSessions.New(p)
}

// promotionCodePage bounds the active promotion codes one code can match:
// Stripe keeps an active code unique per customer, so more than a few
// means codes restricted to customers, which paymentd's sessions never
// carry.
const promotionCodePage = 10

// ActivePromotionCodes returns the active promotion codes whose code is
// code, compared regardless of case as Stripe does, with their coupons.
// Stripe still enforces a code's restrictions when the session is created.
func (a *API) ActivePromotionCodes(ctx context.Context, code string) ([]*stripe.PromotionCode, error) {
	p := &stripe.PromotionCodeListParams{Code: stripe.String(code), Active: stripe.Bool(true)}
	p.Context = ctx
	p.Limit = stripe.Int64(promotionCodePage)
	p.Single = true
	var out []*stripe.PromotionCode
	it := a.sc.PromotionCodes.List(p)
	for it.Next() {
		out = append(out, it.PromotionCode())
	}
	return out, it.Err()
}

// sessionExpansions are expanded on every session paymentd reads, so that
// one response says everything the reconciler needs: the line items (a
// Payment Link's product by its price's lookup key, the quantity), and the
// payment intent (an asynchronous payment's fate, and the time of the
// payment: Checkout creates the intent when the buyer pays). Stripe
// includes the first handful of line items; ListLineItems pages through
// the rest when has_more is set. The latest charge is left out: it would
// double the size of a page of sessions for a time the intent already
// gives within seconds.
var sessionExpansions = []string{"line_items", "payment_intent"}

// CheckoutSession retrieves a Checkout Session, its line items and its
// payment intent expanded.
func (a *API) CheckoutSession(ctx context.Context, id string) (*stripe.CheckoutSession, error) {
	p := &stripe.CheckoutSessionParams{}
	p.Context = ctx
	for _, x := range sessionExpansions {
		p.AddExpand(x)
	}
	return a.sc.CheckoutSessions.Get(id, p)
}

// CheckoutSessionsPage returns one page of the sessions created at or
// after since, newest first, starting after the session startingAfter (""
// for the first page), with the same expansions as CheckoutSession (no
// call per session), and whether more pages follow. The caller pages, so
// it can remember where it stands and fetch the next page while it writes
// this one.
func (a *API) CheckoutSessionsPage(ctx context.Context, since time.Time, startingAfter string) ([]*stripe.CheckoutSession, bool, error) {
	return a.sessionsPage(ctx, since, "", startingAfter)
}

// CompleteCheckoutSessionsPage is CheckoutSessionsPage for the sessions
// whose status is complete: how the reconciler reads a burst of payment
// hints a page at a time instead of one retrieve each.
func (a *API) CompleteCheckoutSessionsPage(ctx context.Context, since time.Time, startingAfter string) ([]*stripe.CheckoutSession, bool, error) {
	return a.sessionsPage(ctx, since, string(stripe.CheckoutSessionStatusComplete), startingAfter)
}

func (a *API) sessionsPage(ctx context.Context, since time.Time, status, startingAfter string) ([]*stripe.CheckoutSession, bool, error) {
	p := &stripe.CheckoutSessionListParams{CreatedRange: createdSince(since)}
	if status != "" {
		p.Status = stripe.String(status)
	}
	onePage(ctx, &p.ListParams, startingAfter)
	for _, x := range sessionExpansions {
		p.AddExpand("data." + x)
	}
	return pageOf[*stripe.CheckoutSession](a.sc.CheckoutSessions.List(p), nil)
}

// onePage makes lp ask for one page of PageSize, after the object
// startingAfter ("": the first page).
func onePage(ctx context.Context, lp *stripe.ListParams, startingAfter string) {
	lp.Context = ctx
	lp.Limit = stripe.Int64(PageSize)
	lp.Single = true
	if startingAfter != "" {
		lp.StartingAfter = stripe.String(startingAfter)
	}
}

// createdSince is the created filter of the objects created at or after t.
func createdSince(t time.Time) *stripe.RangeQueryParams {
	return &stripe.RangeQueryParams{GreaterThanOrEqual: t.Unix()}
}

// lister is a stripe-go list iterator.
type lister interface {
	Next() bool
	Current() interface{}
	Err() error
	Meta() *stripe.ListMeta
}

// pageOf reads the one page it lists, each object through keep when it is
// not nil, and whether more pages follow.
func pageOf[T any](it lister, keep func(T) T) ([]T, bool, error) {
	out := make([]T, 0, PageSize)
	for it.Next() {
		v := it.Current().(T)
		if keep != nil {
			v = keep(v)
		}
		out = append(out, v)
	}
	if err := it.Err(); err != nil {
		return nil, false, err
	}
	return out, it.Meta().HasMore, nil
}

// --- payments ---

// PaymentIntent retrieves a payment intent.
func (a *API) PaymentIntent(ctx context.Context, id string) (*stripe.PaymentIntent, error) {
	p := &stripe.PaymentIntentParams{}
	p.Context = ctx
	return a.sc.PaymentIntents.Get(id, p)
}

// Charge retrieves a charge with its refunds expanded (the first page of
// them; ChargeRefunds lists them all when has_more is set).
func (a *API) Charge(ctx context.Context, id string) (*stripe.Charge, error) {
	p := &stripe.ChargeParams{}
	p.Context = ctx
	p.AddExpand("refunds")
	return a.sc.Charges.Get(id, p)
}

// Refund retrieves a refund.
func (a *API) Refund(ctx context.Context, id string) (*stripe.Refund, error) {
	p := &stripe.RefundParams{}
	p.Context = ctx
	return a.sc.Refunds.Get(id, p)
}

// ChargeRefunds calls fn for every refund of a charge.
func (a *API) ChargeRefunds(ctx context.Context, chargeID string, fn func(*stripe.Refund) error) error {
	p := &stripe.RefundListParams{Charge: stripe.String(chargeID)}
	p.Context = ctx
	p.Limit = stripe.Int64(PageSize)
	it := a.sc.Refunds.List(p)
	for it.Next() {
		if err := fn(it.Refund()); err != nil {
			return err
		}
	}
	return it.Err()
}

// RefundsPage returns one page of the refunds created at or after since,
// newest first, starting after the refund startingAfter ("" for the first
// page), and whether more pages follow.
func (a *API) RefundsPage(ctx context.Context, since time.Time, startingAfter string) ([]*stripe.Refund, bool, error) {
	p := &stripe.RefundListParams{CreatedRange: createdSince(since)}
	onePage(ctx, &p.ListParams, startingAfter)
	return pageOf[*stripe.Refund](a.sc.Refunds.List(p), nil)
}

// Dispute retrieves a dispute.
func (a *API) Dispute(ctx context.Context, id string) (*stripe.Dispute, error) {
	p := &stripe.DisputeParams{}
	p.Context = ctx
	return a.sc.Disputes.Get(id, p)
}

// DisputesPage returns one page of the disputes created at or after
// since, newest first, starting after the dispute startingAfter ("" for
// the first page), and whether more pages follow.
func (a *API) DisputesPage(ctx context.Context, since time.Time, startingAfter string) ([]*stripe.Dispute, bool, error) {
	p := &stripe.DisputeListParams{CreatedRange: createdSince(since)}
	onePage(ctx, &p.ListParams, startingAfter)
	return pageOf[*stripe.Dispute](a.sc.Disputes.List(p), nil)
}

// --- events ---

// EventsAfter calls fn, oldest first, for every event of the types paymentd
// uses that is newer than the event afterID (which must be given: a feed
// without a cursor starts from EventsPage). Stripe lists newest first;
// paging backwards from the cursor with ending_before yields pages nearest
// the cursor first, each of which stripe-go reverses, so fn sees events in
// the order they happened and the caller can advance its cursor after each
// one.
func (a *API) EventsAfter(ctx context.Context, afterID string, fn func(*stripe.Event) error) error {
	return a.eventsAfter(ctx, FeedEventTypes(), afterID, fn)
}

// PaymentIntentEventsAfter is EventsAfter for PaymentIntentEventTypes, the
// feed of embedded orders (a list request takes too few types for both).
func (a *API) PaymentIntentEventsAfter(ctx context.Context, afterID string, fn func(*stripe.Event) error) error {
	return a.eventsAfter(ctx, PaymentIntentEventTypes, afterID, fn)
}

// EventsPage returns one page of the events of the types paymentd uses
// created at or after since, newest first, starting after the event
// startingAfter ("": the newest), and whether older ones follow. Events come
// with their identity only (id, type, created and data.object.id): a walk
// of thirty days keeps no payloads.
func (a *API) EventsPage(ctx context.Context, startingAfter string, since time.Time) ([]*stripe.Event, bool, error) {
	return a.eventsPage(ctx, FeedEventTypes(), startingAfter, since)
}

// PaymentIntentEventsPage is EventsPage for PaymentIntentEventTypes.
func (a *API) PaymentIntentEventsPage(ctx context.Context, startingAfter string, since time.Time) ([]*stripe.Event, bool, error) {
	return a.eventsPage(ctx, PaymentIntentEventTypes, startingAfter, since)
}

func (a *API) eventsPage(ctx context.Context, types []string, startingAfter string, since time.Time) ([]*stripe.Event, bool, error) {
	p := &stripe.EventListParams{Types: stripe.StringSlice(types), CreatedRange: createdSince(since)}
	onePage(ctx, &p.ListParams, startingAfter)
	return pageOf(a.sc.Events.List(p), eventIdentity)
}

func (a *API) eventsAfter(ctx context.Context, types []string, afterID string, fn func(*stripe.Event) error) error {
	if afterID == "" {
		return errors.New("list events after a cursor: no cursor")
	}
	cursor := afterID
	for {
		p := &stripe.EventListParams{Types: stripe.StringSlice(types)}
		p.Context = ctx
		p.Limit = stripe.Int64(PageSize)
		p.EndingBefore = stripe.String(cursor)
		p.Single = true // one page per request; we move the cursor ourselves
		it := a.sc.Events.List(p)
		var page []*stripe.Event
		for it.Next() {
			page = append(page, it.Event())
		}
		if err := it.Err(); err != nil {
			return err
		}
		// stripe-go hands a page listed with ending_before oldest first
		// already (it reverses Stripe's newest-first page).
		for _, ev := range page {
			if err := fn(ev); err != nil {
				return err
			}
		}
		if len(page) == 0 || !it.Meta().HasMore {
			return nil
		}
		cursor = page[len(page)-1].ID // the newest seen; the next page is newer still
	}
}

// ListLineItems calls fn for every line item of a session (its price is
// always included), for a session whose expanded line_items has more.
func (a *API) ListLineItems(ctx context.Context, sessionID string, fn func(*stripe.LineItem) error) error {
	p := &stripe.CheckoutSessionListLineItemsParams{Session: stripe.String(sessionID)}
	p.Context = ctx
	p.Limit = stripe.Int64(PageSize)
	it := a.sc.CheckoutSessions.ListLineItems(p)
	for it.Next() {
		if err := fn(it.LineItem()); err != nil {
			return err
		}
	}
	return it.Err()
}

// eventIdentity is ev without its payload: id, type, created and the
// object's id.
func eventIdentity(ev *stripe.Event) *stripe.Event {
	out := &stripe.Event{ID: ev.ID, Type: ev.Type, Created: ev.Created, Data: &stripe.EventData{Object: map[string]any{}}}
	if ev.Data != nil {
		if id, ok := ev.Data.Object["id"]; ok {
			out.Data.Object["id"] = id
		}
	}
	return out
}

// CheckoutSessionByPaymentIntent returns the session a payment intent paid
// for, or nil when no session did, with the same expansions as
// CheckoutSession.
func (a *API) CheckoutSessionByPaymentIntent(ctx context.Context, paymentIntentID string) (*stripe.CheckoutSession, error) {
	p := &stripe.CheckoutSessionListParams{PaymentIntent: stripe.String(paymentIntentID)}
	p.Context = ctx
	p.Limit = stripe.Int64(1)
	p.Single = true
	for _, x := range sessionExpansions {
		p.AddExpand("data." + x)
	}
	it := a.sc.CheckoutSessions.List(p)
	if it.Next() {
		return it.CheckoutSession(), nil
	}
	return nil, it.Err()
}
