// State transitions: creating, paying, settling and expiring Checkout
// Sessions, refunds and disputes. Each has a Go entry point for tests and the
// dev hosted page, and a *Locked core shared with the HTTP API; every change
// records the matching event, which is then delivered as a webhook.

package stripeemu

import (
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// ErrNotFound matches (with errors.Is) errors for an unknown id.
var ErrNotFound = errors.New("stripeemu: no such object")

// ErrInvalid matches (with errors.Is) errors for an operation Stripe would
// reject: wrong state, bad amount, bad parameters (not a declined card:
// see ErrCardDeclined).
var ErrInvalid = errors.New("stripeemu: invalid request")

// Is lets Go operation errors match ErrNotFound and ErrInvalid.
func (a *apiError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return a.Code == "resource_missing"
	case ErrInvalid:
		return a.Code != "resource_missing" && a.Code != "card_declined"
	case ErrCardDeclined:
		return a.Code == "card_declined"
	}
	return false
}

// opError wraps a core error for a Go operation, or returns nil.
func opError(op string, ae *apiError) error {
	if ae == nil {
		return nil
	}
	return fmt.Errorf("stripeemu: %s: %w", op, ae)
}

// LineItem is one line of a session created with CreateSession.
type LineItem struct {
	// Price is a price id.
	Price string
	// Quantity defaults to 1.
	Quantity int64
}

// SessionParams describes a Checkout Session created outside the API, such
// as one a customer opens from a Payment Link.
type SessionParams struct {
	// LineItems are the prices bought; at least one is required.
	LineItems []LineItem
	// CustomerEmail prefills the customer's email.
	CustomerEmail string
	// Metadata is the session's metadata; Payment Link sessions have none.
	Metadata map[string]string
	// ClientReferenceID is the session's client_reference_id.
	ClientReferenceID string
	// PaymentLink is the plink_ id reported as payment_link, if any.
	PaymentLink string
	// SuccessURL and CancelURL are where the hosted page redirects.
	SuccessURL, CancelURL string
	// Mode is payment (the default), setup or subscription. A setup-mode
	// session may have no line items; paying it charges nothing. (Only the
	// mode is modelled: a subscription-mode session is paid like a payment.)
	Mode string
}

// Pay describes how a customer pays a session.
type Pay struct {
	// Async pays with a delayed method: the session completes unpaid and
	// settles later through SettleAsync.
	Async bool
	// Email overrides the session's customer_email.
	Email string
	// Name is the customer's name.
	Name string
	// ConsentPromotions is "opt_in", "opt_out" or "" (not collected).
	ConsentPromotions string
	// Decline pays a subscription-mode session with a card that declines.
	Decline bool
	// NoPaymentMethod completes a trial without a card, where the session
	// allows it (payment_method_collection=if_required).
	NoPaymentMethod bool
}

// sessionSpec is a validated request to create a session.
type sessionSpec struct {
	items             []specItem
	successURL        string
	cancelURL         string
	customerEmail     string
	clientRef         string
	paymentLink       string
	metadata          map[string]string
	intentMetadata    map[string]string
	intentDescription string
	coupon            string
	promotionCode     string
	allowPromo        *bool
	consentPromotions string
	consentTOS        string
	recovery          bool
	recoveryPromo     bool
	expiresAt         int64
	recoveredFrom     string
	mode              string          // payment (the default) or subscription
	customer          string          // an existing customer to use
	sub               *subSessionSpec // subscription mode only
	automaticTax      bool            // automatic_tax[enabled]
}

// specItem is a requested line item.
type specItem struct {
	price    string
	quantity int64
}

