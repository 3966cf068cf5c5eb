// Tests of payment intents created through the API for embedded payment
// forms: every outcome of a confirmation, 3-D Secure, bank debits settling
// on the clock, cancel, update, lists and search, each checked through
// stripe-go and the events recorded.

package stripeemu_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// returnURL is where the storefront wants buyers back.
const returnURL = "https://shop.example/orders/o1/return"

// intent creates a payment intent as paymentd's embedded checkout does:
// automatic payment methods, metadata, a description and a receipt email.
func (f *fixture) intent(amount int64, currency string, mod ...func(*stripe.PaymentIntentParams)) *stripe.PaymentIntent {
	f.t.Helper()
	p := &stripe.PaymentIntentParams{
		Amount: stripe.Int64(amount), Currency: stripe.String(currency),
		AutomaticPaymentMethods: &stripe.PaymentIntentAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)},
		Description:             stripe.String("Order o1"), ReceiptEmail: stripe.String("ada@example.com"),
		Metadata: map[string]string{"order_id": "o1", "user_id": "u1"},
	}
	for _, m := range mod {
		m(p)
	}
	pi, err := f.sc.PaymentIntents.New(p)
	if err != nil {
		f.t.Fatalf("create payment intent: %v", err)
	}
	return pi
}

// confirm confirms an intent through the API with a test payment method.
func (f *fixture) confirm(id, pm string) (*stripe.PaymentIntent, error) {
	return f.sc.PaymentIntents.Confirm(id, &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String(pm), ReturnURL: stripe.String(returnURL)})
}

// getIntent retrieves an intent with its latest charge expanded.
func (f *fixture) getIntent(id string) *stripe.PaymentIntent {
	f.t.Helper()
	p := &stripe.PaymentIntentParams{}
	p.AddExpand("latest_charge")
	pi, err := f.sc.PaymentIntents.Get(id, p)
	if err != nil {
		f.t.Fatalf("get payment intent: %v", err)
	}
	return pi
}

// intentSnapshot decodes the payment intent inside an event.
func intentSnapshot(t *testing.T, ev *stripe.Event) *stripe.PaymentIntent {
	t.Helper()
	var pi stripe.PaymentIntent
	if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil {
		t.Fatal(err)
	}
	return &pi
}

