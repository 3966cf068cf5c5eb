// Payment intents for embedded payment forms: created through the API, as a
// server does before it shows Stripe Elements, then confirmed with a test
// payment method (server-side, from the emulator's Elements page, or by a
// Go operation) and driven through Stripe's states for API 2023-10-16:
//
//	requires_payment_method ──confirm──▶ succeeded                 (a good card)
//	        ▲                      ├───▶ requires_payment_method   (declined: try again)
//	        │                      ├───▶ requires_action ──3DS──▶ succeeded / requires_payment_method
//	        │                      └───▶ processing ──clock──▶ succeeded / requires_payment_method
//	        └────────────cancel──────▶ canceled
//
// Every attempt that reaches the card network leaves a charge (latest_charge)
// and each change records the events Stripe sends, with a snapshot of the
// object: payment_intent.created, .requires_action, .processing,
// .succeeded, .payment_failed, .canceled and charge.pending, .succeeded,
// .failed. Refunds and disputes of these charges are the ones Checkout's
// payments have (ops.go).

package stripeemu

import (
	"container/heap"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// intentFlow is the state of a payment intent created through the API
// beyond its wire form.
type intentFlow struct {
	apm            bool        // automatic_payment_methods[enabled]
	allowRedirects string      // automatic_payment_methods[allow_redirects]: always or never
	returnURL      string      // the last confirmation's return_url
	method         *testMethod // attached, not yet confirmed (requires_confirmation)
	action         *testMethod // awaiting its 3-D Secure challenge (requires_action)
	attempts       int64       // confirmations so far; stamps async settlements
	settles        bool        // the pending debit settles (processing)
	viaPage        bool        // the last confirmation came from the Elements page
}

// Outcome is what a confirmation with a test payment method leads to, the
// choice a Go operation or the Elements page makes.
type Outcome string

// The outcomes of Stripe's test payment methods.
const (
	// OutcomeSucceeds is a card that pays (4242 4242 4242 4242).
	OutcomeSucceeds Outcome = "succeeds"
	// OutcomeDeclined is a card declined with decline_code
	// generic_decline (4000 0000 0000 0002).
	OutcomeDeclined Outcome = "declined"
	// OutcomeInsufficientFunds is a card declined with decline_code
	// insufficient_funds (4000 0000 0000 9995).
	OutcomeInsufficientFunds Outcome = "insufficient_funds"
	// OutcomeRequires3DS is a card that needs a 3-D Secure challenge
	// (4000 0000 0000 3220); AuthenticatePaymentIntent or the challenge
	// page decides it.
	OutcomeRequires3DS Outcome = "requires_3ds"
	// OutcomeAsyncSucceeds is a bank debit (SEPA for EUR, ACH for USD) that
	// stays processing until it settles, then succeeds.
	OutcomeAsyncSucceeds Outcome = "async_succeeds"
	// OutcomeAsyncFails is a bank debit that fails when it settles.
	OutcomeAsyncFails Outcome = "async_fails"
)

// result is how an attempt with a test payment method ends.
type result uint8

const (
	resultSucceed result = iota
	resultDecline
	resultAction
	resultAsync
)

// testMethod is a test payment method and what happens when it pays.
type testMethod struct {
	typ         string // card, sepa_debit or us_bank_account
	brand       string // cards only
	last4       string
	result      result
	declineCode string // resultDecline: generic_decline or insufficient_funds
	settles     bool   // resultAsync: whether the debit settles
}

// testCards are Stripe's test payment method ids for cards.
var testCards = map[string]testMethod{
	"pm_card_visa":                                 {typ: "card", brand: "visa", last4: "4242"},
	"pm_card_mastercard":                           {typ: "card", brand: "mastercard", last4: "4444"},
	"pm_card_chargeDeclined":                       {typ: "card", brand: "visa", last4: "0002", result: resultDecline, declineCode: "generic_decline"},
	"pm_card_visa_chargeDeclined":                  {typ: "card", brand: "visa", last4: "0002", result: resultDecline, declineCode: "generic_decline"},
	"pm_card_chargeDeclinedInsufficientFunds":      {typ: "card", brand: "visa", last4: "9995", result: resultDecline, declineCode: "insufficient_funds"},
	"pm_card_visa_chargeDeclinedInsufficientFunds": {typ: "card", brand: "visa", last4: "9995", result: resultDecline, declineCode: "insufficient_funds"},
	"pm_card_threeDSecure2Required":                {typ: "card", brand: "visa", last4: "3220", result: resultAction},
	"pm_card_authenticationRequired":               {typ: "card", brand: "visa", last4: "3184", result: resultAction},
}

// testBankAccounts are Stripe's test IBANs and US account numbers, keyed
// by payment method type and number.
var testBankAccounts = map[string]testMethod{
	"sepa_debit:DE89370400440532013000": {typ: "sepa_debit", last4: "3000", result: resultAsync, settles: true},
	"sepa_debit:DE62370400440532013001": {typ: "sepa_debit", last4: "3001", result: resultAsync},
	"us_bank_account:000123456789":      {typ: "us_bank_account", last4: "6789", result: resultAsync, settles: true},
	"us_bank_account:000111111113":      {typ: "us_bank_account", last4: "1113", result: resultAsync},
}

// testRoutingNumber is the routing number of Stripe's test US bank.
const testRoutingNumber = "110000000"

// bankDebitType is the delayed-notification method the emulator offers for
// a currency ("" for none): SEPA Direct Debit for EUR, ACH for USD.
func bankDebitType(currency string) string {
	switch currency {
	case "eur":
		return "sepa_debit"
	case "usd":
		return "us_bank_account"
	}
	return ""
}

// methodFor returns the test payment method an Outcome stands for in
// currency.
func methodFor(o Outcome, currency string) (testMethod, *apiError) {
	switch o {
	case OutcomeSucceeds:
		return testCards["pm_card_visa"], nil
	case OutcomeDeclined:
		return testCards["pm_card_chargeDeclined"], nil
	case OutcomeInsufficientFunds:
		return testCards["pm_card_chargeDeclinedInsufficientFunds"], nil
	case OutcomeRequires3DS:
		return testCards["pm_card_threeDSecure2Required"], nil
	case OutcomeAsyncSucceeds, OutcomeAsyncFails:
		typ := bankDebitType(currency)
		if typ == "" {
			return testMethod{}, invalid("payment_method_data[type]", "", "The emulator offers bank debits for eur (sepa_debit) and usd (us_bank_account), not %s.", currency)
		}
		m := testMethod{typ: typ, last4: "3000", result: resultAsync, settles: o == OutcomeAsyncSucceeds}
		if typ == "us_bank_account" {
			m.last4 = "6789"
		}
		if !m.settles {
			m.last4 = map[string]string{"sepa_debit": "3001", "us_bank_account": "1113"}[typ]
		}
		return m, nil
	}
	return testMethod{}, invalid("", "", "Unknown outcome %q.", o)
}

// details renders a charge's payment_method_details for m.
func (m testMethod) details() map[string]any {
	switch m.typ {
	case "sepa_debit":
		return map[string]any{"type": "sepa_debit", "sepa_debit": map[string]any{"bank_code": "37040044", "branch_code": nil, "country": "DE",
			"fingerprint": "emuSepa" + m.last4, "last4": m.last4, "mandate": nil}}
	case "us_bank_account":
		return map[string]any{"type": "us_bank_account", "us_bank_account": map[string]any{"account_holder_type": "individual",
			"account_type": "checking", "bank_name": "STRIPE TEST BANK", "fingerprint": "emuAch" + m.last4, "last4": m.last4, "routing_number": "110000000"}}
	}
	return map[string]any{"type": "card", "card": map[string]any{"brand": m.brand, "country": "US", "exp_month": 12, "exp_year": 2034,
		"funding": "credit", "last4": m.last4, "network": m.brand}}
}

// paymentMethodJSON is a Stripe payment method, as a failed payment's error
// carries it.
type paymentMethodJSON struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	BillingDetails map[string]any    `json:"billing_details"`
	Card           map[string]any    `json:"card,omitempty"`
	Created        int64             `json:"created"`
	Customer       *string           `json:"customer"`
	Livemode       bool              `json:"livemode"`
	Metadata       map[string]string `json:"metadata"`
	Type           string            `json:"type"`
}