// CreateSession creates an open Checkout Session without going through the
// API, as a Payment Link would. No event is recorded (Stripe has none for
// session creation).
func (e *Emulator) CreateSession(p SessionParams) (*stripe.CheckoutSession, error) {
	spec := sessionSpec{
		successURL: p.SuccessURL, cancelURL: p.CancelURL, customerEmail: p.CustomerEmail,
		clientRef: p.ClientReferenceID, paymentLink: p.PaymentLink, metadata: p.Metadata, mode: p.Mode,
	}
	switch p.Mode {
	case "", "payment", "setup", "subscription":
	default:
		return nil, opError("create session", invalid("mode", "", "Invalid mode %q: must be one of payment, setup or subscription.", p.Mode))
	}
	for _, li := range p.LineItems {
		q := li.Quantity
		if q == 0 {
			q = 1
		}
		spec.items = append(spec.items, specItem{price: li.Price, quantity: q})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ae := e.createSessionLocked(spec)
	if ae != nil {
		return nil, opError("create session", ae)
	}
	return e.sessionCopyLocked(s)
}

// createSessionLocked validates spec and stores a new open session.
func (e *Emulator) createSessionLocked(spec sessionSpec) (*session, *apiError) {
	if len(spec.items) == 0 && spec.mode != "setup" {
		return nil, invalid("line_items", "parameter_missing", "Missing required param: line_items.")
	}
	now := e.nowUnix()
	var currency string
	var subtotal int64
	items := make([]lineItem, 0, len(spec.items))
	for i, it := range spec.items {
		param := fmt.Sprintf("line_items[%d][price]", i)
		p, ok := e.prices.get(it.price)
		if !ok {
			return nil, invalid(param, "resource_missing", "No such price: '%s'", it.price)
		}
		if !p.Active {
			return nil, invalid(param, "", "The price specified is inactive. This field only accepts active prices.")
		}
		if it.quantity < 1 {
			return nil, invalid(fmt.Sprintf("line_items[%d][quantity]", i), "", "Quantity must be at least 1.")
		}
		if currency == "" {
			currency = p.Currency
		} else if p.Currency != currency {
			return nil, invalid(param, "", "All prices on a Checkout Session must have the same currency.")
		}
		desc := ""
		if pr, ok := e.products.get(p.productID); ok {
			desc = pr.Name
		}
		amt := p.UnitAmount * it.quantity
		subtotal += amt
		items = append(items, lineItem{id: e.newIDLocked("li_"), priceID: p.ID, description: desc, quantity: it.quantity, amountSubtotal: amt})
	}
	discount, ae := e.sessionDiscountLocked(spec, subtotal, currency)
	if ae != nil {
		return nil, ae
	}
	spreadDiscount(items, discount, subtotal)
	var taxExclusive, tax int64
	if spec.automaticTax {
		taxExclusive, tax = e.sessionTaxLocked(items)
	}
	expiresAt := now + int64((24 * time.Hour).Seconds())
	if spec.expiresAt != 0 {
		switch {
		case spec.expiresAt < now+int64((30*time.Minute).Seconds()):
			return nil, invalid("expires_at", "", "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.")
		case spec.expiresAt > expiresAt:
			return nil, invalid("expires_at", "", "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.")
		}
		expiresAt = spec.expiresAt
	}

	s := &session{lineItems: items}
	if spec.automaticTax {
		s.taxPercent = e.pay.tax.percentBP
	}
	if spec.coupon != "" || spec.promotionCode != "" {
		s.discountID = "di_" + e.newIDLocked("")[:24]
	}
	s.sessionJSON = sessionJSON{
		ID:                      e.newIDLocked("cs_test_"),
		Object:                  "checkout.session",
		AllowPromotionCodes:     spec.allowPromo,
		AmountSubtotal:          subtotal,
		AmountTotal:             subtotal - discount + taxExclusive,
		AutomaticTax:            sessionAutomaticTax(spec.automaticTax),
		CancelURL:               optString(spec.cancelURL),
		ClientReferenceID:       optString(spec.clientRef),
		Created:                 now,
		Currency:                currency,
		CustomFields:            []any{},
		CustomText:              map[string]any{"after_submit": nil, "shipping_address": nil, "submit": nil, "terms_of_service_acceptance": nil},
		CustomerCreation:        "if_required",
		CustomerEmail:           optString(spec.customerEmail),
		ExpiresAt:               expiresAt,
		InvoiceCreation:         map[string]any{"enabled": false, "invoice_data": map[string]any{"account_tax_ids": nil, "custom_fields": nil, "description": nil, "footer": nil, "issuer": nil, "metadata": map[string]string{}, "rendering_options": nil}},
		Metadata:                cloneMeta(spec.metadata),
		Mode:                    orDefault(spec.mode, "payment"),
		PaymentLink:             optString(spec.paymentLink),
		PaymentMethodCollection: "if_required",
		PaymentMethodOptions:    map[string]any{},
		PaymentMethodTypes:      []string{"card"},
		PaymentStatus:           "unpaid",
		PhoneNumberCollection:   map[string]any{"enabled": false},
		RecoveredFrom:           optString(spec.recoveredFrom),
		ShippingOptions:         []any{},
		Status:                  "open",
		SuccessURL:              optString(spec.successURL),
		TotalDetails:            totalDetailsJSON{AmountDiscount: discount, AmountTax: tax},
		UIMode:                  "hosted",
	}
	if spec.customerEmail != "" {
		s.CustomerDetails = &customerDetailsJSON{Email: optString(spec.customerEmail), TaxExempt: "none", TaxIDs: []any{}}
	}
	if spec.consentPromotions != "" || spec.consentTOS != "" {
		s.ConsentCollection = &consentCollectionJSON{Promotions: orDefault(spec.consentPromotions, "none"), TermsOfService: orDefault(spec.consentTOS, "none")}
	}
	if spec.recovery {
		s.AfterExpiration = &afterExpirationJSON{Recovery: &recoveryJSON{Enabled: true, AllowPromotionCodes: spec.recoveryPromo}}
	}
	if ae := e.billingSessionLocked(s, spec); ae != nil {
		return nil, ae
	}
	s.spec = spec
	e.sessions.add(s)
	heap.Push(&e.expiry, s)
	return s, nil
}

// spreadDiscount allocates a session discount over its line items in
// proportion to their subtotals: each line gets the whole minor units of
// its share, and the units left over go one each to the lines with the
// largest remainders (the earlier line on a tie), so the lines add up to
// the discount and none is off its share by a unit or more.
func spreadDiscount(items []lineItem, discount, subtotal int64) {
	if subtotal == 0 {
		return
	}
	left := discount
	rem := make([]int64, len(items))
	for i := range items {
		share := discount * items[i].amountSubtotal
		items[i].amountDiscount, rem[i] = share/subtotal, share%subtotal
		left -= items[i].amountDiscount
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rem[order[a]] > rem[order[b]] })
	for _, i := range order[:left] {
		items[i].amountDiscount++
	}
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// PaySession completes an open session as if the customer paid on the
// hosted page: it creates a customer, a payment intent and a charge, and
// records checkout.session.completed. A session whose total is zero
// completes with payment_status no_payment_required and no payment intent.
func (e *Emulator) PaySession(id string, p Pay) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tickLocked()
	s, ok := e.sessions.get(id)
	if !ok {
		return opError("pay session", missing("checkout.session", id))
	}
	return opError("pay session "+id, e.payLocked(s, p))
}

