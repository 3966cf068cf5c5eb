// Tests of the payment lifecycle: paying, async settlement, expiry,
// refunds and disputes, each checked through the API and its events.

package stripeemu_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// events lists events of the given types through the API, newest first.
func (f *fixture) events(types ...string) []*stripe.Event {
	f.t.Helper()
	params := &stripe.EventListParams{}
	for _, t := range types {
		params.Types = append(params.Types, stripe.String(t))
	}
	it := f.sc.Events.List(params)
	var out []*stripe.Event
	for it.Next() {
		out = append(out, it.Event())
	}
	if it.Err() != nil {
		f.t.Fatal(it.Err())
	}
	return out
}

func TestPaySessionRecordsCompleted(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Course").ID, 2500, "")
	s := f.session(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.ConsentCollection = &stripe.CheckoutSessionConsentCollectionParams{Promotions: stripe.String("auto")}
		p.PaymentIntentData = &stripe.CheckoutSessionPaymentIntentDataParams{Metadata: map[string]string{"order": "o1"}}
	})
	f.clk.Advance(5 * time.Minute)
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{Email: "buyer@example.com", Name: "Ada", ConsentPromotions: "opt_in"}); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{}); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("second pay = %v", err)
	}

	params := &stripe.CheckoutSessionParams{}
	params.AddExpand("payment_intent.latest_charge")
	got, err := f.sc.CheckoutSessions.Get(s.ID, params)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != stripe.CheckoutSessionStatusComplete || got.PaymentStatus != stripe.CheckoutSessionPaymentStatusPaid || got.URL != "" {
		t.Fatalf("paid session = %s/%s url %q", got.Status, got.PaymentStatus, got.URL)
	}
	if !strings.HasPrefix(got.Customer.ID, "cus_") || got.CustomerDetails.Email != "buyer@example.com" || got.CustomerDetails.Name != "Ada" || got.Consent.Promotions != "opt_in" {
		t.Fatalf("customer/consent = %+v %+v %+v", got.Customer, got.CustomerDetails, got.Consent)
	}
	pi := got.PaymentIntent
	if !strings.HasPrefix(pi.ID, "pi_") || pi.Status != stripe.PaymentIntentStatusSucceeded || pi.Amount != 2500 || pi.AmountReceived != 2500 || pi.Metadata["order"] != "o1" || pi.Customer.ID != got.Customer.ID {
		t.Fatalf("payment intent = %+v", pi)
	}
	ch := pi.LatestCharge
	if !strings.HasPrefix(ch.ID, "ch_") || ch.Status != stripe.ChargeStatusSucceeded || !ch.Paid || ch.Amount != 2500 || ch.PaymentIntent.ID != pi.ID || ch.Created != start.Add(5*time.Minute).Unix() {
		t.Fatalf("charge = %+v", ch)
	}

	// payment_intents and charges endpoints agree.
	gpi, err := f.sc.PaymentIntents.Get(pi.ID, nil)
	if err != nil || gpi.LatestCharge.ID != ch.ID || gpi.LatestCharge.Amount != 0 {
		t.Fatalf("get payment intent (unexpanded) = %+v, %v", gpi, err)
	}
	gch, err := f.sc.Charges.Get(ch.ID, nil)
	if err != nil || gch.Refunds != nil || gch.Customer.ID != got.Customer.ID || gch.PaymentMethodDetails.Card.Last4 != "4242" {
		t.Fatalf("get charge = %+v, %v", gch, err)
	}
	chIt := f.sc.Charges.List(&stripe.ChargeListParams{PaymentIntent: stripe.String(pi.ID)})
	if !chIt.Next() || chIt.Charge().ID != ch.ID || chIt.Next() {
		t.Fatalf("list charges by payment_intent: %v", chIt.Err())
	}
	sIt := f.sc.CheckoutSessions.List(&stripe.CheckoutSessionListParams{PaymentIntent: stripe.String(pi.ID)})
	if !sIt.Next() || sIt.CheckoutSession().ID != s.ID || sIt.Next() {
		t.Fatalf("list sessions by payment_intent: %v", sIt.Err())
	}
	cu, err := f.sc.Customers.Get(got.Customer.ID, nil)
	if err != nil || cu.Email != "buyer@example.com" {
		t.Fatalf("customer = %+v, %v", cu, err)
	}

	evs := f.events("checkout.session.completed")
	if len(evs) != 1 {
		t.Fatalf("got %d completed events", len(evs))
	}
	ev := evs[0]
	if !strings.HasPrefix(ev.ID, "evt_") || ev.APIVersion != "2023-10-16" || ev.Created != start.Add(5*time.Minute).Unix() || ev.Livemode || ev.GetObjectValue("id") != s.ID || ev.GetObjectValue("payment_status") != "paid" || ev.GetObjectValue("payment_intent") != pi.ID {
		t.Fatalf("event = %+v / %v", ev, ev.Data.Object)
	}
	one, err := f.sc.Events.Get(ev.ID, nil)
	if err != nil || one.Type != "checkout.session.completed" || one.Data.Object["object"] != "checkout.session" {
		t.Fatalf("get event = %+v, %v", one, err)
	}
	wild := f.sc.Events.List(&stripe.EventListParams{Type: stripe.String("checkout.session.*")})
	if !wild.Next() || wild.Event().ID != ev.ID || wild.Next() {
		t.Fatalf("wildcard type filter: %v", wild.Err())
	}
	if all := f.emu.Events(); len(all) != 1 || all[0].ID != ev.ID {
		t.Fatalf("Events() = %d", len(all))
	}
}

