// Stripe objects: the state the emulator keeps for each kind and its JSON
// rendering in the 2023-10-16 API shapes. Each state struct embeds its wire
// struct; references to other objects are kept as ids and rendered either as
// the id string or, when expanded, as the full object.

package stripeemu

import (
	"encoding/json"
	"maps"
)

// feature is a product marketing feature.
type feature struct {
	Name string `json:"name"`
}

// productJSON is a Stripe product.
type productJSON struct {
	ID                  string            `json:"id"`
	Object              string            `json:"object"`
	Active              bool              `json:"active"`
	Created             int64             `json:"created"`
	DefaultPrice        any               `json:"default_price"`
	Description         *string           `json:"description"`
	Features            []feature         `json:"features"`
	MarketingFeatures   []feature         `json:"marketing_features"`
	Images              []string          `json:"images"`
	Livemode            bool              `json:"livemode"`
	Metadata            map[string]string `json:"metadata"`
	Name                string            `json:"name"`
	PackageDimensions   any               `json:"package_dimensions"`
	Shippable           any               `json:"shippable"`
	StatementDescriptor any               `json:"statement_descriptor"`
	TaxCode             any               `json:"tax_code"`
	Type                string            `json:"type"`
	UnitLabel           any               `json:"unit_label"`
	Updated             int64             `json:"updated"`
	URL                 any               `json:"url"`
}

// product is a stored product.
type product struct{ productJSON }

func (p *product) sortKey() (int64, string) { return p.Created, p.ID }

func (p *product) render() any { return p.productJSON }

// priceJSON is a Stripe one-time price.
type priceJSON struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Active            bool              `json:"active"`
	BillingScheme     string            `json:"billing_scheme"`
	Created           int64             `json:"created"`
	Currency          string            `json:"currency"`
	CustomUnitAmount  any               `json:"custom_unit_amount"`
	Livemode          bool              `json:"livemode"`
	LookupKey         *string           `json:"lookup_key"`
	Metadata          map[string]string `json:"metadata"`
	Nickname          *string           `json:"nickname"`
	Product           any               `json:"product"`
	Recurring         any               `json:"recurring"`
	TaxBehavior       string            `json:"tax_behavior"`
	TiersMode         any               `json:"tiers_mode"`
	TransformQuantity any               `json:"transform_quantity"`
	Type              string            `json:"type"`
	UnitAmount        int64             `json:"unit_amount"`
	UnitAmountDecimal string            `json:"unit_amount_decimal"`
}

// price is a stored price.
type price struct {
	priceJSON
	productID string
	lookupKey string
}

func (p *price) sortKey() (int64, string) { return p.Created, p.ID }

// renderPrice renders a price, expanding product if asked.
func (e *Emulator) renderPrice(p *price, x expander) any {
	w := p.priceJSON
	w.LookupKey = optString(p.lookupKey)
	w.Product = p.productID
	if x.has("product") {
		if pr, ok := e.products.get(p.productID); ok {
			w.Product = pr.render()
		}
	}
	return w
}

// customerJSON is a Stripe customer.
type customerJSON struct {
	ID                  string            `json:"id"`
	Object              string            `json:"object"`
	Address             any               `json:"address"`
	Balance             int64             `json:"balance"`
	Created             int64             `json:"created"`
	Currency            any               `json:"currency"`
	DefaultSource       any               `json:"default_source"`
	Delinquent          bool              `json:"delinquent"`
	Description         any               `json:"description"`
	Discount            any               `json:"discount"`
	Email               *string           `json:"email"`
	InvoicePrefix       string            `json:"invoice_prefix"`
	InvoiceSettings     map[string]any    `json:"invoice_settings"`
	Livemode            bool              `json:"livemode"`
	Metadata            map[string]string `json:"metadata"`
	Name                *string           `json:"name"`
	NextInvoiceSequence int64             `json:"next_invoice_sequence"`
	Phone               any               `json:"phone"`
	PreferredLocales    []string          `json:"preferred_locales"`
	Shipping            any               `json:"shipping"`
	TaxExempt           string            `json:"tax_exempt"`
	TestClock           any               `json:"test_clock"`
}