// payLocked completes s.
func (e *Emulator) payLocked(s *session, p Pay) *apiError {
	if s.Status != "open" {
		return invalid("", "", "This Checkout Session is no longer active (status %s).", s.Status)
	}
	switch p.ConsentPromotions {
	case "", "opt_in", "opt_out":
	default:
		return invalid("consent[promotions]", "", "Invalid consent %q.", p.ConsentPromotions)
	}
	if s.Mode == "subscription" {
		return e.paySubscriptionSessionLocked(s, p)
	}
	if ae := e.redeemLocked(s); ae != nil {
		return ae
	}
	now := e.nowUnix()
	email := orDefault(p.Email, ptrValue(s.CustomerEmail))

	cu, ok := e.customers.get(s.customerID) // the session's customer parameter
	if !ok {
		cu = &customer{customerJSON{
			ID: e.newIDLocked("cus_"), Object: "customer", Created: now, Email: optString(email), Name: optString(p.Name),
			InvoicePrefix:       strings.ToUpper(e.newIDLocked("")[16:24]),
			InvoiceSettings:     map[string]any{"custom_fields": nil, "default_payment_method": nil, "footer": nil, "rendering_options": nil},
			Metadata:            map[string]string{},
			NextInvoiceSequence: 1, PreferredLocales: []string{}, TaxExempt: "none",
		}}
		e.customers.add(cu)
		s.customerID = cu.ID
	}
	s.CustomerDetails = &customerDetailsJSON{Email: optString(email), Name: optString(p.Name), TaxExempt: "none", TaxIDs: []any{}}
	if s.ConsentCollection != nil || p.ConsentPromotions != "" {
		s.Consent = &consentJSON{Promotions: optString(p.ConsentPromotions)}
		if s.ConsentCollection != nil && s.ConsentCollection.TermsOfService == "required" {
			s.Consent.TermsOfService = optString("accepted")
		}
	}
	s.Status = "complete"
	s.async = p.Async

	if s.AmountTotal == 0 {
		s.PaymentStatus = "no_payment_required"
		e.recordLocked("checkout.session.completed", e.renderSession(s, nil), eventRequestJSON{}, nil)
		return nil
	}

	pmID := e.newIDLocked("pm_")
	pi := &paymentIntent{customerID: cu.ID, sessionID: s.ID}
	pi.intentJSON = intentJSON{
		ID: e.newIDLocked("pi_"), Object: "payment_intent", Amount: s.AmountTotal,
		AmountDetails: map[string]any{"tip": map[string]any{}}, CaptureMethod: "automatic", ConfirmationMethod: "automatic",
		Created: now, Currency: s.Currency, Description: optString(s.spec.intentDescription), Metadata: cloneMeta(s.spec.intentMetadata),
		PaymentMethod: &pmID, PaymentMethodOptions: map[string]any{}, PaymentMethodTypes: []string{"card"},
		ReceiptEmail: optString(email), Status: "succeeded", AmountReceived: s.AmountTotal,
	}
	pi.ClientSecret = pi.ID + "_secret_" + e.newIDLocked("")[10:]
	ch := &charge{customerID: cu.ID, intentID: pi.ID}
	ch.chargeJSON = chargeJSON{
		ID: e.newIDLocked("ch_"), Object: "charge", Amount: s.AmountTotal, AmountCaptured: s.AmountTotal,
		BillingDetails:                map[string]any{"address": nil, "email": optString(email), "name": optString(p.Name), "phone": nil},
		CalculatedStatementDescriptor: "PAYMENTD", Captured: true, Created: now, Currency: s.Currency,
		FraudDetails: map[string]any{}, Metadata: cloneMeta(s.spec.intentMetadata),
		Outcome: map[string]any{"network_status": "approved_by_network", "reason": nil, "risk_level": "normal", "risk_score": 32,
			"seller_message": "Payment complete.", "type": "authorized"},
		Paid: true, PaymentMethod: pmID,
		PaymentMethodDetails: map[string]any{"type": "card", "card": map[string]any{"brand": "visa", "country": "US", "exp_month": 12,
			"exp_year": 2034, "funding": "credit", "last4": "4242", "network": "visa"}},
		ReceiptEmail: optString(email), Status: "succeeded",
	}
	ch.ReceiptURL = "https://pay.stripe.com/receipts/payment/" + ch.ID
	if p.Async {
		pi.Status, pi.AmountReceived = "processing", 0
		pi.PaymentMethodTypes = []string{"sepa_debit"}
		ch.Status, ch.Paid, ch.Captured, ch.AmountCaptured = "pending", false, false, 0
		ch.PaymentMethodDetails = map[string]any{"type": "sepa_debit", "sepa_debit": map[string]any{"bank_code": "37040044", "country": "DE", "last4": "3000"}}
		s.PaymentMethodTypes = []string{"card", "sepa_debit"}
	} else {
		s.PaymentStatus = "paid"
	}
	pi.chargeID = ch.ID
	e.intents.add(pi)
	e.charges.add(ch)
	e.chargesByIntent[pi.ID] = append(e.chargesByIntent[pi.ID], ch)
	e.sessionByIntent[pi.ID] = s
	s.intentID = pi.ID
	e.recordLocked("checkout.session.completed", e.renderSession(s, nil), eventRequestJSON{}, nil)
	return nil
}