// renderMethod renders the payment method pmID of type m.
func (e *Emulator) renderMethod(pmID string, m testMethod, pi *paymentIntent) paymentMethodJSON {
	w := paymentMethodJSON{ID: pmID, Object: "payment_method", Created: e.nowUnix(), Customer: optString(pi.customerID),
		BillingDetails: map[string]any{"address": map[string]any{"city": nil, "country": nil, "line1": nil, "line2": nil, "postal_code": nil, "state": nil},
			"email": nil, "name": nil, "phone": nil},
		Metadata: map[string]string{}, Type: m.typ}
	if m.typ == "card" {
		w.Card = map[string]any{"brand": m.brand, "checks": map[string]any{"address_line1_check": nil, "address_postal_code_check": nil, "cvc_check": "pass"},
			"country": "US", "exp_month": 12, "exp_year": 2034, "funding": "credit", "generated_from": nil, "last4": m.last4,
			"networks": map[string]any{"available": []string{m.brand}, "preferred": nil}, "three_d_secure_usage": map[string]any{"supported": true}, "wallet": nil}
	}
	return w
}

// payments holds the state of API payment intents and Stripe Tax: the
// settlement timers of pending debits, the tax settings, and tax
// calculations and transactions.
type payments struct {
	settleDelay time.Duration
	jobs        settleHeap
	seq         uint64
	bySecret    map[string]*paymentIntent // API intents by client secret, for the Elements page
	tax         taxState
}