// customer is a stored customer.
type customer struct{ customerJSON }

func (c *customer) sortKey() (int64, string) { return c.Created, c.ID }

func (c *customer) render() any { return c.customerJSON }

// recoveryJSON is after_expiration.recovery of a session.
type recoveryJSON struct {
	AllowPromotionCodes bool    `json:"allow_promotion_codes"`
	Enabled             bool    `json:"enabled"`
	ExpiresAt           *int64  `json:"expires_at"`
	URL                 *string `json:"url"`
}

// afterExpirationJSON is a session's after_expiration.
type afterExpirationJSON struct {
	Recovery *recoveryJSON `json:"recovery"`
}

// consentJSON is the consent a customer gave at checkout.
type consentJSON struct {
	Promotions     *string `json:"promotions"`
	TermsOfService *string `json:"terms_of_service"`
}

// consentCollectionJSON is what consent a session collects.
type consentCollectionJSON struct {
	PaymentMethodReuseAgreement any    `json:"payment_method_reuse_agreement"`
	Promotions                  string `json:"promotions"`
	TermsOfService              string `json:"terms_of_service"`
}

// customerDetailsJSON is a session's customer_details.
type customerDetailsJSON struct {
	Address   any     `json:"address"`
	Email     *string `json:"email"`
	Name      *string `json:"name"`
	Phone     any     `json:"phone"`
	TaxExempt string  `json:"tax_exempt"`
	TaxIDs    []any   `json:"tax_ids"`
}

// totalDetailsJSON is a session's total_details; breakdown only when
// expanded (tax.go).
type totalDetailsJSON struct {
	AmountDiscount int64 `json:"amount_discount"`
	AmountShipping int64 `json:"amount_shipping"`
	AmountTax      int64 `json:"amount_tax"`
	Breakdown      any   `json:"breakdown,omitempty"`
}

// sessionJSON is a Stripe Checkout Session in payment mode.
type sessionJSON struct {
	ID                                string                 `json:"id"`
	Object                            string                 `json:"object"`
	AfterExpiration                   *afterExpirationJSON   `json:"after_expiration"`
	AllowPromotionCodes               *bool                  `json:"allow_promotion_codes"`
	AmountSubtotal                    int64                  `json:"amount_subtotal"`
	AmountTotal                       int64                  `json:"amount_total"`
	AutomaticTax                      map[string]any         `json:"automatic_tax"`
	BillingAddressCollection          any                    `json:"billing_address_collection"`
	CancelURL                         *string                `json:"cancel_url"`
	ClientReferenceID                 *string                `json:"client_reference_id"`
	ClientSecret                      any                    `json:"client_secret"`
	Consent                           *consentJSON           `json:"consent"`
	ConsentCollection                 *consentCollectionJSON `json:"consent_collection"`
	Created                           int64                  `json:"created"`
	Currency                          string                 `json:"currency"`
	CurrencyConversion                any                    `json:"currency_conversion"`
	CustomFields                      []any                  `json:"custom_fields"`
	CustomText                        map[string]any         `json:"custom_text"`
	Customer                          any                    `json:"customer"`
	CustomerCreation                  string                 `json:"customer_creation"`
	CustomerDetails                   *customerDetailsJSON   `json:"customer_details"`
	CustomerEmail                     *string                `json:"customer_email"`
	ExpiresAt                         int64                  `json:"expires_at"`
	Invoice                           any                    `json:"invoice"`
	InvoiceCreation                   map[string]any         `json:"invoice_creation"`
	LineItems                         any                    `json:"line_items,omitempty"`
	Livemode                          bool                   `json:"livemode"`
	Locale                            any                    `json:"locale"`
	Metadata                          map[string]string      `json:"metadata"`
	Mode                              string                 `json:"mode"`
	PaymentIntent                     any                    `json:"payment_intent"`
	PaymentLink                       *string                `json:"payment_link"`
	PaymentMethodCollection           string                 `json:"payment_method_collection"`
	PaymentMethodConfigurationDetails any                    `json:"payment_method_configuration_details"`
	PaymentMethodOptions              map[string]any         `json:"payment_method_options"`
	PaymentMethodTypes                []string               `json:"payment_method_types"`
	PaymentStatus                     string                 `json:"payment_status"`
	PhoneNumberCollection             map[string]any         `json:"phone_number_collection"`
	RecoveredFrom                     *string                `json:"recovered_from"`
	SetupIntent                       any                    `json:"setup_intent"`
	ShippingAddressCollection         any                    `json:"shipping_address_collection"`
	ShippingCost                      any                    `json:"shipping_cost"`
	ShippingDetails                   any                    `json:"shipping_details"`
	ShippingOptions                   []any                  `json:"shipping_options"`
	Status                            string                 `json:"status"`
	SubmitType                        any                    `json:"submit_type"`
	Subscription                      any                    `json:"subscription"`
	SuccessURL                        *string                `json:"success_url"`
	TotalDetails                      totalDetailsJSON       `json:"total_details"`
	UIMode                            string                 `json:"ui_mode"`
	URL                               *string                `json:"url"`
}