func TestAsyncSettlement(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Course").ID, 3000, "")
	ok, bad := f.session(pr.ID), f.session(pr.ID)
	for _, id := range []string{ok.ID, bad.ID} {
		if err := f.emu.PaySession(id, stripeemu.Pay{Async: true, Email: "x@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := f.sc.CheckoutSessions.Get(ok.ID, &stripe.CheckoutSessionParams{Expand: []*string{stripe.String("payment_intent")}})
	if s.Status != stripe.CheckoutSessionStatusComplete || s.PaymentStatus != stripe.CheckoutSessionPaymentStatusUnpaid || s.PaymentIntent.Status != stripe.PaymentIntentStatusProcessing {
		t.Fatalf("async session = %s/%s pi %s", s.Status, s.PaymentStatus, s.PaymentIntent.Status)
	}
	if _, err := f.emu.Refund(s.PaymentIntent.ID, 0); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("refund of unsettled payment = %v", err)
	}

	f.clk.Advance(72 * time.Hour)
	if err := f.emu.SettleAsync(ok.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.SettleAsync(bad.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.SettleAsync(ok.ID, true); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("double settle = %v", err)
	}

	params := &stripe.CheckoutSessionParams{}
	params.AddExpand("payment_intent.latest_charge")
	s, _ = f.sc.CheckoutSessions.Get(ok.ID, params)
	if s.PaymentStatus != stripe.CheckoutSessionPaymentStatusPaid || s.PaymentIntent.Status != stripe.PaymentIntentStatusSucceeded || s.PaymentIntent.LatestCharge.Status != stripe.ChargeStatusSucceeded {
		t.Fatalf("settled session = %s pi %s", s.PaymentStatus, s.PaymentIntent.Status)
	}
	s, _ = f.sc.CheckoutSessions.Get(bad.ID, params)
	if s.PaymentStatus != stripe.CheckoutSessionPaymentStatusUnpaid || s.PaymentIntent.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || s.PaymentIntent.LatestCharge.Status != stripe.ChargeStatusFailed || s.PaymentIntent.LastPaymentError == nil {
		t.Fatalf("failed session = %s pi %s", s.PaymentStatus, s.PaymentIntent.Status)
	}

	evs := f.events()
	var types []string
	for _, e := range evs {
		types = append(types, string(e.Type))
	}
	want := "checkout.session.async_payment_failed checkout.session.async_payment_succeeded checkout.session.completed checkout.session.completed"
	if strings.Join(types, " ") != want {
		t.Fatalf("events newest first = %v", types)
	}
	if evs[0].GetObjectValue("id") != bad.ID || evs[1].GetObjectValue("id") != ok.ID || evs[0].Created != start.Add(72*time.Hour).Unix() {
		t.Fatal("settlement events point at the wrong sessions or times")
	}
}

func TestExpiryByClock(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Course").ID, 1000, "")
	s := f.session(pr.ID, func(p *stripe.CheckoutSessionParams) {
		p.AfterExpiration = &stripe.CheckoutSessionAfterExpirationParams{Recovery: &stripe.CheckoutSessionAfterExpirationRecoveryParams{Enabled: stripe.Bool(true)}}
	})
	short := f.session(pr.ID, func(p *stripe.CheckoutSessionParams) { p.ExpiresAt = stripe.Int64(start.Add(time.Hour).Unix()) })

	f.clk.Advance(time.Hour)
	it := f.sc.CheckoutSessions.List(&stripe.CheckoutSessionListParams{Status: stripe.String("expired")})
	if !it.Next() || it.CheckoutSession().ID != short.ID || it.Next() {
		t.Fatalf("after 1h expired list wrong: %v", it.Err())
	}

	f.clk.Advance(23 * time.Hour)
	f.emu.Tick() // nothing else touches the emulator; the list below would tick too
	got, err := f.sc.CheckoutSessions.Get(s.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantURL := f.srv.URL + "/checkout/recover/" + s.ID
	if got.Status != stripe.CheckoutSessionStatusExpired || got.URL != "" || got.AfterExpiration.Recovery.URL != wantURL || got.AfterExpiration.Recovery.ExpiresAt != start.Add(24*time.Hour+30*24*time.Hour).Unix() {
		t.Fatalf("expired session = %s url %q recovery %+v", got.Status, got.URL, got.AfterExpiration.Recovery)
	}
	evs := f.events("checkout.session.expired")
	if len(evs) != 2 || evs[0].GetObjectValue("id") != s.ID || evs[0].Created != start.Add(24*time.Hour).Unix() || evs[0].GetObjectValue("after_expiration", "recovery", "url") != wantURL {
		t.Fatalf("expired events = %d", len(evs))
	}

	_, err = f.sc.CheckoutSessions.Expire(s.ID, nil)
	stripeErr(t, err, 400, "", "")
	if err := f.emu.PaySession(s.ID, stripeemu.Pay{}); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("pay expired = %v", err)
	}

	// Following the recovery URL opens a new session recovered from the old.
	noRedirect := *f.srv.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := noRedirect.Get(wantURL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	newID := strings.TrimPrefix(loc, "/checkout/")
	rec, err := f.sc.CheckoutSessions.Get(newID, nil)
	if res.StatusCode != http.StatusSeeOther || err != nil || rec.RecoveredFrom != s.ID || rec.Status != stripe.CheckoutSessionStatusOpen {
		t.Fatalf("recovery: %d %q %+v %v", res.StatusCode, loc, rec, err)
	}
}

func TestExpireEndpoint(t *testing.T) {
	f := newFixture(t)
	pr := f.price(f.product("Course").ID, 1000, "")
	s := f.session(pr.ID)
	params := &stripe.CheckoutSessionExpireParams{}
	params.SetIdempotencyKey("expire-1")
	got, err := f.sc.CheckoutSessions.Expire(s.ID, params)
	if err != nil || got.Status != stripe.CheckoutSessionStatusExpired {
		t.Fatalf("expire = %+v, %v", got, err)
	}
	evs := f.events("checkout.session.expired")
	if len(evs) != 1 || evs[0].Request == nil || evs[0].Request.IdempotencyKey != "expire-1" || !strings.HasPrefix(evs[0].Request.ID, "req_") {
		t.Fatalf("expire event request = %+v", evs[0].Request)
	}
	if err := f.emu.ExpireSession(s.ID); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("ExpireSession on expired = %v", err)
	}
}

func TestRefunds(t *testing.T) {
	f := newFixture(t)
	s := f.paidSession()
	piID := s.PaymentIntent.ID

	f.clk.Advance(time.Hour)
	r1, err := f.sc.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(piID), Amount: stripe.Int64(1000), Reason: stripe.String("requested_by_customer")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r1.ID, "re_") || r1.Status != stripe.RefundStatusSucceeded || r1.Amount != 1000 || r1.PaymentIntent.ID != piID || r1.Reason != stripe.RefundReasonRequestedByCustomer {
		t.Fatalf("refund = %+v", r1)
	}
	ch, _ := f.sc.Charges.Get(r1.Charge.ID, nil)
	if ch.AmountRefunded != 1000 || ch.Refunded {
		t.Fatalf("after partial: refunded %d %v", ch.AmountRefunded, ch.Refunded)
	}

	_, err = f.sc.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(piID), Amount: stripe.Int64(1501)})
	stripeErr(t, err, 400, stripe.ErrorCodeAmountTooLarge, "amount")

	f.clk.Advance(time.Hour)
	r2ID, err := f.emu.Refund(piID, 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := f.sc.Refunds.Get(r2ID, nil)
	params := &stripe.ChargeParams{}
	params.AddExpand("refunds")
	ch, _ = f.sc.Charges.Get(ch.ID, params)
	if r2.Amount != 1500 || ch.AmountRefunded != 2500 || !ch.Refunded || ch.Refunds == nil || len(ch.Refunds.Data) != 2 || ch.Refunds.Data[0].ID != r2ID {
		t.Fatalf("after full: r2 %d, charge %d %v refunds %+v", r2.Amount, ch.AmountRefunded, ch.Refunded, ch.Refunds)
	}
	_, err = f.sc.Refunds.New(&stripe.RefundParams{Charge: stripe.String(ch.ID)})
	stripeErr(t, err, 400, stripe.ErrorCodeChargeAlreadyRefunded, "")

	it := f.sc.Refunds.List(&stripe.RefundListParams{PaymentIntent: stripe.String(piID)})
	var ids []string
	for it.Next() {
		ids = append(ids, it.Refund().ID)
	}
	if len(ids) != 2 || ids[0] != r2ID || ids[1] != r1.ID {
		t.Fatalf("refunds by payment_intent = %v (%v)", ids, it.Err())
	}

	evs := f.events("charge.refunded")
	if len(evs) != 2 || evs[0].GetObjectValue("object") != "charge" || evs[0].GetObjectValue("amount_refunded") != "2500" ||
		evs[0].GetPreviousValue("amount_refunded") != "1000" || evs[0].GetPreviousValue("refunded") != "false" || evs[1].GetObjectValue("amount_refunded") != "1000" {
		t.Fatalf("charge.refunded events = %d %v", len(evs), evs[0].Data.PreviousAttributes)
	}

	// Failing the second refund gives its amount back to the charge.
	if err := f.emu.FailRefund(r2ID); err != nil {
		t.Fatal(err)
	}
	r2, _ = f.sc.Refunds.Get(r2ID, nil)
	ch, _ = f.sc.Charges.Get(ch.ID, nil)
	if r2.Status != stripe.RefundStatusFailed || r2.FailureReason == "" || ch.AmountRefunded != 1000 || ch.Refunded {
		t.Fatalf("after fail: refund %s, charge %d %v", r2.Status, ch.AmountRefunded, ch.Refunded)
	}
	upd := f.events("charge.refund.updated")
	if len(upd) != 1 || upd[0].GetObjectValue("object") != "refund" || upd[0].GetObjectValue("id") != r2ID || upd[0].GetObjectValue("status") != "failed" || upd[0].GetPreviousValue("status") != "succeeded" {
		t.Fatalf("charge.refund.updated = %+v", upd)
	}
	if err := f.emu.FailRefund(r2ID); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("fail twice = %v", err)
	}
	if err := f.emu.CancelRefund(r1.ID); err != nil {
		t.Fatal(err)
	}
	ch, _ = f.sc.Charges.Get(ch.ID, nil)
	r1, _ = f.sc.Refunds.Get(r1.ID, nil)
	if r1.Status != stripe.RefundStatusCanceled || ch.AmountRefunded != 0 {
		t.Fatalf("after cancel: %s %d", r1.Status, ch.AmountRefunded)
	}
}