// newPayments returns empty payment state with the default settings.
func newPayments() *payments {
	return &payments{settleDelay: DefaultAsyncSettleDelay, bySecret: map[string]*paymentIntent{}, tax: newTaxState()}
}

// DefaultAsyncSettleDelay is how long a bank debit stays processing before
// it settles, unless PaymentSettings say otherwise.
const DefaultAsyncSettleDelay = 3 * time.Minute

// PaymentSettings configure the emulated account's payments.
type PaymentSettings struct {
	// AsyncSettleDelay is how long a bank debit stays processing before it
	// settles on the emulator's clock; zero means DefaultAsyncSettleDelay.
	AsyncSettleDelay time.Duration
}

// SetPaymentSettings replaces the payment settings. Debits already
// processing keep the settlement time they were given.
func (e *Emulator) SetPaymentSettings(s PaymentSettings) error {
	if s.AsyncSettleDelay < 0 {
		return opError("payment settings", invalid("async_settle_delay", "", "AsyncSettleDelay must not be negative (got %s).", s.AsyncSettleDelay))
	}
	if s.AsyncSettleDelay == 0 {
		s.AsyncSettleDelay = DefaultAsyncSettleDelay
	}
	e.mu.Lock()
	e.pay.settleDelay = s.AsyncSettleDelay
	e.mu.Unlock()
	return nil
}

// settleJob settles a pending debit at a time, if the intent is still on
// the attempt it was scheduled for.
type settleJob struct {
	at    int64
	seq   uint64
	pi    *paymentIntent
	stamp int64
}

// settleHeap orders settlements by time, then by scheduling order.
type settleHeap []*settleJob

func (h settleHeap) Len() int { return len(h) }
func (h settleHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h settleHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *settleHeap) Push(x any)   { *h = append(*h, x.(*settleJob)) }
func (h *settleHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}

// tickIntentsLocked settles every pending debit that came due, oldest
// first, with the clock pinned at its due time.
func (e *Emulator) tickIntentsLocked() {
	p := e.pay
	now := e.bill.clock.unpinnedNow().Unix()
	if len(p.jobs) == 0 || p.jobs[0].at > now {
		return
	}
	defer e.bill.clock.unpin()
	for len(p.jobs) > 0 && p.jobs[0].at <= now {
		j := heap.Pop(&p.jobs).(*settleJob)
		if j.pi.Status == "processing" && j.pi.flow.attempts == j.stamp {
			e.bill.clock.pin(j.at)
			e.settleLocked(j.pi, j.pi.flow.settles, eventRequestJSON{})
		}
	}
}

