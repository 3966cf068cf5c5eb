// Package mail renders and sends paymentd's emails. A Renderer turns a
// template name and a Data value into a Message: a subject, an HTML part with
// inline styles and a table layout in the brand's colours, and a plain-text
// part. The templates are embedded and any of them can be replaced from a
// directory. A Sender delivers a Message: SendGrid in production, a file
// Outbox in development and tests. Send errors follow the steps package's
// conventions, so a step handler can return them unchanged.
package mail

import "context"

// Brand is what the emails look like and who they are from.
type Brand struct {
	// ProductName is the name of the business or product line.
	ProductName string
	// FromAddress and FromName make up the sender mailbox.
	FromAddress string
	FromName    string
	// SupportEmail is where customers are told to write and where their
	// replies go.
	SupportEmail string
	// AdminEmail receives the admin and operator messages.
	AdminEmail string
	// PrimaryColor, BackgroundColor and TextColor are CSS colours (#rgb,
	// #rrggbb or a colour keyword); empty means a neutral default.
	PrimaryColor    string
	BackgroundColor string
	TextColor       string
	// LogoURL is an absolute image URL shown in the header; empty shows the
	// product name instead.
	LogoURL string
	// PricingURL is where a customer without a recovery link can buy again.
	PricingURL string
	// PublicURL is the daemon's public base URL, used for unsubscribe links.
	PublicURL string
}

// Message is a rendered email, ready for a Sender.
type Message struct {
	// From is the sender mailbox, e.g. `"Acme" <hello@acme.test>`.
	From string
	// ReplyTo is where replies go; empty means From.
	ReplyTo string
	// To is the single recipient address.
	To      string
	Subject string
	HTML    string
	Text    string
	// Headers are extra headers such as List-Unsubscribe.
	Headers map[string]string
	// Category is the template name, used for provider categories and
	// outbox file names.
	Category string
	// Marketing is true for follow-ups and checkout recovery: mail a
	// customer may unsubscribe from.
	Marketing bool
}

// Sender delivers a Message. The idempotency key identifies the logical
// send across retries. Errors follow the steps package: steps.Permanent for
// failures a retry cannot fix, steps.RetryAfter when the provider says when
// to come back, and a plain error otherwise.
type Sender interface {
	Send(ctx context.Context, m Message, idempotencyKey string) error
}

// Data is everything a template may refer to; each template uses a subset.
// Besides the fields, templates may call money(amount, currency), which is
// FormatMoney, and firstName(name), the first word of a name.
type Data struct {
	// Brand is filled in by the Renderer.
	Brand Brand

	CustomerEmail string
	CustomerName  string
	// ProductName is the purchased product; empty means Brand.ProductName.
	ProductName string

	// Amount is in minor units of Currency (a lowercase or uppercase ISO
	// 4217 code).
	Amount   int64
	Currency string
	// RefundedAmount and OriginalAmount are in minor units of Currency.
	RefundedAmount int64
	OriginalAmount int64
	// AccessRevoked tells admin_refund whether product access was removed.
	AccessRevoked bool

	RepoURL        string
	GitHubUsername string
	// AccessDetails is free-form text on how to use the product, shown in
	// access_granted.
	AccessDetails string
	// RecoveryURL is a Stripe checkout recovery link; empty means
	// Brand.PricingURL.
	RecoveryURL string

	PurchaseID      string
	StepName        string
	LastError       string
	StripeSessionID string
	StripeChargeID  string
	DisputeID       string
	Reason          string

	// CreditsBalance and CreditsThreshold are a credit balance and the
	// low-balance threshold it fell below (credits_low).
	CreditsBalance   int64
	CreditsThreshold int64

	// UnsubscribeURL is set by the Renderer for marketing messages.
	UnsubscribeURL string

	// Subscriptions: PlanName is the price's name (its lookup key when it
	// has none) and PreviousPlan the one before a change; Interval is
	// "month", "year" or "3 months"; dates are formatted for reading
	// (FormatDate). Amount is per interval, or the invoice's amount.
	SubscriptionID string
	PlanName       string
	PreviousPlan   string
	Interval       string
	TrialEnd       string
	EndsAt         string
	InvoiceNumber  string
	InvoiceURL     string
	PeriodStart    string
	PeriodEnd      string
	// An order (a cart's checkout): its lines and totals in minor units of
	// Currency (Amount is the total), the code the buyer used, and where a
	// buyer whose card was declined tries another (RetryURL).
	OrderID       string
	Lines         []Line
	Subtotal      int64
	Discount      int64
	Tax           int64
	PromotionCode string
	RetryURL      string
}

