package fulfillment_test

import (
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// stripeWorld is the Stripe emulator and a reconciler driving the credits
// harness's wrapped Fulfillment, as serve wires them.
type stripeWorld struct {
	h *creditsHarness
	*emulated
}

func newStripeWorld(h *creditsHarness, product string, amount int64) *stripeWorld {
	return &stripeWorld{h: h, emulated: newEmulated(h.harness, h.ful, product, amount)}
}

// emulated is the Stripe emulator selling one product at one price, and a
// reconciler driving ful against it.
type emulated struct {
	emu   *stripeemu.Emulator
	api   *stripeapi.API
	rec   *reconcile.Reconciler
	price string
}

func newEmulated(h *harness, ful reconcile.Fulfillment, product string, amount int64) *emulated {
	t := h.t
	emu := stripeemu.New(stripeemu.Options{Clock: h.clk, Seed: 7})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { emu.Close() })
	emu.SetBaseURL(srv.URL)
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_emulator", APIBase: srv.URL,
		RateLimit: 100, BackoffBase: time.Millisecond}))
	prod, err := api.CreateProduct(h.ctx, stripeapi.ProductSpec{Key: product, Name: product}, "")
	if err != nil {
		t.Fatal(err)
	}
	price, err := api.CreatePrice(h.ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: product, Currency: "usd", Amount: amount}, "")
	if err != nil {
		t.Fatal(err)
	}
	rec := reconcile.New(reconcile.Options{DB: h.db, Stripe: api, Fulfillment: ful, Clock: h.clk,
		Log: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), Products: h.cfg.Products})
	return &emulated{emu: emu, api: api, rec: rec, price: price.ID}
}