// SettleAsync settles a session paid with Pay.Async. On success the charge
// and payment intent succeed, the session becomes paid and
// checkout.session.async_payment_succeeded is recorded; on failure the
// charge fails, the payment intent returns to requires_payment_method and
// checkout.session.async_payment_failed is recorded.
func (e *Emulator) SettleAsync(sessionID string, succeed bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.sessions.get(sessionID)
	if !ok {
		return opError("settle", missing("checkout.session", sessionID))
	}
	pi, ok := e.intents.get(s.intentID)
	if !ok || !s.async || s.Status != "complete" || pi.Status != "processing" {
		return opError("settle "+sessionID, invalid("", "", "Checkout Session %s has no pending asynchronous payment.", sessionID))
	}
	ch, _ := e.charges.get(pi.chargeID)
	if succeed {
		pi.Status, pi.AmountReceived = "succeeded", pi.Amount
		ch.Status, ch.Paid, ch.Captured, ch.AmountCaptured = "succeeded", true, true, ch.Amount
		s.PaymentStatus = "paid"
		e.recordLocked("checkout.session.async_payment_succeeded", e.renderSession(s, nil), eventRequestJSON{}, nil)
		return nil
	}
	pi.Status = "requires_payment_method"
	pi.LastPaymentError = &paymentErrorJSON{Code: "payment_intent_payment_attempt_failed", Message: "The payment failed.", Type: "card_error"}
	ch.Status = "failed"
	ch.FailureCode, ch.FailureMessage = optString("generic_decline"), optString("The payment failed.")
	ch.Outcome = map[string]any{"network_status": "declined_by_network", "reason": "generic_decline", "risk_level": "normal",
		"seller_message": "The bank returned the decline code `generic_decline`.", "type": "issuer_declined"}
	e.recordLocked("checkout.session.async_payment_failed", e.renderSession(s, nil), eventRequestJSON{}, nil)
	return nil
}