func TestPaymentIntentSucceeds(t *testing.T) {
	f := newFixture(t)
	cu, err := f.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("ada@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	from := len(f.emu.Events())
	var first *stripe.PaymentIntent
	for range 2 { // the same idempotency key makes one intent
		first = f.intent(4998, "usd", func(p *stripe.PaymentIntentParams) {
			p.Customer = stripe.String(cu.ID)
			p.SetIdempotencyKey("order-o1-intent")
		})
	}
	if n := len(f.emu.PaymentIntents()); n != 1 {
		t.Fatalf("%d intents after an idempotent retry, want 1", n)
	}
	pi := first
	if pi.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || !strings.HasPrefix(pi.ClientSecret, pi.ID+"_secret_") ||
		pi.Amount != 4998 || pi.Currency != "usd" || pi.Customer.ID != cu.ID || pi.Metadata["order_id"] != "o1" ||
		!pi.AutomaticPaymentMethods.Enabled || pi.AutomaticPaymentMethods.AllowRedirects != "always" || pi.LatestCharge != nil {
		t.Fatalf("new intent = %+v", pi)
	}
	if got := strings.Join(pi.PaymentMethodTypes, ","); got != "card,us_bank_account" {
		t.Fatalf("payment_method_types = %s", got)
	}

	f.clk.Advance(time.Minute)
	paid, err := f.sc.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{
		PaymentMethod: stripe.String("pm_card_visa"), ReturnURL: stripe.String(returnURL),
		Params: stripe.Params{IdempotencyKey: stripe.String("confirm-1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := f.getIntent(pi.ID)
	ch := got.LatestCharge
	if paid.Status != stripe.PaymentIntentStatusSucceeded || got.AmountReceived != 4998 || got.PaymentMethod == nil || !strings.HasPrefix(got.PaymentMethod.ID, "pm_") ||
		ch.Status != stripe.ChargeStatusSucceeded || !ch.Paid || ch.Amount != 4998 || ch.PaymentIntent.ID != pi.ID || ch.Customer.ID != cu.ID ||
		ch.PaymentMethodDetails.Card.Last4 != "4242" || ch.Metadata["order_id"] != "o1" || ch.ReceiptEmail != "ada@example.com" {
		t.Fatalf("paid intent = %+v\ncharge = %+v", got, ch)
	}
	if _, err := f.confirm(pi.ID, "pm_card_visa"); err == nil {
		t.Fatal("a succeeded intent was confirmed again")
	} else {
		stripeErr(t, err, 400, "payment_intent_unexpected_state", "")
	}

	// Events, in order, each a snapshot of the moment.
	sameStrings(t, "events", f.eventLog(start, from), []string{
		"payment_intent.created@0s", "charge.succeeded@1m0s", "payment_intent.succeeded@1m0s"})
	evs := f.emu.Events()[from:]
	created, succeeded := intentSnapshot(t, evs[0]), intentSnapshot(t, evs[2])
	if created.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || created.LatestCharge != nil ||
		succeeded.Status != stripe.PaymentIntentStatusSucceeded || succeeded.LatestCharge.ID != ch.ID || succeeded.AmountReceived != 4998 {
		t.Fatalf("snapshots: created %+v, succeeded %+v", created, succeeded)
	}
	if evs[1].Request == nil || evs[1].Request.IdempotencyKey != "confirm-1" || evs[1].Data.Object["id"] != ch.ID {
		t.Fatalf("charge.succeeded = %+v", evs[1])
	}

	// Refunds of these charges work as Checkout's do.
	re, err := f.sc.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(pi.ID), Amount: stripe.Int64(998)})
	if err != nil || re.Amount != 998 || re.Charge.ID != ch.ID {
		t.Fatalf("refund = %+v, %v", re, err)
	}
	if _, err := f.emu.OpenDispute(pi.ID); err != nil {
		t.Fatalf("dispute: %v", err)
	}
}

func TestDeclineThenSuccessOnTheSameIntent(t *testing.T) {
	f := newFixture(t)
	pi := f.intent(2500, "eur")
	from := len(f.emu.Events())

	_, err := f.confirm(pi.ID, "pm_card_chargeDeclinedInsufficientFunds")
	se := stripeErr(t, err, 402, "card_declined", "")
	if se.DeclineCode != "insufficient_funds" || se.Type != stripe.ErrorTypeCard || se.PaymentIntent == nil ||
		se.PaymentIntent.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || se.ChargeID == "" {
		t.Fatalf("decline error = %+v", se)
	}
	got := f.getIntent(pi.ID)
	le := got.LastPaymentError
	if got.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || got.PaymentMethod != nil || le == nil || le.Code != "card_declined" ||
		le.DeclineCode != "insufficient_funds" || le.Msg != "Your card has insufficient funds." || le.ChargeID != got.LatestCharge.ID ||
		got.LatestCharge.Status != stripe.ChargeStatusFailed || got.LatestCharge.FailureCode != "card_declined" {
		t.Fatalf("after a decline: %+v, error %+v, charge %+v", got, le, got.LatestCharge)
	}
	failedCharge := got.LatestCharge.ID

	// The buyer tries another card on the same intent.
	if _, err := f.confirm(pi.ID, "pm_card_visa"); err != nil {
		t.Fatal(err)
	}
	got = f.getIntent(pi.ID)
	if got.Status != stripe.PaymentIntentStatusSucceeded || got.LastPaymentError != nil || got.LatestCharge.ID == failedCharge ||
		got.LatestCharge.Status != stripe.ChargeStatusSucceeded {
		t.Fatalf("second try: %+v", got)
	}
	it := f.sc.Charges.List(&stripe.ChargeListParams{PaymentIntent: stripe.String(pi.ID)})
	var statuses []string
	for it.Next() {
		statuses = append(statuses, string(it.Charge().Status))
	}
	sameStrings(t, "charges, newest first", statuses, []string{"succeeded", "failed"})
	sameStrings(t, "events", f.eventLog(start, from), []string{
		"charge.failed@0s", "payment_intent.payment_failed@0s", "charge.succeeded@0s", "payment_intent.succeeded@0s"})
	failed := intentSnapshot(t, f.eventsOf("payment_intent.payment_failed")[0])
	if failed.LastPaymentError == nil || failed.LastPaymentError.DeclineCode != "insufficient_funds" || failed.LatestCharge.ID != failedCharge {
		t.Fatalf("payment_failed snapshot = %+v", failed)
	}

	// A decline is a result: retried with its idempotency key, it is
	// replayed, not attempted again.
	again := f.intent(2500, "eur")
	key := http.Header{"Authorization": {"Bearer sk_test_x"}, "Idempotency-Key": {"confirm-again"}}
	form := url.Values{"payment_method": {"pm_card_chargeDeclined"}, "return_url": {returnURL}}
	first, body1 := f.raw(http.MethodPost, "/v1/payment_intents/"+again.ID+"/confirm", form, key)
	second, body2 := f.raw(http.MethodPost, "/v1/payment_intents/"+again.ID+"/confirm", form, key)
	if first.StatusCode != 402 || second.StatusCode != 402 || second.Header.Get("Idempotent-Replayed") != "true" || body1 != body2 {
		t.Fatalf("retried decline: %d then %d (replayed %q)", first.StatusCode, second.StatusCode, second.Header.Get("Idempotent-Replayed"))
	}
	if n := len(f.eventsOf("charge.failed")); n != 2 {
		t.Fatalf("%d failed charges after a replayed decline, want 2", n)
	}

	// The Go operation: a generic decline matches ErrCardDeclined, and a
	// good card then pays.
	op := f.intent(1500, "eur")
	declined, err := f.emu.ConfirmPaymentIntent(op.ID, stripeemu.OutcomeDeclined)
	if !errors.Is(err, stripeemu.ErrCardDeclined) || errors.Is(err, stripeemu.ErrInvalid) || declined.LastPaymentError.DeclineCode != "generic_decline" {
		t.Fatalf("declined op = %+v, %v", declined, err)
	}
	if paid, err := f.emu.ConfirmPaymentIntent(op.ID, stripeemu.OutcomeSucceeds); err != nil || paid.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("second op = %+v, %v", paid, err)
	}
	if _, err := f.emu.ConfirmPaymentIntent(op.ID, stripeemu.OutcomeSucceeds); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("confirming a succeeded intent = %v", err)
	}
}