// intentSpec is a validated POST /v1/payment_intents.
type intentSpec struct {
	amount         int64
	currency       string
	customer       string
	description    string
	receiptEmail   string
	metadata       map[string]string
	apm            bool
	allowRedirects string
	types          []string
}

// minimumAmounts are Stripe's smallest charges per currency, in minor
// units; other currencies need only a positive amount here.
var minimumAmounts = map[string]int64{"usd": 50, "eur": 50, "gbp": 30, "chf": 50, "cad": 50, "aud": 50, "jpy": 50, "sek": 300, "nok": 300, "dkk": 250}

// checkAmount refuses an amount Stripe would not charge in currency.
func checkAmount(param string, amount int64, currency string) *apiError {
	if amount < 1 {
		return invalid(param, "parameter_invalid_integer", "This value must be greater than or equal to 1.")
	}
	if amount > 99999999 {
		return invalid(param, "amount_too_large", "Amount must be no more than 999,999.99 (eight digits).")
	}
	if m, ok := minimumAmounts[currency]; ok && amount < m {
		return invalid(param, "amount_too_small", "Amount must be at least %s %s", formatAmount(m, currency), currency)
	}
	return nil
}

// createIntentLocked validates spec and stores a new payment intent,
// recording payment_intent.created.
func (e *Emulator) createIntentLocked(spec intentSpec, req eventRequestJSON) (*paymentIntent, *apiError) {
	if ae := checkAmount("amount", spec.amount, spec.currency); ae != nil {
		return nil, ae
	}
	if spec.customer != "" {
		if _, ok := e.customers.get(spec.customer); !ok {
			return nil, invalid("customer", "resource_missing", "No such customer: '%s'", spec.customer)
		}
	}
	flow := &intentFlow{apm: spec.apm, allowRedirects: spec.allowRedirects}
	types := spec.types
	var apm any
	if spec.apm {
		types = []string{"card"}
		if t := bankDebitType(spec.currency); t != "" {
			types = append(types, t)
		}
		apm = map[string]any{"allow_redirects": spec.allowRedirects, "enabled": true}
	}
	for i, t := range types {
		if t != "card" && t != bankDebitType(spec.currency) {
			return nil, invalid(fmt.Sprintf("payment_method_types[%d]", i), "payment_intent_invalid_parameter",
				"The payment method type %q is invalid for currency %s. The emulator accepts card, and sepa_debit (eur) or us_bank_account (usd).", t, spec.currency)
		}
	}
	pi := &paymentIntent{customerID: spec.customer, flow: flow}
	pi.intentJSON = intentJSON{
		ID: e.newIDLocked("pi_"), Object: "payment_intent", Amount: spec.amount,
		AmountDetails: map[string]any{"tip": map[string]any{}}, AutomaticPaymentMethods: apm, CaptureMethod: "automatic",
		ConfirmationMethod: "automatic", Created: e.nowUnix(), Currency: spec.currency, Description: optString(spec.description),
		Metadata: cloneMeta(spec.metadata), PaymentMethodOptions: methodOptions(types), PaymentMethodTypes: types,
		ReceiptEmail: optString(spec.receiptEmail), Status: "requires_payment_method",
	}
	pi.ClientSecret = pi.ID + "_secret_" + e.newIDLocked("")[10:]
	e.intents.add(pi)
	e.pay.bySecret[pi.ClientSecret] = pi
	e.recordLocked("payment_intent.created", e.renderIntent(pi, nil), req, nil)
	return pi, nil
}

// methodOptions renders payment_method_options for the allowed types.
func methodOptions(types []string) map[string]any {
	out := map[string]any{}
	for _, t := range types {
		switch t {
		case "card":
			out["card"] = map[string]any{"installments": nil, "mandate_options": nil, "network": nil, "request_three_d_secure": "automatic"}
		case "sepa_debit":
			out["sepa_debit"] = map[string]any{}
		case "us_bank_account":
			out["us_bank_account"] = map[string]any{"verification_method": "automatic"}
		}
	}
	return out
}

// unexpectedState is Stripe's refusal of an operation in the wrong status.
func unexpectedState(format string, args ...any) *apiError {
	return invalid("", "payment_intent_unexpected_state", format, args...)
}