// ExpireSession expires an open session now, as POST
// /v1/checkout/sessions/{id}/expire does, recording
// checkout.session.expired.
func (e *Emulator) ExpireSession(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.sessions.get(id)
	if !ok {
		return opError("expire session", missing("checkout.session", id))
	}
	return opError("expire session "+id, e.expireLocked(s, eventRequestJSON{}))
}

// recoveryTTL is how long a recovery URL stays usable after expiry.
const recoveryTTL = 30 * 24 * time.Hour

// expireLocked expires s.
func (e *Emulator) expireLocked(s *session, req eventRequestJSON) *apiError {
	if s.Status != "open" {
		return invalid("", "", "Only Checkout Sessions with a status in [\"open\"] can be expired (this one is %s).", s.Status)
	}
	s.Status = "expired"
	if s.AfterExpiration != nil && s.AfterExpiration.Recovery != nil && s.AfterExpiration.Recovery.Enabled {
		exp := e.clock.Now().Add(recoveryTTL).Unix()
		s.AfterExpiration.Recovery.ExpiresAt = &exp
	}
	e.recordLocked("checkout.session.expired", e.renderSession(s, nil), req, nil)
	return nil
}

// tickLocked expires every open session whose expires_at has passed, then
// applies the billing transitions that came due (billing.go).
func (e *Emulator) tickLocked() {
	now := e.nowUnix()
	for len(e.expiry) > 0 && e.expiry[0].ExpiresAt <= now {
		s := heap.Pop(&e.expiry).(*session)
		if s.Status == "open" {
			_ = e.expireLocked(s, eventRequestJSON{}) // cannot fail: s is open
		}
	}
	e.tickBillingLocked()
	e.tickIntentsLocked()
}

// expiryHeap orders sessions by expires_at.
type expiryHeap []*session

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].ExpiresAt < h[j].ExpiresAt }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(*session)) }
func (h *expiryHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}

// recoverLocked returns the session created from old's recovery URL,
// creating it on first use.
func (e *Emulator) recoverLocked(old *session) (*session, *apiError) {
	r := old.AfterExpiration
	if old.Status != "expired" || r == nil || r.Recovery == nil || !r.Recovery.Enabled || r.Recovery.ExpiresAt == nil || e.nowUnix() >= *r.Recovery.ExpiresAt {
		return nil, invalid("", "", "This Checkout Session cannot be recovered.")
	}
	if s, ok := e.sessions.get(old.recoveredBy); ok && s.Status != "expired" {
		return s, nil
	}
	spec := old.spec
	spec.coupon, spec.promotionCode = "", ""
	spec.allowPromo = &r.Recovery.AllowPromotionCodes
	spec.expiresAt = 0
	spec.recovery = false
	spec.recoveredFrom = old.ID
	s, ae := e.createSessionLocked(spec)
	if ae != nil {
		return nil, ae
	}
	old.recoveredBy = s.ID
	return s, nil
}

// Refund refunds amount (0 = everything not yet refunded) of a payment
// intent's charge; the refund succeeds at once and charge.refunded is
// recorded.
func (e *Emulator) Refund(paymentIntentID string, amount int64) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, ok := e.intents.get(paymentIntentID)
	if !ok {
		return "", opError("refund", missing("payment_intent", paymentIntentID))
	}
	ch, ae := e.refundableChargeLocked(pi, "payment_intent")
	if ae != nil {
		return "", opError("refund "+paymentIntentID, ae)
	}
	r, ae := e.refundLocked(ch, amount, "", nil, eventRequestJSON{})
	if ae != nil {
		return "", opError("refund "+paymentIntentID, ae)
	}
	return r.ID, nil
}