func TestThreeDSecureApproveAndFail(t *testing.T) {
	f := newFixture(t)
	pi := f.intent(3000, "usd")
	from := len(f.emu.Events())
	got, err := f.confirm(pi.ID, "pm_card_threeDSecure2Required")
	if err != nil {
		t.Fatal(err)
	}
	na := got.NextAction
	if got.Status != stripe.PaymentIntentStatusRequiresAction || na == nil || na.Type != "redirect_to_url" ||
		na.RedirectToURL.URL != f.srv.URL+"/elements/"+pi.ClientSecret+"/3ds" || na.RedirectToURL.ReturnURL != returnURL || got.LatestCharge != nil {
		t.Fatalf("requires_action = %+v, next_action %+v", got, na)
	}
	if err := f.emu.AuthenticatePaymentIntent(pi.ID, true); err != nil {
		t.Fatal(err)
	}
	if got := f.getIntent(pi.ID); got.Status != stripe.PaymentIntentStatusSucceeded || got.NextAction != nil || got.LatestCharge.PaymentMethodDetails.Card.Last4 != "3220" {
		t.Fatalf("approved: %+v", got)
	}
	sameStrings(t, "events", f.eventLog(start, from), []string{
		"payment_intent.requires_action@0s", "charge.succeeded@0s", "payment_intent.succeeded@0s"})

	// A failed challenge: no charge, the intent open for another card.
	pi = f.intent(3000, "usd")
	from = len(f.emu.Events())
	if _, err := f.emu.ConfirmPaymentIntent(pi.ID, stripeemu.OutcomeRequires3DS); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.AuthenticatePaymentIntent(pi.ID, false); err != nil {
		t.Fatal(err)
	}
	got = f.getIntent(pi.ID)
	if got.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || got.LastPaymentError.Code != "payment_intent_authentication_failure" || got.LatestCharge != nil {
		t.Fatalf("failed challenge: %+v", got)
	}
	if err := f.emu.AuthenticatePaymentIntent(pi.ID, true); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("answering no challenge = %v", err)
	}
	if _, err := f.emu.ConfirmPaymentIntent(pi.ID, stripeemu.OutcomeSucceeds); err != nil {
		t.Fatal(err)
	}
	sameStrings(t, "events", f.eventLog(start, from), []string{
		"payment_intent.requires_action@0s", "payment_intent.payment_failed@0s", "charge.succeeded@0s", "payment_intent.succeeded@0s"})
}

