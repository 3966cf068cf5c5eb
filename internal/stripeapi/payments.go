// Carts and embedded payments: the Stripe calls paymentd makes to sell
// several products in one order, through a multi-line Checkout Session
// (hosted) or a PaymentIntent paid on the storefront with Stripe Elements
// (embedded), and to tax such a cart. Like the rest of this package each is
// one method, exercised by the contract suite.
//
// API 2023-10-16 gives a PaymentIntent no automatic tax: an embedded cart
// is taxed with the Tax Calculations API (CreateTaxCalculation), charged
// the calculation's amount_total, and recorded once paid as a tax
// transaction (CreateTaxTransaction), which a refund reverses
// (ReverseTaxTransaction). Stripe Tax reports count only transactions.

package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// PaymentIntentEventTypes are the payment intent events paymentd acts on
// for embedded carts, kept apart from EventTypes so the purchase reconciler
// is unchanged by them. Each is a hint: the intent is re-read from Stripe.
// payment_intent.created (paymentd made it) and .requires_action (the
// buyer's browser handles it; nothing changes for the order) add nothing.
// Refunds and disputes of these payments arrive as the charge.* events of
// EventTypes.
//
// One events list request takes at most MaxEventTypesPerList types, and
// EventTypes with SubscriptionEventTypes already fill it: these need a
// request of their own, or one shared with EventTypes alone.
var PaymentIntentEventTypes = []string{
	"payment_intent.succeeded",
	"payment_intent.payment_failed",
	"payment_intent.canceled",
	"payment_intent.processing",
}

// UsesPaymentIntentEventType reports whether t is one of
// PaymentIntentEventTypes.
func UsesPaymentIntentEventType(t string) bool { return slices.Contains(PaymentIntentEventTypes, t) }

// --- payment intents ---

// PaymentIntentRequest is a PaymentIntent for an embedded cart. Automatic
// payment methods are always on: the storefront's Payment Element offers
// what the account enables, and Stripe.js handles 3-D Secure and
// redirects.
type PaymentIntentRequest struct {
	// Amount in Currency's minor units: the cart's total, tax included.
	Amount   int64
	Currency string
	// CustomerID is the buyer's Stripe customer, if any.
	CustomerID string
	// Metadata links the intent to paymentd: order_id, user_id.
	Metadata     map[string]string
	Description  string
	ReceiptEmail string
}

// CreatePaymentIntent creates a PaymentIntent; its client_secret goes to
// the storefront.
func (a *API) CreatePaymentIntent(ctx context.Context, r PaymentIntentRequest, idempotencyKey string) (*stripe.PaymentIntent, error) {
	if r.Amount <= 0 || r.Currency == "" {
		return nil, fmt.Errorf("create payment intent: amount (%d) must be positive and currency (%q) set", r.Amount, r.Currency)
	}
	p := &stripe.PaymentIntentParams{
		Amount: stripe.Int64(r.Amount), Currency: stripe.String(strings.ToLower(r.Currency)),
		AutomaticPaymentMethods: &stripe.PaymentIntentAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)},
	}
	if r.CustomerID != "" {
		p.Customer = stripe.String(r.CustomerID)
	}
	if r.Description != "" {
		p.Description = stripe.String(r.Description)
	}
	if r.ReceiptEmail != "" {
		p.ReceiptEmail = stripe.String(r.ReceiptEmail)
	}
	for k, v := range r.Metadata {
		p.AddMetadata(k, v)
	}
	p.Context = ctx
	if idempotencyKey != "" {
		p.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.PaymentIntents.New(p)
}

// PaymentIntentUpdate changes an intent the buyer has not paid yet (Stripe
// refuses a new amount once it is processing or paid). Zero fields are
// left alone; Metadata is merged, an empty value deleting its key.
type PaymentIntentUpdate struct {
	Amount      int64
	Metadata    map[string]string
	Description string
}