// confirmable are the statuses confirm accepts.
var confirmable = []string{"requires_payment_method", "requires_confirmation", "requires_action"}

// confirmLocked attempts a payment with m (pmID is its new payment method
// id) and applies the outcome. A decline is returned as the 402 Stripe
// answers, carrying the intent as it now is; the intent is left in
// requires_payment_method for another try.
func (e *Emulator) confirmLocked(pi *paymentIntent, m testMethod, pmID, returnURL string, req eventRequestJSON) *apiError {
	if pi.flow == nil {
		return unexpectedState("PaymentIntent %s was created by Checkout or an invoice; the emulator confirms only intents created through the API.", pi.ID)
	}
	if !slices.Contains(confirmable, pi.Status) {
		if pi.Status == "succeeded" {
			return unexpectedState("You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed.")
		}
		return unexpectedState("You cannot confirm this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be confirmed: %s.",
			pi.Status, strings.Join(confirmable, ", "))
	}
	if !slices.Contains(pi.PaymentMethodTypes, m.typ) {
		return invalid("payment_method", "payment_intent_invalid_parameter",
			"The provided PaymentMethod is of type %s, which is not allowed for this PaymentIntent. This PaymentIntent accepts: %s.", m.typ, strings.Join(pi.PaymentMethodTypes, ", "))
	}
	f := pi.flow
	f.attempts++
	f.method, f.action, f.returnURL, f.viaPage = nil, nil, returnURL, false
	pi.PaymentMethod, pi.NextAction, pi.LastPaymentError = &pmID, nil, nil
	switch m.result {
	case resultSucceed:
		ch := e.intentChargeLocked(pi, m, pmID)
		e.succeedLocked(pi, ch, req)
	case resultDecline:
		return e.declineLocked(pi, m, pmID, req)
	case resultAction:
		f.action = &m
		pi.Status = "requires_action"
		pi.NextAction = map[string]any{"type": "redirect_to_url",
			"redirect_to_url": map[string]any{"return_url": optString(returnURL), "url": e.baseURL + "/elements/" + pi.ClientSecret + "/3ds"}}
		e.recordLocked("payment_intent.requires_action", e.renderIntent(pi, nil), req, nil)
	case resultAsync:
		ch := e.intentChargeLocked(pi, m, pmID)
		ch.Status = "pending"
		pi.Status = "processing"
		f.settles = m.settles
		e.recordLocked("charge.pending", e.renderCharge(ch, nil), req, nil)
		e.recordLocked("payment_intent.processing", e.renderIntent(pi, nil), req, nil)
		e.pay.seq++
		heap.Push(&e.pay.jobs, &settleJob{at: e.clock.Now().Add(e.pay.settleDelay).Unix(), seq: e.pay.seq, pi: pi, stamp: f.attempts})
	}
	return nil
}

// intentChargeLocked creates the charge of an attempt with m, not yet
// succeeded or failed, as pi's latest charge.
func (e *Emulator) intentChargeLocked(pi *paymentIntent, m testMethod, pmID string) *charge {
	ch := &charge{customerID: pi.customerID, intentID: pi.ID}
	ch.chargeJSON = chargeJSON{
		ID: e.newIDLocked("ch_"), Object: "charge", Amount: pi.Amount,
		BillingDetails:                map[string]any{"address": nil, "email": pi.ReceiptEmail, "name": nil, "phone": nil},
		CalculatedStatementDescriptor: "PAYMENTD", Created: e.nowUnix(), Currency: pi.Currency, Description: pi.Description,
		FraudDetails: map[string]any{}, Metadata: cloneMeta(pi.Metadata),
		Outcome: map[string]any{"network_status": "approved_by_network", "reason": nil, "risk_level": "normal", "risk_score": 27,
			"seller_message": "Payment complete.", "type": "authorized"},
		PaymentMethod: pmID, PaymentMethodDetails: m.details(), ReceiptEmail: pi.ReceiptEmail,
	}
	pi.chargeID = ch.ID
	e.charges.add(ch)
	e.chargesByIntent[pi.ID] = append(e.chargesByIntent[pi.ID], ch)
	return ch
}