// Line is one line of an order: Amount is what it costs after its share
// of the discount, before tax, in minor units of the order's currency.
type Line struct {
	Name       string
	Quantity   int
	UnitAmount int64
	Amount     int64
}

// Template names.
const (
	PurchaseConfirmation = "purchase_confirmation"
	AdminPurchase        = "admin_purchase"
	AccessGranted        = "access_granted"
	FollowupOnboarding   = "followup_onboarding"
	FollowupFeedback     = "followup_feedback"
	FollowupTestimonial  = "followup_testimonial"
	RefundFull           = "refund_full"
	RefundPartial        = "refund_partial"
	AdminRefund          = "admin_refund"
	AbandonedCheckout    = "abandoned_checkout"
	AsyncPaymentFailed   = "async_payment_failed"
	OperatorAlert        = "operator_alert"
	DisputeOpened        = "dispute_opened"
	RefundReversed       = "refund_reversed"
	OrderConfirmation    = "order_confirmation"
	AdminOrder           = "admin_order"
	OrderPaymentFailed   = "order_payment_failed"

	// The subscription lifecycle.
	SubscriptionStarted      = "subscription_started"
	AdminSubscriptionStarted = "admin_subscription_started"
	TrialEnding              = "trial_ending"
	InvoiceReceipt           = "invoice_receipt"
	PaymentFailed            = "payment_failed"
	PaymentReminder          = "payment_reminder"
	SubscriptionCanceling    = "subscription_canceling"
	SubscriptionResumed      = "subscription_resumed"
	SubscriptionEnded        = "subscription_ended"
	AdminSubscriptionEnded   = "admin_subscription_ended"
	PlanChanged              = "plan_changed"
	CreditsLow               = "credits_low"
)

// audience says who receives a template.
type audience int

const (
	toCustomer audience = iota
	toAdmin
)

// spec describes one template.
type spec struct {
	name      string
	audience  audience
	marketing bool
}

// catalog lists every template in a stable order.
func catalog() []spec {
	return []spec{
		{PurchaseConfirmation, toCustomer, false},
		{AdminPurchase, toAdmin, false},
		{AccessGranted, toCustomer, false},
		{FollowupOnboarding, toCustomer, true},
		{FollowupFeedback, toCustomer, true},
		{FollowupTestimonial, toCustomer, true},
		{RefundFull, toCustomer, false},
		{RefundPartial, toCustomer, false},
		{AdminRefund, toAdmin, false},
		{AbandonedCheckout, toCustomer, true},
		{AsyncPaymentFailed, toCustomer, false},
		{OperatorAlert, toAdmin, false},
		{DisputeOpened, toAdmin, false},
		{RefundReversed, toAdmin, false},
		{OrderConfirmation, toCustomer, false},
		{AdminOrder, toAdmin, false},
		{OrderPaymentFailed, toCustomer, false},
		{SubscriptionStarted, toCustomer, false},
		{AdminSubscriptionStarted, toAdmin, false},
		{TrialEnding, toCustomer, false},
		{InvoiceReceipt, toCustomer, false},
		{PaymentFailed, toCustomer, false},
		{PaymentReminder, toCustomer, false},
		{SubscriptionCanceling, toCustomer, false},
		{SubscriptionResumed, toCustomer, false},
		{SubscriptionEnded, toCustomer, false},
		{AdminSubscriptionEnded, toAdmin, false},
		{PlanChanged, toCustomer, false},
		{CreditsLow, toCustomer, false},
	}
}

// Names returns every template name in a stable order.
func Names() []string {
	specs := catalog()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	return names
}

// IsMarketing reports whether the named template is marketing mail, which
// carries an unsubscribe link and should not go to suppressed addresses.
func IsMarketing(name string) bool {
	for _, s := range catalog() {
		if s.name == name {
			return s.marketing
		}
	}
	return false
}