// sepaDebit confirms an EUR intent with a test IBAN, as Stripe.js sends a
// SEPA Direct Debit.
func (f *fixture) sepaDebit(id, iban string) (*stripe.PaymentIntent, error) {
	return f.sc.PaymentIntents.Confirm(id, &stripe.PaymentIntentConfirmParams{
		ReturnURL: stripe.String(returnURL),
		PaymentMethodData: &stripe.PaymentIntentPaymentMethodDataParams{Type: stripe.String("sepa_debit"),
			SEPADebit:      &stripe.PaymentMethodSEPADebitParams{IBAN: stripe.String(iban)},
			BillingDetails: &stripe.PaymentIntentPaymentMethodDataBillingDetailsParams{Name: stripe.String("Ada"), Email: stripe.String("ada@example.com")}},
		MandateData: &stripe.PaymentIntentMandateDataParams{CustomerAcceptance: &stripe.PaymentIntentMandateDataCustomerAcceptanceParams{
			Type: stripe.String("online"), Online: &stripe.PaymentIntentMandateDataCustomerAcceptanceOnlineParams{IPAddress: stripe.String("203.0.113.9"), UserAgent: stripe.String("test")}}},
	})
}

func TestBankDebitsSettleOnTheClock(t *testing.T) {
	f := newFixture(t)
	ok, bad := f.intent(9900, "eur"), f.intent(9900, "eur")
	from := len(f.emu.Events())
	got, err := f.sepaDebit(ok.ID, "DE89370400440532013000")
	if err != nil || got.Status != stripe.PaymentIntentStatusProcessing {
		t.Fatalf("debit = %+v, %v", got, err)
	}
	if got := f.getIntent(ok.ID); got.LatestCharge.Status != stripe.ChargeStatusPending || got.LatestCharge.PaymentMethodDetails.SEPADebit.Last4 != "3000" {
		t.Fatalf("pending charge = %+v", got.LatestCharge)
	}
	if _, err := f.sc.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(ok.ID)}); err == nil {
		t.Fatal("a processing payment was refunded")
	}
	if _, err := f.sepaDebit(bad.ID, "DE62370400440532013001"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sc.PaymentIntents.Cancel(ok.ID, nil); err == nil {
		t.Fatal("a processing intent was canceled")
	}

	f.clk.Advance(stripeemu.DefaultAsyncSettleDelay - time.Second)
	if got := f.getIntent(ok.ID); got.Status != stripe.PaymentIntentStatusProcessing {
		t.Fatalf("settled early: %s", got.Status)
	}
	f.clk.Advance(time.Hour) // settlements happen at their own time, not when noticed
	if got := f.getIntent(ok.ID); got.Status != stripe.PaymentIntentStatusSucceeded || got.LatestCharge.Status != stripe.ChargeStatusSucceeded {
		t.Fatalf("after the delay: %+v", got)
	}
	if got := f.getIntent(bad.ID); got.Status != stripe.PaymentIntentStatusRequiresPaymentMethod ||
		got.LastPaymentError.Code != "payment_intent_payment_attempt_failed" || got.LatestCharge.Status != stripe.ChargeStatusFailed {
		t.Fatalf("failed debit: %+v", got)
	}
	sameStrings(t, "events", f.eventLog(start, from), []string{
		"charge.pending@0s", "payment_intent.processing@0s", "charge.pending@0s", "payment_intent.processing@0s",
		"charge.succeeded@3m0s", "payment_intent.succeeded@3m0s", "charge.failed@3m0s", "payment_intent.payment_failed@3m0s"})

	// Settling now (a Go operation) leaves nothing for the timer to do.
	early := f.intent(9900, "usd")
	if err := f.emu.SetPaymentSettings(stripeemu.PaymentSettings{AsyncSettleDelay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got, err := f.emu.ConfirmPaymentIntent(early.ID, stripeemu.OutcomeAsyncSucceeds); err != nil || got.Status != stripe.PaymentIntentStatusProcessing ||
		got.PaymentMethodTypes[1] != "us_bank_account" {
		t.Fatalf("ACH debit = %+v, %v", got, err)
	}
	if err := f.emu.SettlePaymentIntent(early.ID, false); err != nil {
		t.Fatal(err)
	}
	n := len(f.eventsOf("payment_intent.payment_failed"))
	f.clk.Advance(2 * time.Hour)
	f.emu.Tick()
	if got := len(f.eventsOf("payment_intent.payment_failed")); got != n {
		t.Fatalf("the stale timer recorded %d more failures", got-n)
	}
	if err := f.emu.SettlePaymentIntent(early.ID, true); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("settling a settled intent = %v", err)
	}
	if _, err := f.emu.ConfirmPaymentIntent(f.intent(500, "gbp").ID, stripeemu.OutcomeAsyncSucceeds); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("a bank debit in gbp = %v", err)
	}
}