// lineItem is one line of a session. Its tax (automatic tax only) is
// included in amountSubtotal when taxInclusive, else added on top.
type lineItem struct {
	id             string
	priceID        string
	description    string
	quantity       int64
	amountSubtotal int64
	amountDiscount int64
	amountTax      int64
	taxInclusive   bool
}

// session is a stored Checkout Session.
type session struct {
	sessionJSON
	customerID  string
	intentID    string
	lineItems   []lineItem
	spec        sessionSpec // the creation request, reused for recovery
	async       bool        // paid with a delayed payment method
	recoveredBy string      // session created from this one's recovery URL
	discountID  string      // di_ id of the session's discount, if any
	taxPercent  int64       // automatic tax rate, hundredths of a percent
}

func (s *session) sortKey() (int64, string) { return s.Created, s.ID }

// renderSession renders a session; payment_intent, customer and line_items
// are expandable.
func (e *Emulator) renderSession(s *session, x expander) any {
	w := s.sessionJSON
	if s.Status == "open" {
		u := e.baseURL + "/checkout/" + s.ID
		w.URL = &u
	}
	if ae := s.AfterExpiration; ae != nil && ae.Recovery != nil {
		rec := *ae.Recovery
		if s.Status == "expired" && rec.Enabled && rec.ExpiresAt != nil && e.nowUnix() < *rec.ExpiresAt {
			u := e.baseURL + "/checkout/recover/" + s.ID
			rec.URL = &u
		}
		w.AfterExpiration = &afterExpirationJSON{Recovery: &rec}
	}
	w.Customer = e.ref(s.customerID, x, "customer", func(id string, sub expander) any {
		if c, ok := e.customers.get(id); ok {
			return c.render()
		}
		return nil
	})
	w.PaymentIntent = e.ref(s.intentID, x, "payment_intent", func(id string, sub expander) any {
		if pi, ok := e.intents.get(id); ok {
			return e.renderIntent(pi, sub)
		}
		return nil
	})
	if x.has("line_items") {
		w.LineItems = e.renderLineItems(s, x.sub("line_items"))
	}
	if x.sub("total_details").has("breakdown") {
		w.TotalDetails.Breakdown = e.renderBreakdown(s)
	}
	return w
}

// renderLineItems renders a session's expanded line_items: the first page
// of ten, as Stripe embeds lists (GET .../line_items pages through all);
// the price inside each is always expanded, as on Stripe.
func (e *Emulator) renderLineItems(s *session, x expander) listJSON {
	items, more := s.lineItems, false
	if len(items) > embeddedListLimit {
		items, more = items[:embeddedListLimit], true
	}
	return renderList("/v1/checkout/sessions/"+s.ID+"/line_items", items, more, func(li lineItem) any {
		return e.renderLineItem(s, li, x.sub("data"))
	})
}

// ref renders a reference: nil when id is empty, the expanded object when
// field is in x, the id otherwise.
func (e *Emulator) ref(id string, x expander, field string, expand func(id string, sub expander) any) any {
	if id == "" {
		return nil
	}
	if x.has(field) {
		if v := expand(id, x.sub(field)); v != nil {
			return v
		}
	}
	return id
}