func TestDisputes(t *testing.T) {
	f := newFixture(t)
	s := f.paidSession()
	piID := s.PaymentIntent.ID
	f.clk.Advance(48 * time.Hour)
	dpID, err := f.emu.OpenDispute(piID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.emu.OpenDispute(piID); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("second dispute = %v", err)
	}
	dp, err := f.sc.Disputes.Get(dpID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dp.ID, "dp_") || dp.Status != stripe.DisputeStatusNeedsResponse || dp.Amount != 2500 || dp.PaymentIntent.ID != piID || dp.Reason != stripe.DisputeReasonFraudulent || dp.EvidenceDetails.DueBy == 0 {
		t.Fatalf("dispute = %+v", dp)
	}
	ch, _ := f.sc.Charges.Get(dp.Charge.ID, nil)
	if !ch.Disputed {
		t.Fatal("charge not marked disputed")
	}
	_, err = f.sc.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(piID)})
	stripeErr(t, err, 400, stripe.ErrorCodeChargeDisputed, "")

	it := f.sc.Disputes.List(&stripe.DisputeListParams{PaymentIntent: stripe.String(piID)})
	if !it.Next() || it.Dispute().ID != dpID || it.Next() {
		t.Fatalf("list disputes: %v", it.Err())
	}
	if err := f.emu.CloseDispute(dpID, true); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.CloseDispute(dpID, false); !errors.Is(err, stripeemu.ErrInvalid) {
		t.Fatalf("close twice = %v", err)
	}
	dp, _ = f.sc.Disputes.Get(dpID, nil)
	if dp.Status != stripe.DisputeStatusWon {
		t.Fatalf("dispute status = %s", dp.Status)
	}
	created, closed := f.events("charge.dispute.created"), f.events("charge.dispute.closed")
	if len(created) != 1 || len(closed) != 1 || created[0].GetObjectValue("status") != "needs_response" || closed[0].GetObjectValue("status") != "won" || closed[0].GetObjectValue("id") != dpID {
		t.Fatalf("dispute events: %d %d", len(created), len(closed))
	}
}