func TestCancelPaymentIntent(t *testing.T) {
	f := newFixture(t)
	pi := f.intent(2000, "usd")
	_, err := f.sc.PaymentIntents.Cancel(pi.ID, &stripe.PaymentIntentCancelParams{CancellationReason: stripe.String("fishing")})
	stripeErr(t, err, 400, "", "cancellation_reason")
	f.clk.Advance(time.Minute)
	got, err := f.sc.PaymentIntents.Cancel(pi.ID, &stripe.PaymentIntentCancelParams{CancellationReason: stripe.String("abandoned")})
	if err != nil || got.Status != stripe.PaymentIntentStatusCanceled || got.CancellationReason != "abandoned" || got.CanceledAt != start.Add(time.Minute).Unix() {
		t.Fatalf("canceled = %+v, %v", got, err)
	}
	evs := f.eventsOf("payment_intent.canceled")
	if len(evs) != 1 || intentSnapshot(t, evs[0]).Status != stripe.PaymentIntentStatusCanceled {
		t.Fatalf("canceled events = %d", len(evs))
	}
	_, err = f.sc.PaymentIntents.Cancel(pi.ID, nil)
	stripeErr(t, err, 400, "payment_intent_unexpected_state", "")
	_, err = f.confirm(pi.ID, "pm_card_visa")
	stripeErr(t, err, 400, "payment_intent_unexpected_state", "")
	_, err = f.sc.PaymentIntents.Update(pi.ID, &stripe.PaymentIntentParams{Metadata: map[string]string{"a": "b"}})
	stripeErr(t, err, 400, "payment_intent_unexpected_state", "")

	// A requires_action intent may be canceled; a succeeded one may not.
	action := f.intent(2000, "usd")
	if _, err := f.emu.ConfirmPaymentIntent(action.ID, stripeemu.OutcomeRequires3DS); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.CancelPaymentIntent(action.ID, "requested_by_customer"); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.AuthenticatePaymentIntent(action.ID, true); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("challenge of a canceled intent = %v", err)
	}
	paid := f.intent(2000, "usd")
	if _, err := f.emu.ConfirmPaymentIntent(paid.ID, stripeemu.OutcomeSucceeds); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.CancelPaymentIntent(paid.ID, ""); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("cancel a succeeded intent = %v", err)
	}
	if err := f.emu.CancelPaymentIntent("pi_missing", ""); !errors.Is(err, stripeemu.ErrNotFound) {
		t.Fatalf("cancel a missing intent = %v", err)
	}
	// An invoice's intent is the invoice's to void, not the caller's to
	// cancel.
	sess := f.subSession(f.recurringPrice(f.product("Pro").ID, 900, "month", "").ID)
	if err := f.emu.PaySession(sess.ID, stripeemu.Pay{Email: "cy@example.com", Decline: true}); !errors.Is(err, stripeemu.ErrCardDeclined) {
		t.Fatalf("declined subscription checkout = %v", err)
	}
	var invoiceIntent *stripe.PaymentIntent
	for _, pi := range f.emu.PaymentIntents() {
		if pi.Invoice != nil {
			invoiceIntent = pi
		}
	}
	if invoiceIntent == nil || invoiceIntent.Status != stripe.PaymentIntentStatusRequiresPaymentMethod {
		t.Fatalf("invoice intent = %+v", invoiceIntent)
	}
	_, err = f.sc.PaymentIntents.Cancel(invoiceIntent.ID, nil)
	stripeErr(t, err, 400, "payment_intent_unexpected_state", "")
}