// paymentErrorJSON is a payment intent's last_payment_error; a declined
// card also names the charge, the decline code and the payment method.
type paymentErrorJSON struct {
	Charge        string `json:"charge,omitempty"`
	Code          string `json:"code"`
	DeclineCode   string `json:"decline_code,omitempty"`
	DocURL        string `json:"doc_url,omitempty"`
	Message       string `json:"message"`
	PaymentMethod any    `json:"payment_method,omitempty"`
	Type          string `json:"type"`
}

// intentJSON is a Stripe payment intent.
type intentJSON struct {
	ID                        string            `json:"id"`
	Object                    string            `json:"object"`
	Amount                    int64             `json:"amount"`
	AmountCapturable          int64             `json:"amount_capturable"`
	AmountDetails             map[string]any    `json:"amount_details"`
	AmountReceived            int64             `json:"amount_received"`
	Application               any               `json:"application"`
	ApplicationFeeAmount      any               `json:"application_fee_amount"`
	AutomaticPaymentMethods   any               `json:"automatic_payment_methods"`
	CanceledAt                any               `json:"canceled_at"`
	CancellationReason        any               `json:"cancellation_reason"`
	CaptureMethod             string            `json:"capture_method"`
	ClientSecret              string            `json:"client_secret"`
	ConfirmationMethod        string            `json:"confirmation_method"`
	Created                   int64             `json:"created"`
	Currency                  string            `json:"currency"`
	Customer                  any               `json:"customer"`
	Description               *string           `json:"description"`
	Invoice                   any               `json:"invoice"`
	LastPaymentError          *paymentErrorJSON `json:"last_payment_error"`
	LatestCharge              any               `json:"latest_charge"`
	Livemode                  bool              `json:"livemode"`
	Metadata                  map[string]string `json:"metadata"`
	NextAction                any               `json:"next_action"`
	OnBehalfOf                any               `json:"on_behalf_of"`
	PaymentMethod             *string           `json:"payment_method"`
	PaymentMethodOptions      map[string]any    `json:"payment_method_options"`
	PaymentMethodTypes        []string          `json:"payment_method_types"`
	Processing                any               `json:"processing"`
	ReceiptEmail              *string           `json:"receipt_email"`
	Review                    any               `json:"review"`
	SetupFutureUsage          any               `json:"setup_future_usage"`
	Shipping                  any               `json:"shipping"`
	StatementDescriptor       any               `json:"statement_descriptor"`
	StatementDescriptorSuffix any               `json:"statement_descriptor_suffix"`
	Status                    string            `json:"status"`
	TransferData              any               `json:"transfer_data"`
	TransferGroup             any               `json:"transfer_group"`
}

// paymentIntent is a stored payment intent. flow is set on intents
// created through the API (intents.go), not on Checkout's or invoices'.
type paymentIntent struct {
	intentJSON
	customerID string
	chargeID   string
	sessionID  string
	flow       *intentFlow
}

func (p *paymentIntent) sortKey() (int64, string) { return p.Created, p.ID }

// renderIntent renders a payment intent; latest_charge and customer are
// expandable.
func (e *Emulator) renderIntent(p *paymentIntent, x expander) any {
	w := p.intentJSON
	w.Customer = e.ref(p.customerID, x, "customer", func(id string, _ expander) any {
		if c, ok := e.customers.get(id); ok {
			return c.render()
		}
		return nil
	})
	w.LatestCharge = e.ref(p.chargeID, x, "latest_charge", func(id string, sub expander) any {
		if ch, ok := e.charges.get(id); ok {
			return e.renderCharge(ch, sub)
		}
		return nil
	})
	return w
}