// refundableChargeLocked returns the succeeded charge of pi.
func (e *Emulator) refundableChargeLocked(pi *paymentIntent, param string) (*charge, *apiError) {
	ch, ok := e.charges.get(pi.chargeID)
	if !ok || ch.Status != "succeeded" {
		return nil, invalid(param, "", "This PaymentIntent (%s) does not have a successful charge to refund.", pi.ID)
	}
	return ch, nil
}

// refundLocked refunds amount (0 = the rest) of ch.
func (e *Emulator) refundLocked(ch *charge, amount int64, reason string, meta map[string]string, req eventRequestJSON) (*refund, *apiError) {
	if ch.Status != "succeeded" {
		return nil, invalid("charge", "", "Charge %s has not succeeded and cannot be refunded.", ch.ID)
	}
	for _, d := range e.disputesByCharge[ch.ID] {
		if d.Status != "won" {
			return nil, invalid("charge", "charge_disputed", "Charge %s has been charged back; cannot issue a refund.", ch.ID)
		}
	}
	rest := ch.Amount - ch.AmountRefunded
	if rest <= 0 {
		return nil, invalid("charge", "charge_already_refunded", "Charge %s has already been refunded.", ch.ID)
	}
	if amount < 0 {
		return nil, invalid("amount", "parameter_invalid_integer", "Invalid positive integer")
	}
	if amount == 0 {
		amount = rest
	}
	if amount > rest {
		return nil, invalid("amount", "amount_too_large", "Refund amount (%s) is greater than unrefunded amount on charge (%s)",
			formatAmount(amount, ch.Currency), formatAmount(rest, ch.Currency))
	}
	r := &refund{chargeID: ch.ID, intentID: ch.intentID}
	r.refundJSON = refundJSON{
		ID: e.newIDLocked("re_"), Object: "refund", Amount: amount, Created: e.nowUnix(), Currency: ch.Currency,
		Metadata: cloneMeta(meta), Reason: optString(reason), Status: "succeeded",
	}
	e.refunds.add(r)
	e.refundsByCharge[ch.ID] = append(e.refundsByCharge[ch.ID], r)
	prev := map[string]any{"amount_refunded": ch.AmountRefunded}
	ch.AmountRefunded += amount
	if refunded := ch.AmountRefunded == ch.Amount; refunded != ch.Refunded {
		prev["refunded"] = ch.Refunded
		ch.Refunded = refunded
	}
	e.recordLocked("charge.refunded", e.renderCharge(ch, nil), req, prev)
	return r, nil
}

// FailRefund marks a refund failed, returns its amount to the charge and
// records charge.refund.updated.
func (e *Emulator) FailRefund(refundID string) error {
	return e.endRefund(refundID, "failed")
}

// CancelRefund marks a refund canceled, returns its amount to the charge and
// records charge.refund.updated.
func (e *Emulator) CancelRefund(refundID string) error {
	return e.endRefund(refundID, "canceled")
}

// endRefund moves a refund to a terminal unsuccessful status.
func (e *Emulator) endRefund(refundID, status string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.refunds.get(refundID)
	if !ok {
		return opError(status+" refund", missing("refund", refundID))
	}
	if r.Status != "succeeded" && r.Status != "pending" {
		return opError(status+" refund "+refundID, invalid("", "", "Refund %s is already %s.", r.ID, r.Status))
	}
	prev := map[string]any{"status": r.Status}
	r.Status = status
	if status == "failed" {
		r.FailureReason = "unknown"
		prev["failure_reason"] = nil
	}
	if ch, ok := e.charges.get(r.chargeID); ok {
		ch.AmountRefunded -= r.Amount
		ch.Refunded = false
	}
	e.recordLocked("charge.refund.updated", e.renderRefund(r, nil), eventRequestJSON{}, prev)
	return nil
}