// UpdatePaymentIntent applies u to the intent id.
func (a *API) UpdatePaymentIntent(ctx context.Context, id string, u PaymentIntentUpdate, idempotencyKey string) (*stripe.PaymentIntent, error) {
	if u.Amount < 0 {
		return nil, fmt.Errorf("update payment intent %s: negative amount %d", id, u.Amount)
	}
	p := &stripe.PaymentIntentParams{}
	if u.Amount > 0 {
		p.Amount = stripe.Int64(u.Amount)
	}
	if u.Description != "" {
		p.Description = stripe.String(u.Description)
	}
	for k, v := range u.Metadata {
		p.AddMetadata(k, v)
	}
	p.Context = ctx
	if idempotencyKey != "" {
		p.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.PaymentIntents.Update(id, p)
}

// CancellationReasons are the reasons CancelPaymentIntent passes on.
var CancellationReasons = []string{"abandoned", "duplicate", "fraudulent", "requested_by_customer"}

// CancelPaymentIntent cancels an intent that is not processing or paid;
// reason is one of CancellationReasons, or "".
func (a *API) CancelPaymentIntent(ctx context.Context, id, reason string) (*stripe.PaymentIntent, error) {
	p := &stripe.PaymentIntentCancelParams{}
	if reason != "" {
		if !slices.Contains(CancellationReasons, reason) {
			return nil, fmt.Errorf("cancel payment intent %s: unknown reason %q", id, reason)
		}
		p.CancellationReason = stripe.String(reason)
	}
	p.Context = ctx
	return a.sc.PaymentIntents.Cancel(id, p)
}

// ListPaymentIntents calls fn for every payment intent created at or after
// since, a page of PageSize at a time, newest first. It includes those
// Checkout and invoices create, which paymentd tells apart by metadata.
func (a *API) ListPaymentIntents(ctx context.Context, since time.Time, fn func(*stripe.PaymentIntent) error) error {
	p := &stripe.PaymentIntentListParams{}
	p.Context = ctx
	p.Limit = stripe.Int64(PageSize)
	p.CreatedRange = createdSince(since)
	it := a.sc.PaymentIntents.List(p)
	for it.Next() {
		if err := fn(it.PaymentIntent()); err != nil {
			return err
		}
	}
	return it.Err()
}

// PaymentIntentsByMetadata returns the payment intents whose metadata key
// holds value, through Stripe's search. Search lags writes (usually by
// under a minute): it finds an intent whose creation paymentd did not get
// to record, for recovery; it cannot replace remembering the id.
func (a *API) PaymentIntentsByMetadata(ctx context.Context, key, value string) ([]*stripe.PaymentIntent, error) {
	if !metadataKey.MatchString(key) || value == "" || strings.ContainsAny(value, `'\`) {
		return nil, fmt.Errorf("search payment intents: unsupported metadata key %q or value %q", key, value)
	}
	p := &stripe.PaymentIntentSearchParams{SearchParams: stripe.SearchParams{Query: fmt.Sprintf("metadata['%s']:'%s'", key, value)}}
	p.Context = ctx
	p.Limit = stripe.Int64(PageSize)
	var out []*stripe.PaymentIntent
	it := a.sc.PaymentIntents.Search(p)
	for it.Next() {
		out = append(out, it.PaymentIntent())
	}
	return out, it.Err()
}

// --- carts through Checkout ---

// CartLine is one line of a cart: a price and how many.
type CartLine struct {
	PriceID  string
	Quantity int64
}

// CartCheckoutRequest is a payment-mode Checkout Session for a cart, one
// line item per cart line.
type CartCheckoutRequest struct {
	Lines      []CartLine
	SuccessURL string // carries {CHECKOUT_SESSION_ID}
	CancelURL  string
	// Metadata links the session and its payment intent to paymentd:
	// order_id, user_id.
	Metadata          map[string]string
	ClientReferenceID string
	// CustomerID reuses the buyer's Stripe customer; without one,
	// CustomerEmail prefills the email. They are exclusive.
	CustomerID    string
	CustomerEmail string
	// PromotionCode is the id (promo_...) of the cart's promotion code.
	// Without one, AllowPromotionCodes lets the buyer enter a code on
	// Stripe's page (the order then takes the discount Stripe reports).
	PromotionCode       string
	AllowPromotionCodes bool
	// AutomaticTax turns on Stripe Tax for the session.
	AutomaticTax bool
	// ExpiresAt ends the session (and the stock reserved for it) early:
	// between 30 minutes and 24 hours from now; zero is Stripe's 24 hours.
	ExpiresAt time.Time
	// ConsentPromotions asks the buyer for consent to promotional email.
	ConsentPromotions bool
}

// MaxCartLines is the most line items one payment-mode session takes.
const MaxCartLines = 100

// CreateCartCheckoutSession creates a Checkout Session for a cart.
func (a *API) CreateCartCheckoutSession(ctx context.Context, r CartCheckoutRequest, idempotencyKey string) (*stripe.CheckoutSession, error) {
	switch {
	case len(r.Lines) == 0 || len(r.Lines) > MaxCartLines:
		return nil, fmt.Errorf("create cart checkout session: %d lines (1 to %d)", len(r.Lines), MaxCartLines)
	case r.CustomerID != "" && r.CustomerEmail != "":
		return nil, errors.New("create cart checkout session: customer and customer email are exclusive")
	}
	p := &stripe.CheckoutSessionParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModePayment)),
		SuccessURL:        stripe.String(r.SuccessURL),
		CancelURL:         stripe.String(r.CancelURL),
		PaymentIntentData: &stripe.CheckoutSessionPaymentIntentDataParams{Metadata: r.Metadata},
	}
	for i, l := range r.Lines {
		if l.PriceID == "" || l.Quantity < 1 {
			return nil, fmt.Errorf("create cart checkout session: line %d has price %q and quantity %d", i, l.PriceID, l.Quantity)
		}
		p.LineItems = append(p.LineItems, &stripe.CheckoutSessionLineItemParams{Price: stripe.String(l.PriceID), Quantity: stripe.Int64(l.Quantity)})
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
	switch {
	case r.PromotionCode != "":
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(r.PromotionCode)}}
	case r.AllowPromotionCodes:
		p.AllowPromotionCodes = stripe.Bool(true)
	}
	if r.AutomaticTax {
		p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
	}
	if !r.ExpiresAt.IsZero() {
		p.ExpiresAt = stripe.Int64(r.ExpiresAt.Unix())
	}
	if r.ConsentPromotions {
		p.ConsentCollection = &stripe.CheckoutSessionConsentCollectionParams{Promotions: stripe.String("auto")}
	}
	p.Context = ctx
	if idempotencyKey != "" {
		p.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.CheckoutSessions.New(p)
}

// ListCheckoutSessionLineItems calls fn for every line item of a session,
// in order, a page of PageSize at a time: each with its price, quantity and
// amounts (subtotal, discount, tax, total) as Stripe computed them.
func (a *API) ListCheckoutSessionLineItems(ctx context.Context, sessionID string, fn func(*stripe.LineItem) error) error {
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

// --- Stripe Tax for embedded carts ---

// TaxLine is a cart line to tax: its total after discount, in minor units.
type TaxLine struct {
	// Reference names the line in tax reports (the cart line's product
	// key); unique within a calculation.
	Reference string
	Amount    int64
	Quantity  int64
	// Inclusive means Amount already contains the tax.
	Inclusive bool
	// TaxCode is the product tax code (txcd_...); empty is the account's
	// default.
	TaxCode string
}

// TaxAddress is where the buyer is taxed.
type TaxAddress struct {
	Line1, Line2, City, State, PostalCode string
	// Country is a two-letter ISO code.
	Country string
}

// TaxCalculationRequest is a cart to tax for a buyer, located by Address
// (with AddressSource billing or shipping), by IPAddress, or by the
// CustomerID's own address.
type TaxCalculationRequest struct {
	Currency      string
	Lines         []TaxLine
	CustomerID    string
	Address       *TaxAddress
	AddressSource string
	IPAddress     string
}

// CreateTaxCalculation calculates the tax of a cart and returns it with
// every line item (fetching beyond the first page when there are more).
// It records nothing: a calculation becomes a sale only through
// CreateTaxTransaction.
func (a *API) CreateTaxCalculation(ctx context.Context, r TaxCalculationRequest, idempotencyKey string) (*stripe.TaxCalculation, error) {
	if len(r.Lines) == 0 || r.Currency == "" {
		return nil, fmt.Errorf("create tax calculation: %d lines in %q", len(r.Lines), r.Currency)
	}
	p := &stripe.TaxCalculationParams{Currency: stripe.String(strings.ToLower(r.Currency))}
	for _, l := range r.Lines {
		li := &stripe.TaxCalculationLineItemParams{Amount: stripe.Int64(l.Amount), Quantity: stripe.Int64(max(l.Quantity, 1)),
			TaxBehavior: stripe.String("exclusive")}
		if l.Inclusive {
			li.TaxBehavior = stripe.String("inclusive")
		}
		if l.Reference != "" {
			li.Reference = stripe.String(l.Reference)
		}
		if l.TaxCode != "" {
			li.TaxCode = stripe.String(l.TaxCode)
		}
		p.LineItems = append(p.LineItems, li)
	}
	if r.CustomerID != "" {
		p.Customer = stripe.String(r.CustomerID)
	}
	if r.Address != nil || r.IPAddress != "" {
		p.CustomerDetails = &stripe.TaxCalculationCustomerDetailsParams{}
		if r.IPAddress != "" {
			p.CustomerDetails.IPAddress = stripe.String(r.IPAddress)
		}
		if ad := r.Address; ad != nil {
			p.CustomerDetails.AddressSource = stripe.String(r.AddressSource)
			p.CustomerDetails.Address = &stripe.AddressParams{Country: stripe.String(ad.Country), Line1: optional(ad.Line1),
				Line2: optional(ad.Line2), City: optional(ad.City), State: optional(ad.State), PostalCode: optional(ad.PostalCode)}
		}
	}
	p.AddExpand("line_items")
	p.Context = ctx
	if idempotencyKey != "" {
		p.SetIdempotencyKey(idempotencyKey)
	}
	calc, err := a.sc.TaxCalculations.New(p)
	if err != nil || calc.LineItems == nil || !calc.LineItems.HasMore || len(calc.LineItems.Data) == 0 {
		return calc, err
	}
	lp := &stripe.TaxCalculationListLineItemsParams{Calculation: stripe.String(calc.ID)}
	lp.Context = ctx
	lp.Limit = stripe.Int64(PageSize)
	lp.StartingAfter = stripe.String(calc.LineItems.Data[len(calc.LineItems.Data)-1].ID)
	it := a.sc.TaxCalculations.ListLineItems(lp)
	for it.Next() {
		calc.LineItems.Data = append(calc.LineItems.Data, it.TaxCalculationLineItem())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list tax calculation line items: %w", err)
	}
	calc.LineItems.HasMore = false
	return calc, nil
}

// optional is s as an optional parameter: nil when empty.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// CreateTaxTransaction records a paid cart's tax from its calculation.
// reference (the payment intent id, say) is unique across all of the
// account's transactions: Stripe refuses it a second time, so a retry must
// reuse the idempotency key.
func (a *API) CreateTaxTransaction(ctx context.Context, calculationID, reference string, metadata map[string]string, idempotencyKey string) (*stripe.TaxTransaction, error) {
	p := &stripe.TaxTransactionCreateFromCalculationParams{Calculation: stripe.String(calculationID), Reference: stripe.String(reference)}
	for k, v := range metadata {
		p.AddMetadata(k, v)
	}
	p.Context = ctx
	if idempotencyKey != "" {
		p.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.TaxTransactions.CreateFromCalculation(p)
}

// ReverseTaxTransaction records a refund against a tax transaction:
// amount (minor units, taxes included) spread over its lines, or all that
// remains of it when amount is zero. reference (the refund id, say) is
// unique across transactions.
func (a *API) ReverseTaxTransaction(ctx context.Context, transactionID, reference string, amount int64, idempotencyKey string) (*stripe.TaxTransaction, error) {
	if amount < 0 {
		return nil, fmt.Errorf("reverse tax transaction %s: negative amount %d", transactionID, amount)
	}
	p := &stripe.TaxTransactionCreateReversalParams{OriginalTransaction: stripe.String(transactionID), Reference: stripe.String(reference),
		Mode: stripe.String("full")}
	if amount > 0 {
		p.Mode, p.FlatAmount = stripe.String("partial"), stripe.Int64(-amount)
	}
	p.Context = ctx
	if idempotencyKey != "" {
		p.SetIdempotencyKey(idempotencyKey)
	}
	return a.sc.TaxTransactions.CreateReversal(p)
}