func TestUpdatePaymentIntent(t *testing.T) {
	f := newFixture(t)
	pi := f.intent(2000, "usd")
	got, err := f.sc.PaymentIntents.Update(pi.ID, &stripe.PaymentIntentParams{Amount: stripe.Int64(2600),
		Metadata: map[string]string{"user_id": "", "cart_version": "2"}, Description: stripe.String("Order o1, two lines")})
	if err != nil || got.Amount != 2600 || got.Metadata["order_id"] != "o1" || got.Metadata["cart_version"] != "2" || got.Metadata["user_id"] != "" ||
		got.Description != "Order o1, two lines" || got.Status != stripe.PaymentIntentStatusRequiresPaymentMethod {
		t.Fatalf("updated = %+v, %v", got, err)
	}
	_, err = f.sc.PaymentIntents.Update(pi.ID, &stripe.PaymentIntentParams{Amount: stripe.Int64(10), Description: stripe.String("x")})
	stripeErr(t, err, 400, "amount_too_small", "amount")
	if got := f.getIntent(pi.ID); got.Amount != 2600 || got.Description != "Order o1, two lines" {
		t.Fatalf("a refused update changed %+v", got)
	}
	if _, err := f.emu.ConfirmPaymentIntent(pi.ID, stripeemu.OutcomeSucceeds); err != nil {
		t.Fatal(err)
	}
	_, err = f.sc.PaymentIntents.Update(pi.ID, &stripe.PaymentIntentParams{Amount: stripe.Int64(3000)})
	stripeErr(t, err, 400, "payment_intent_unexpected_state", "")
	if got, err := f.sc.PaymentIntents.Update(pi.ID, &stripe.PaymentIntentParams{Metadata: map[string]string{"fulfilled": "yes"}}); err != nil || got.Metadata["fulfilled"] != "yes" || got.Amount != 2600 {
		t.Fatalf("metadata after success = %+v, %v", got, err)
	}

	// A payment method attached by update, confirmed later.
	later := f.intent(2000, "usd")
	attached, err := f.sc.PaymentIntents.Update(later.ID, &stripe.PaymentIntentParams{PaymentMethod: stripe.String("pm_card_visa")})
	if err != nil || attached.Status != stripe.PaymentIntentStatusRequiresConfirmation {
		t.Fatalf("attach = %+v, %v", attached, err)
	}
	done, err := f.sc.PaymentIntents.Confirm(later.ID, &stripe.PaymentIntentConfirmParams{ReturnURL: stripe.String(returnURL)})
	if err != nil || done.Status != stripe.PaymentIntentStatusSucceeded || done.PaymentMethod.ID != attached.PaymentMethod.ID {
		t.Fatalf("confirm the attached method = %+v, %v", done, err)
	}
}