// succeedLocked marks ch and pi paid and records charge.succeeded and
// payment_intent.succeeded.
func (e *Emulator) succeedLocked(pi *paymentIntent, ch *charge, req eventRequestJSON) {
	ch.Status, ch.Paid, ch.Captured, ch.AmountCaptured = "succeeded", true, true, ch.Amount
	ch.ReceiptURL = "https://pay.stripe.com/receipts/payment/" + ch.ID
	pi.Status, pi.AmountReceived, pi.NextAction, pi.LastPaymentError = "succeeded", pi.Amount, nil, nil
	e.recordLocked("charge.succeeded", e.renderCharge(ch, nil), req, nil)
	e.recordLocked("payment_intent.succeeded", e.renderIntent(pi, nil), req, nil)
}

// declineMessages are the messages Stripe gives each decline code.
var declineMessages = map[string]string{
	"generic_decline":    "Your card was declined.",
	"insufficient_funds": "Your card has insufficient funds.",
}

// declineLocked records a declined card: a failed charge, the intent back
// in requires_payment_method with last_payment_error, charge.failed and
// payment_intent.payment_failed. It returns the 402 error Stripe answers.
func (e *Emulator) declineLocked(pi *paymentIntent, m testMethod, pmID string, req eventRequestJSON) *apiError {
	msg := declineMessages[m.declineCode]
	ch := e.intentChargeLocked(pi, m, pmID)
	ch.Status = "failed"
	ch.FailureCode, ch.FailureMessage = optString("card_declined"), optString(msg)
	ch.Outcome = map[string]any{"network_status": "declined_by_network", "reason": m.declineCode, "risk_level": "normal", "risk_score": 27,
		"seller_message": "The bank returned the decline code `" + m.declineCode + "`.", "type": "issuer_declined"}
	method := e.renderMethod(pmID, m, pi)
	pi.Status, pi.PaymentMethod = "requires_payment_method", nil
	pi.LastPaymentError = &paymentErrorJSON{Charge: ch.ID, Code: "card_declined", DeclineCode: m.declineCode,
		DocURL: "https://stripe.com/docs/error-codes/card-declined", Message: msg, PaymentMethod: method, Type: "card_error"}
	e.recordLocked("charge.failed", e.renderCharge(ch, nil), req, nil)
	snap := e.renderIntent(pi, nil)
	e.recordLocked("payment_intent.payment_failed", snap, req, nil)
	return &apiError{status: http.StatusPaymentRequired, Type: "card_error", Charge: ch.ID, Code: "card_declined", DeclineCode: m.declineCode,
		DocURL: "https://stripe.com/docs/error-codes/card-declined", Msg: msg, PaymentIntent: snap, PaymentMethod: method}
}

// authenticateLocked completes the 3-D Secure challenge of an intent in
// requires_action: approved, the payment goes through; failed, the intent
// returns to requires_payment_method with
// payment_intent_authentication_failure and payment_intent.payment_failed
// is recorded (no charge: the card network was never asked).
func (e *Emulator) authenticateLocked(pi *paymentIntent, approve bool, req eventRequestJSON) *apiError {
	if pi.Status != "requires_action" || pi.flow == nil || pi.flow.action == nil {
		return unexpectedState("PaymentIntent %s has no pending 3-D Secure challenge (status %s).", pi.ID, pi.Status)
	}
	m := *pi.flow.action
	pi.flow.action = nil
	pi.NextAction = nil
	if approve {
		ch := e.intentChargeLocked(pi, m, ptrValue(pi.PaymentMethod))
		e.succeedLocked(pi, ch, req)
		return nil
	}
	method := e.renderMethod(ptrValue(pi.PaymentMethod), m, pi)
	pi.Status, pi.PaymentMethod = "requires_payment_method", nil
	pi.LastPaymentError = &paymentErrorJSON{Code: "payment_intent_authentication_failure",
		DocURL:        "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
		Message:       "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
		PaymentMethod: method, Type: "invalid_request_error"}
	e.recordLocked("payment_intent.payment_failed", e.renderIntent(pi, nil), req, nil)
	return nil
}

