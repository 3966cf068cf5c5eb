// Go operations on payment intents created through the API, for tests and
// dev tools: confirm with a chosen outcome (what the buyer's browser does
// through Stripe.js), answer a 3-D Secure challenge, settle a bank debit
// now, cancel, and copies of intents as stripe-go decodes them. Each records
// the events the API would, with no request (as for changes made outside
// the API).

package stripeemu

import (
	"net/http"

	"github.com/stripe/stripe-go/v76"
)

// apiIntentLocked returns the API payment intent id, after applying due
// transitions.
func (e *Emulator) apiIntentLocked(op, id string) (*paymentIntent, error) {
	e.tickLocked()
	pi, ok := e.intents.get(id)
	if !ok {
		return nil, opError(op, missing("payment_intent", id))
	}
	return pi, nil
}

// ConfirmPaymentIntent confirms a payment intent with the test payment
// method that has outcome o. A declined card returns the intent and an
// error matching ErrCardDeclined; the intent is back in
// requires_payment_method for another try. A confirmation the intent's
// status does not allow matches ErrInvalid and changes nothing.
func (e *Emulator) ConfirmPaymentIntent(id string, o Outcome) (*stripe.PaymentIntent, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, err := e.apiIntentLocked("confirm payment intent", id)
	if err != nil {
		return nil, err
	}
	m, ae := methodFor(o, pi.Currency)
	if ae == nil {
		ae = e.confirmLocked(pi, m, e.newIDLocked("pm_"), "", eventRequestJSON{})
	}
	if ae != nil && ae.status != http.StatusPaymentRequired {
		return nil, opError("confirm payment intent "+id, ae)
	}
	out, err := decodeAs[stripe.PaymentIntent](e.renderIntent(pi, nil))
	if err != nil {
		return nil, err
	}
	return out, opError("confirm payment intent "+id, ae)
}

// AuthenticatePaymentIntent answers the 3-D Secure challenge of an intent
// in requires_action: approved, the payment succeeds; failed, the intent
// returns to requires_payment_method with
// payment_intent_authentication_failure.
func (e *Emulator) AuthenticatePaymentIntent(id string, approve bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, err := e.apiIntentLocked("authenticate payment intent", id)
	if err != nil {
		return err
	}
	return opError("authenticate payment intent "+id, e.authenticateLocked(pi, approve, eventRequestJSON{}))
}

// SettlePaymentIntent settles a processing bank debit now, before its time
// on the clock: it succeeds, or fails and leaves the intent in
// requires_payment_method.
func (e *Emulator) SettlePaymentIntent(id string, succeed bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, err := e.apiIntentLocked("settle payment intent", id)
	if err != nil {
		return err
	}
	return opError("settle payment intent "+id, e.settleLocked(pi, succeed, eventRequestJSON{}))
}

// CancelPaymentIntent cancels an intent, as POST .../cancel does; reason
// is a cancellation_reason or "".
func (e *Emulator) CancelPaymentIntent(id, reason string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, err := e.apiIntentLocked("cancel payment intent", id)
	if err != nil {
		return err
	}
	return opError("cancel payment intent "+id, e.cancelLocked(pi, reason, eventRequestJSON{}))
}

// PaymentIntent returns a copy of a payment intent, whoever created it.
func (e *Emulator) PaymentIntent(id string) (*stripe.PaymentIntent, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, ok := e.intents.get(id)
	if !ok {
		return nil, opError("payment intent", missing("payment_intent", id))
	}
	return decodeAs[stripe.PaymentIntent](e.renderIntent(pi, nil))
}

// PaymentIntents returns copies of every payment intent, oldest first.
func (e *Emulator) PaymentIntents() []*stripe.PaymentIntent {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*stripe.PaymentIntent, 0, len(e.intents.items))
	for _, pi := range e.intents.items {
		if c, err := decodeAs[stripe.PaymentIntent](e.renderIntent(pi, nil)); err == nil {
			out = append(out, c)
		}
	}
	return out
}