func TestCreatePaymentIntentValidation(t *testing.T) {
	f := newFixture(t)
	bad := []struct {
		name, code, param string
		params            *stripe.PaymentIntentParams
	}{
		{"no amount", "parameter_missing", "amount", &stripe.PaymentIntentParams{Currency: stripe.String("usd")}},
		{"no currency", "parameter_missing", "currency", &stripe.PaymentIntentParams{Amount: stripe.Int64(100)}},
		{"too small", "amount_too_small", "amount", &stripe.PaymentIntentParams{Amount: stripe.Int64(49), Currency: stripe.String("usd")}},
		{"unknown customer", "resource_missing", "customer", &stripe.PaymentIntentParams{Amount: stripe.Int64(100), Currency: stripe.String("usd"), Customer: stripe.String("cus_nope")}},
		{"both method settings", "", "payment_method_types", &stripe.PaymentIntentParams{Amount: stripe.Int64(100), Currency: stripe.String("usd"),
			AutomaticPaymentMethods: &stripe.PaymentIntentAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)}, PaymentMethodTypes: stripe.StringSlice([]string{"card"})}},
		{"manual capture", "", "capture_method", &stripe.PaymentIntentParams{Amount: stripe.Int64(100), Currency: stripe.String("usd"), CaptureMethod: stripe.String("manual")}},
		{"confirm without return_url", "", "return_url", &stripe.PaymentIntentParams{Amount: stripe.Int64(100), Currency: stripe.String("usd"),
			Confirm: stripe.Bool(true), PaymentMethod: stripe.String("pm_card_visa")}},
		{"unknown payment method", "resource_missing", "payment_method", &stripe.PaymentIntentParams{Amount: stripe.Int64(100), Currency: stripe.String("usd"),
			Confirm: stripe.Bool(true), PaymentMethod: stripe.String("pm_card_unheard_of"), ReturnURL: stripe.String(returnURL)}},
		{"raw card number", "", "payment_method_data[card][number]", &stripe.PaymentIntentParams{Amount: stripe.Int64(100), Currency: stripe.String("usd"),
			PaymentMethodData: &stripe.PaymentIntentPaymentMethodDataParams{Type: stripe.String("card")}}},
		{"sepa without a mandate", "parameter_missing", "mandate_data", &stripe.PaymentIntentParams{Amount: stripe.Int64(100), Currency: stripe.String("eur"),
			PaymentMethodData: &stripe.PaymentIntentPaymentMethodDataParams{Type: stripe.String("sepa_debit"), SEPADebit: &stripe.PaymentMethodSEPADebitParams{IBAN: stripe.String("DE89370400440532013000")},
				BillingDetails: &stripe.PaymentIntentPaymentMethodDataBillingDetailsParams{Name: stripe.String("Ada"), Email: stripe.String("ada@example.com")}}}},
	}
	for _, c := range bad {
		_, err := f.sc.PaymentIntents.New(c.params)
		if err == nil {
			t.Fatalf("%s: accepted", c.name)
		}
		stripeErr(t, err, 400, stripe.ErrorCode(c.code), c.param)
	}
	if n := len(f.emu.PaymentIntents()); n != 0 {
		t.Fatalf("refused requests made %d intents", n)
	}
	if n := len(f.emu.Events()); n != 0 {
		t.Fatalf("refused requests recorded %d events", n)
	}

	// allow_redirects=never needs no return_url, and confirm=true pays at
	// creation.
	pi, err := f.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(100), Currency: stripe.String("usd"),
		AutomaticPaymentMethods: &stripe.PaymentIntentAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true), AllowRedirects: stripe.String("never")},
		Confirm:                 stripe.Bool(true), PaymentMethod: stripe.String("pm_card_visa")})
	if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("confirm at creation = %+v, %v", pi, err)
	}
	// Without automatic payment methods or types, since 2023-08-16
	// automatic payment methods are on.
	def := f.intent(100, "usd", func(p *stripe.PaymentIntentParams) { p.AutomaticPaymentMethods = nil })
	if def.AutomaticPaymentMethods == nil || !def.AutomaticPaymentMethods.Enabled {
		t.Fatalf("default automatic_payment_methods = %+v", def.AutomaticPaymentMethods)
	}
	cardOnly := f.intent(100, "usd", func(p *stripe.PaymentIntentParams) {
		p.AutomaticPaymentMethods, p.PaymentMethodTypes = nil, stripe.StringSlice([]string{"card"})
	})
	if cardOnly.AutomaticPaymentMethods != nil || strings.Join(cardOnly.PaymentMethodTypes, ",") != "card" {
		t.Fatalf("card only = %+v", cardOnly)
	}
	if _, err := f.emu.ConfirmPaymentIntent(cardOnly.ID, stripeemu.OutcomeAsyncSucceeds); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("a bank debit on a card-only intent = %v", err)
	}
}