// buyAndPay does what POST /api/checkout does (a session with paymentd's
// metadata and a pending purchase), then pays on the emulator. It returns
// the purchase id and the payment intent.
func (w *stripeWorld) buyAndPay(user, product string) (string, string) {
	t, h := w.h.t, w.h
	purchaseID := uuid.NewString()
	email := user + "@example.com"
	s, err := w.api.CreateCheckoutSession(h.ctx, stripeapi.CheckoutRequest{PriceID: w.price, Quantity: 1,
		SuccessURL: "http://app.test/ok?session_id={CHECKOUT_SESSION_ID}", CancelURL: "http://app.test/pricing",
		ClientReferenceID: user, CustomerEmail: email,
		Metadata: map[string]string{"user_id": user, "product": product, "purchase_id": purchaseID}}, "checkout:"+purchaseID)
	if err != nil {
		t.Fatal(err)
	}
	now := h.clk.Now()
	if _, err := h.db.InsertPurchase(h.ctx, store.Purchase{ID: purchaseID, UserID: &user, Email: &email, ProductKey: product,
		Quantity: 1, Status: store.PurchasePending, StripeSessionID: s.ID, AmountTotal: s.AmountTotal, Currency: "usd",
		AccessState: store.AccessNone, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := w.emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
		t.Fatal(err)
	}
	paid, err := w.emu.Session(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	return purchaseID, paid.PaymentIntent.ID
}

// pass runs a reconcile pass over the lists (every webhook dropped), then
// every due step.
func (w *stripeWorld) pass() {
	w.h.t.Helper()
	w.h.clk.Advance(time.Minute)
	rep, err := w.rec.RunPass(w.h.ctx, "test", reconcile.PassOptions{Lists: true, Since: t0.Add(-time.Hour), Pending: true})
	if err != nil || !rep.Converged() {
		w.h.t.Fatalf("pass: %v %+v", err, rep)
	}
	w.h.run()
}

// objects reconciles ids one at a time, as webhook hints do, then runs
// every due step.
func (w *stripeWorld) objects(ids ...string) {
	w.h.t.Helper()
	for _, id := range ids {
		if err := w.rec.Object(w.h.ctx, id, reconcile.NewReport(false)); err != nil {
			w.h.t.Fatal(err)
		}
	}
	w.h.run()
}

// Acceptance, end to end through the emulator and the reconciler: a pack
// bought twice, 30 of the first pack's credits used, the first refunded in
// full: the clawback takes its 70 and leaves the other pack's 100 intact.
// Signals dropped (a list pass finds everything) or doubled give the same
// balance.
func TestPackBoughtTwiceOneRefundedAfter30UsedEndToEnd(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	w := newStripeWorld(h, "pack_100", 900)
	ada := store.CreditHolder{UserID: "ada"}

	first, firstIntent := w.buyAndPay("ada", "pack_100")
	w.pass()
	second, _ := w.buyAndPay("ada", "pack_100")
	w.pass()
	w.pass() // nothing new
	if got := h.balance(ada); got != 200 {
		t.Fatalf("balance %d after two packs, want 200", got)
	}
	for _, id := range []string{first, second} {
		if p := h.reload(store.Purchase{ID: id}); p.Status != store.PurchaseCompleted {
			t.Fatalf("purchase %s is %s", id, p.Status)
		}
	}
	// Consumption takes the oldest pack first: 30 of the first.
	if res := h.consume(ada, "use-30", 30); res.Outcome != store.ConsumeConsumed || res.Balance != 170 {
		t.Fatalf("consume 30: %+v", res)
	}

	if _, err := w.emu.Refund(firstIntent, 0); err != nil {
		t.Fatal(err)
	}
	w.pass()
	if p := h.reload(store.Purchase{ID: first}); p.Status != store.PurchaseRefunded {
		t.Fatalf("the refunded purchase is %s", p.Status)
	}
	if got := h.balance(ada); got != 100 {
		t.Errorf("balance %d after the refund, want the other pack's 100", got)
	}
	// Doubled signals: the charge and the session again, one by one.
	sess, err := w.emu.Session(h.reload(store.Purchase{ID: first}).StripeSessionID)
	if err != nil {
		t.Fatal(err)
	}
	w.objects(sess.ID, sess.ID, firstIntent)
	w.pass()
	if got := h.balance(ada); got != 100 {
		t.Errorf("balance %d after doubled signals, want 100", got)
	}
	a, err := h.db.GetCreditAccount(h.ctx, ada)
	if err != nil {
		t.Fatal(err)
	}
	claw, clawed, err := h.db.PackClawback(h.ctx, a.ID, first)
	if err != nil || !clawed || claw.Taken != 70 {
		t.Errorf("clawback %+v (%v, %v); want 70 taken from the first pack", claw, clawed, err)
	}
	if _, clawed, err := h.db.PackClawback(h.ctx, a.ID, second); err != nil || clawed {
		t.Errorf("the pack not refunded was clawed back (%v)", err)
	}
}

// End to end through the emulator and the reconciler: a pack's full refund
// fails after its clawback ran; the pass that sees the failure gives back
// the 70 taken, and a second full refund claws them back again.
func TestPackRefundThatFailsGivesTheCreditsBackEndToEnd(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	w := newStripeWorld(h, "pack_100", 900)
	ada := store.CreditHolder{UserID: "ada"}
	id, intent := w.buyAndPay("ada", "pack_100")
	w.pass()
	h.consume(ada, "use-30", 30)
	refund, err := w.emu.Refund(intent, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.pass()
	if got := h.balance(ada); got != 0 {
		t.Fatalf("balance %d after the full refund, want 0", got)
	}
	if err := w.emu.FailRefund(refund); err != nil {
		t.Fatal(err)
	}
	w.pass()
	w.objects(refund, intent) // the failure signalled again
	if p := h.reload(store.Purchase{ID: id}); p.Status != store.PurchaseCompleted {
		t.Fatalf("the purchase whose refund failed is %s", p.Status)
	}
	if got := h.balance(ada); got != 70 {
		t.Fatalf("balance %d once the refund failed, want the 70 clawed back", got)
	}
	if _, err := w.emu.Refund(intent, 0); err != nil {
		t.Fatal(err)
	}
	w.pass()
	if got := h.balance(ada); got != 0 {
		t.Errorf("balance %d after the second full refund, want 0", got)
	}
}