// chargeJSON is a Stripe charge.
type chargeJSON struct {
	ID                            string            `json:"id"`
	Object                        string            `json:"object"`
	Amount                        int64             `json:"amount"`
	AmountCaptured                int64             `json:"amount_captured"`
	AmountRefunded                int64             `json:"amount_refunded"`
	Application                   any               `json:"application"`
	ApplicationFee                any               `json:"application_fee"`
	ApplicationFeeAmount          any               `json:"application_fee_amount"`
	BalanceTransaction            any               `json:"balance_transaction"`
	BillingDetails                map[string]any    `json:"billing_details"`
	CalculatedStatementDescriptor string            `json:"calculated_statement_descriptor"`
	Captured                      bool              `json:"captured"`
	Created                       int64             `json:"created"`
	Currency                      string            `json:"currency"`
	Customer                      any               `json:"customer"`
	Description                   any               `json:"description"`
	Disputed                      bool              `json:"disputed"`
	FailureBalanceTransaction     any               `json:"failure_balance_transaction"`
	FailureCode                   *string           `json:"failure_code"`
	FailureMessage                *string           `json:"failure_message"`
	FraudDetails                  map[string]any    `json:"fraud_details"`
	Invoice                       any               `json:"invoice"`
	Livemode                      bool              `json:"livemode"`
	Metadata                      map[string]string `json:"metadata"`
	OnBehalfOf                    any               `json:"on_behalf_of"`
	Outcome                       map[string]any    `json:"outcome"`
	Paid                          bool              `json:"paid"`
	PaymentIntent                 any               `json:"payment_intent"`
	PaymentMethod                 string            `json:"payment_method"`
	PaymentMethodDetails          map[string]any    `json:"payment_method_details"`
	ReceiptEmail                  *string           `json:"receipt_email"`
	ReceiptNumber                 any               `json:"receipt_number"`
	ReceiptURL                    string            `json:"receipt_url"`
	Refunded                      bool              `json:"refunded"`
	Refunds                       *listJSON         `json:"refunds,omitempty"`
	Review                        any               `json:"review"`
	Shipping                      any               `json:"shipping"`
	SourceTransfer                any               `json:"source_transfer"`
	StatementDescriptor           any               `json:"statement_descriptor"`
	StatementDescriptorSuffix     any               `json:"statement_descriptor_suffix"`
	Status                        string            `json:"status"`
	TransferData                  any               `json:"transfer_data"`
	TransferGroup                 any               `json:"transfer_group"`
}

// charge is a stored charge.
type charge struct {
	chargeJSON
	customerID string
	intentID   string
}

func (c *charge) sortKey() (int64, string) { return c.Created, c.ID }

// renderCharge renders a charge; refunds (a list), payment_intent and
// customer are expandable.
func (e *Emulator) renderCharge(c *charge, x expander) any {
	w := c.chargeJSON
	w.Customer = e.ref(c.customerID, x, "customer", func(id string, _ expander) any {
		if cu, ok := e.customers.get(id); ok {
			return cu.render()
		}
		return nil
	})
	w.PaymentIntent = e.ref(c.intentID, x, "payment_intent", func(id string, sub expander) any {
		if pi, ok := e.intents.get(id); ok {
			return e.renderIntent(pi, sub)
		}
		return nil
	})
	if x.has("refunds") {
		rs := sortedSubset(e.refundsByCharge[c.ID])
		slicesReverse(rs)
		sub := x.sub("refunds")
		l := renderList("/v1/charges/"+c.ID+"/refunds", rs, false, func(r *refund) any { return e.renderRefund(r, sub.sub("data")) })
		w.Refunds = &l
	}
	return w
}

// refundJSON is a Stripe refund.
type refundJSON struct {
	ID                     string            `json:"id"`
	Object                 string            `json:"object"`
	Amount                 int64             `json:"amount"`
	BalanceTransaction     any               `json:"balance_transaction"`
	Charge                 any               `json:"charge"`
	Created                int64             `json:"created"`
	Currency               string            `json:"currency"`
	FailureReason          string            `json:"failure_reason,omitempty"`
	Metadata               map[string]string `json:"metadata"`
	PaymentIntent          any               `json:"payment_intent"`
	Reason                 *string           `json:"reason"`
	ReceiptNumber          any               `json:"receipt_number"`
	SourceTransferReversal any               `json:"source_transfer_reversal"`
	Status                 string            `json:"status"`
	TransferReversal       any               `json:"transfer_reversal"`
}

// refund is a stored refund.
type refund struct {
	refundJSON
	chargeID string
	intentID string
}