func TestListSearchAndPublishableRetrieve(t *testing.T) {
	f := newFixture(t)
	a, _ := f.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("a@example.com")})
	b, _ := f.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("b@example.com")})
	var ids []string
	for i, cu := range []string{a.ID, b.ID, a.ID, a.ID} {
		pi := f.intent(int64(1000+i), "usd", func(p *stripe.PaymentIntentParams) {
			p.Customer = stripe.String(cu)
			p.Metadata = map[string]string{"order_id": "o" + string(rune('1'+i))}
		})
		ids = append(ids, pi.ID)
		f.clk.Advance(time.Hour)
	}
	list := func(p *stripe.PaymentIntentListParams) []string {
		var out []string
		it := f.sc.PaymentIntents.List(p)
		for it.Next() {
			out = append(out, it.PaymentIntent().ID)
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return out
	}
	sameStrings(t, "customer a", list(&stripe.PaymentIntentListParams{Customer: stripe.String(a.ID)}), []string{ids[3], ids[2], ids[0]})
	p := &stripe.PaymentIntentListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: start.Add(time.Hour).Unix()}}
	p.Limit = stripe.Int64(1) // paging one at a time
	sameStrings(t, "since an hour in", list(p), []string{ids[3], ids[2], ids[1]})

	search := func(q string) []string {
		var out []string
		it := f.sc.PaymentIntents.Search(&stripe.PaymentIntentSearchParams{SearchParams: stripe.SearchParams{Query: q}})
		for it.Next() {
			out = append(out, it.PaymentIntent().ID)
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return out
	}
	sameStrings(t, "by metadata", search("metadata['order_id']:'o3'"), []string{ids[2]})
	if _, err := f.emu.ConfirmPaymentIntent(ids[1], stripeemu.OutcomeSucceeds); err != nil {
		t.Fatal(err)
	}
	sameStrings(t, "by status and customer", search("status:'succeeded' AND customer:'"+b.ID+"'"), []string{ids[1]})
	res, body := f.raw(http.MethodGet, "/v1/payment_intents/search?query="+url.QueryEscape("flavor:'lime'"), nil, http.Header{"Authorization": {"Bearer sk_test_x"}})
	if res.StatusCode != 400 || !strings.Contains(body, "flavor") {
		t.Fatalf("search by an unknown field: %d %s", res.StatusCode, body)
	}

	// A publishable key reads an intent with its client secret only, and
	// sees none of the server-side fields.
	pi := f.getIntent(ids[1])
	pk := http.Header{"Authorization": {"Bearer pk_test_x"}}
	res, body = f.raw(http.MethodGet, "/v1/payment_intents/"+pi.ID+"?client_secret="+url.QueryEscape(pi.ClientSecret), nil, pk)
	var seen map[string]any
	if err := json.Unmarshal([]byte(body), &seen); err != nil || res.StatusCode != 200 || seen["status"] != "succeeded" || seen["client_secret"] != pi.ClientSecret {
		t.Fatalf("publishable retrieve: %d %s", res.StatusCode, body)
	}
	for _, k := range []string{"customer", "metadata", "latest_charge"} {
		if _, ok := seen[k]; ok {
			t.Errorf("a publishable key sees %s", k)
		}
	}
	for path, want := range map[string]int{
		"/v1/payment_intents/" + pi.ID + "?client_secret=" + url.QueryEscape(ids[0]+"_secret_nope"): 400,
		"/v1/payment_intents/" + pi.ID:                                            401,
		"/v1/payment_intents?client_secret=" + url.QueryEscape(pi.ClientSecret):   401,
		"/v1/charges/" + pi.LatestCharge.ID + "?client_secret=" + pi.ClientSecret: 401,
	} {
		if res, body := f.raw(http.MethodGet, path, nil, pk); res.StatusCode != want {
			t.Errorf("GET %s with a publishable key: %d %s, want %d", path, res.StatusCode, body, want)
		}
	}
}