// settleLocked settles a processing intent's debit: it succeeds, or it
// fails and the intent returns to requires_payment_method.
func (e *Emulator) settleLocked(pi *paymentIntent, succeed bool, req eventRequestJSON) *apiError {
	if pi.Status != "processing" || pi.flow == nil {
		return unexpectedState("PaymentIntent %s has no pending payment to settle (status %s).", pi.ID, pi.Status)
	}
	ch, ok := e.charges.get(pi.chargeID)
	if !ok {
		return unexpectedState("PaymentIntent %s has no charge to settle.", pi.ID)
	}
	if succeed {
		e.succeedLocked(pi, ch, req)
		return nil
	}
	ch.Status = "failed"
	ch.FailureCode, ch.FailureMessage = optString("insufficient_funds"), optString("The customer's account has insufficient funds to cover this payment.")
	ch.Outcome = map[string]any{"network_status": "declined_by_network", "reason": "insufficient_funds", "risk_level": "not_assessed",
		"seller_message": "The bank returned the decline code `insufficient_funds`.", "type": "issuer_declined"}
	pi.Status, pi.PaymentMethod = "requires_payment_method", nil
	pi.LastPaymentError = &paymentErrorJSON{Charge: ch.ID, Code: "payment_intent_payment_attempt_failed",
		DocURL:  "https://stripe.com/docs/error-codes/payment-intent-payment-attempt-failed",
		Message: "The latest payment attempt of this PaymentIntent has failed or been canceled, and the attached payment method has been removed. You can try confirming again with a new payment method.",
		Type:    "invalid_request_error"}
	e.recordLocked("charge.failed", e.renderCharge(ch, nil), req, nil)
	e.recordLocked("payment_intent.payment_failed", e.renderIntent(pi, nil), req, nil)
	return nil
}

// cancelable are the statuses cancel accepts.
var cancelable = []string{"requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"}

// cancellationReasons are the reasons a caller may give.
var cancellationReasons = []string{"duplicate", "fraudulent", "requested_by_customer", "abandoned"}

// cancelLocked cancels pi and records payment_intent.canceled.
func (e *Emulator) cancelLocked(pi *paymentIntent, reason string, req eventRequestJSON) *apiError {
	if reason != "" && !slices.Contains(cancellationReasons, reason) {
		return invalid("cancellation_reason", "", "Invalid cancellation_reason: must be one of %s", strings.Join(cancellationReasons, ", "))
	}
	if inv, _ := pi.Invoice.(string); inv != "" {
		return unexpectedState("You cannot cancel this PaymentIntent because it was created by invoice %s; void the invoice instead.", inv)
	}
	if !slices.Contains(cancelable, pi.Status) {
		return unexpectedState("You cannot cancel this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be canceled: %s.",
			pi.Status, strings.Join(cancelable, ", "))
	}
	now := e.nowUnix()
	pi.Status, pi.CanceledAt, pi.CancellationReason, pi.NextAction = "canceled", now, optString(reason), nil
	if pi.flow != nil {
		pi.flow.action, pi.flow.method = nil, nil
	}
	e.recordLocked("payment_intent.canceled", e.renderIntent(pi, nil), req, nil)
	return nil
}

// redirectAfter is where a buyer goes once a confirmation or challenge
// ends: returnURL with the query Stripe.js adds (payment_intent,
// payment_intent_client_secret, redirect_status).
func redirectAfter(returnURL string, pi *paymentIntent) (string, error) {
	u, err := url.Parse(returnURL)
	if err != nil {
		return "", fmt.Errorf("parse return_url: %w", err)
	}
	status := "failed"
	switch pi.Status {
	case "succeeded":
		status = "succeeded"
	case "processing":
		status = "processing"
	}
	q := u.Query()
	q.Set("payment_intent", pi.ID)
	q.Set("payment_intent_client_secret", pi.ClientSecret)
	q.Set("redirect_status", status)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// checkReturnURL refuses a return_url that is not an absolute http(s) URL.
func checkReturnURL(param, u string) *apiError {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return invalid(param, "url_invalid", "Not a valid URL: %s", u)
	}
	return nil
}