func (r *refund) sortKey() (int64, string) { return r.Created, r.ID }

// renderRefund renders a refund; charge and payment_intent are expandable.
func (e *Emulator) renderRefund(r *refund, x expander) any {
	w := r.refundJSON
	w.Charge = e.ref(r.chargeID, x, "charge", func(id string, sub expander) any {
		if c, ok := e.charges.get(id); ok {
			return e.renderCharge(c, sub)
		}
		return nil
	})
	w.PaymentIntent = e.ref(r.intentID, x, "payment_intent", func(id string, sub expander) any {
		if pi, ok := e.intents.get(id); ok {
			return e.renderIntent(pi, sub)
		}
		return nil
	})
	return w
}

// evidenceDetailsJSON is a dispute's evidence_details.
type evidenceDetailsJSON struct {
	DueBy           int64 `json:"due_by"`
	HasEvidence     bool  `json:"has_evidence"`
	PastDue         bool  `json:"past_due"`
	SubmissionCount int64 `json:"submission_count"`
}

// disputeJSON is a Stripe dispute.
type disputeJSON struct {
	ID                   string              `json:"id"`
	Object               string              `json:"object"`
	Amount               int64               `json:"amount"`
	BalanceTransactions  []any               `json:"balance_transactions"`
	Charge               any                 `json:"charge"`
	Created              int64               `json:"created"`
	Currency             string              `json:"currency"`
	Evidence             map[string]any      `json:"evidence"`
	EvidenceDetails      evidenceDetailsJSON `json:"evidence_details"`
	IsChargeRefundable   bool                `json:"is_charge_refundable"`
	Livemode             bool                `json:"livemode"`
	Metadata             map[string]string   `json:"metadata"`
	PaymentIntent        any                 `json:"payment_intent"`
	PaymentMethodDetails map[string]any      `json:"payment_method_details"`
	Reason               string              `json:"reason"`
	Status               string              `json:"status"`
}

// dispute is a stored dispute.
type dispute struct {
	disputeJSON
	chargeID string
	intentID string
}

func (d *dispute) sortKey() (int64, string) { return d.Created, d.ID }

// renderDispute renders a dispute; charge and payment_intent are expandable.
func (e *Emulator) renderDispute(d *dispute, x expander) any {
	w := d.disputeJSON
	w.Charge = e.ref(d.chargeID, x, "charge", func(id string, sub expander) any {
		if c, ok := e.charges.get(id); ok {
			return e.renderCharge(c, sub)
		}
		return nil
	})
	w.PaymentIntent = e.ref(d.intentID, x, "payment_intent", func(id string, sub expander) any {
		if pi, ok := e.intents.get(id); ok {
			return e.renderIntent(pi, sub)
		}
		return nil
	})
	return w
}

// eventRequestJSON is an event's request: the API request that caused it,
// or nulls for changes made by the emulator's Go operations.
type eventRequestJSON struct {
	ID             *string `json:"id"`
	IdempotencyKey *string `json:"idempotency_key"`
}

// eventDataJSON is an event's data: a snapshot of the object.
type eventDataJSON struct {
	Object             json.RawMessage `json:"object"`
	PreviousAttributes map[string]any  `json:"previous_attributes,omitempty"`
}

// eventJSON is a Stripe event.
type eventJSON struct {
	ID              string           `json:"id"`
	Object          string           `json:"object"`
	APIVersion      string           `json:"api_version"`
	Created         int64            `json:"created"`
	Data            eventDataJSON    `json:"data"`
	Livemode        bool             `json:"livemode"`
	PendingWebhooks int64            `json:"pending_webhooks"`
	Request         eventRequestJSON `json:"request"`
	Type            string           `json:"type"`
}

// event is a stored event with its encoded form, which is also the webhook
// payload.
type event struct {
	eventJSON
	raw json.RawMessage
}

func (v *event) sortKey() (int64, string) { return v.Created, v.ID }

// cloneMeta copies a metadata map, never returning nil.
func cloneMeta(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	maps.Copy(out, m)
	return out
}

// slicesReverse reverses s in place.
func slicesReverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}