// OpenDispute opens a dispute (reason fraudulent, status needs_response) on
// a payment intent's charge and records charge.dispute.created.
func (e *Emulator) OpenDispute(paymentIntentID string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, ok := e.intents.get(paymentIntentID)
	if !ok {
		return "", opError("open dispute", missing("payment_intent", paymentIntentID))
	}
	ch, ok := e.charges.get(pi.chargeID)
	if !ok || ch.Status != "succeeded" {
		return "", opError("open dispute "+paymentIntentID, invalid("", "", "PaymentIntent %s has no successful charge.", paymentIntentID))
	}
	if len(e.disputesByCharge[ch.ID]) > 0 {
		return "", opError("open dispute "+paymentIntentID, invalid("", "", "Charge %s is already disputed.", ch.ID))
	}
	amount := ch.Amount - ch.AmountRefunded
	if amount <= 0 {
		return "", opError("open dispute "+paymentIntentID, invalid("", "", "Charge %s is fully refunded.", ch.ID))
	}
	now := e.clock.Now()
	d := &dispute{chargeID: ch.ID, intentID: pi.ID}
	d.disputeJSON = disputeJSON{
		ID: e.newIDLocked("dp_"), Object: "dispute", Amount: amount, BalanceTransactions: []any{}, Created: now.Unix(), Currency: ch.Currency,
		Evidence:             map[string]any{},
		EvidenceDetails:      evidenceDetailsJSON{DueBy: now.Add(7 * 24 * time.Hour).Unix()},
		Metadata:             map[string]string{},
		PaymentMethodDetails: map[string]any{"type": "card", "card": map[string]any{"brand": "visa", "network_reason_code": "10.4"}},
		Reason:               "fraudulent", Status: "needs_response",
	}
	e.disputes.add(d)
	e.disputesByCharge[ch.ID] = append(e.disputesByCharge[ch.ID], d)
	ch.Disputed = true
	e.recordLocked("charge.dispute.created", e.renderDispute(d, nil), eventRequestJSON{}, nil)
	return d.ID, nil
}

// CloseDispute closes an open dispute as won or lost and records
// charge.dispute.closed.
func (e *Emulator) CloseDispute(id string, won bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, ok := e.disputes.get(id)
	if !ok {
		return opError("close dispute", missing("dispute", id))
	}
	switch d.Status {
	case "won", "lost", "warning_closed":
		return opError("close dispute "+id, invalid("", "", "Dispute %s is already closed (%s).", id, d.Status))
	}
	d.Status = "lost"
	if won {
		d.Status = "won"
	}
	e.recordLocked("charge.dispute.closed", e.renderDispute(d, nil), eventRequestJSON{}, nil)
	return nil
}

// Session returns a copy of a session as stripe-go decodes it.
func (e *Emulator) Session(id string) (*stripe.CheckoutSession, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.sessions.get(id)
	if !ok {
		return nil, opError("session", missing("checkout.session", id))
	}
	return e.sessionCopyLocked(s)
}

// Sessions returns copies of all sessions, oldest first.
func (e *Emulator) Sessions() []*stripe.CheckoutSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*stripe.CheckoutSession, 0, len(e.sessions.items))
	for _, s := range e.sessions.items {
		if c, err := e.sessionCopyLocked(s); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// Events returns copies of all recorded events, oldest first.
func (e *Emulator) Events() []*stripe.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*stripe.Event, 0, len(e.events.items))
	for _, ev := range e.events.items {
		var se stripe.Event
		if err := json.Unmarshal(ev.raw, &se); err == nil {
			out = append(out, &se)
		}
	}
	return out
}

// sessionCopyLocked decodes a session's wire form into stripe-go's type.
func (e *Emulator) sessionCopyLocked(s *session) (*stripe.CheckoutSession, error) {
	var out stripe.CheckoutSession
	if err := json.Unmarshal(mustJSON(e.renderSession(s, nil)), &out); err != nil {
		return nil, fmt.Errorf("stripeemu: decode session %s: %w", s.ID, err)
	}
	return &out, nil
}

// ptrValue dereferences s, treating nil as "".
func ptrValue(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// zeroDecimal reports whether a currency has no minor units.
func zeroDecimal(cur string) bool {
	switch cur {
	case "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf":
		return true
	}
	return false
}

// formatAmount formats an amount in minor units, e.g. "€12.50" or "12.50 CHF".
func formatAmount(amount int64, currency string) string {
	cur := strings.ToLower(currency)
	num := fmt.Sprintf("%d", amount)
	if !zeroDecimal(cur) {
		sign := ""
		if amount < 0 {
			sign, amount = "-", -amount
		}
		num = fmt.Sprintf("%s%d.%02d", sign, amount/100, amount%100)
	}
	switch cur {
	case "usd":
		return "$" + num
	case "eur":
		return "€" + num
	case "gbp":
		return "£" + num
	case "jpy":
		return "¥" + num
	}
	return num + " " + strings.ToUpper(cur)
}
