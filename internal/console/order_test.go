package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// paidOrder records an embedded order of two ebooks for ada (user-1), as
// POST /api/checkout does, pays its PaymentIntent on the emulator,
// reconciles it as a hint would (the reconciler's Object on the order) and
// runs the steps that schedules.
func (e *env) paidOrder() store.Order {
	e.t.Helper()
	id, now, email := uuid.NewString(), e.clock.Now(), buyerEmail
	pi, err := e.api.CreatePaymentIntent(e.ctx, stripeapi.PaymentIntentRequest{Amount: 1800, Currency: "usd",
		Metadata: map[string]string{"order_id": id, "user_id": "user-1"}}, "order:"+id)
	if err != nil {
		e.t.Fatal(err)
	}
	o := store.Order{ID: id, UserID: "user-1", Email: &email, UIMode: store.UIModeEmbedded, Status: store.OrderPending,
		Currency: "usd", AmountSubtotal: 1800, AmountTotal: 1800, StripePaymentIntentID: &pi.ID, ClientSecret: &pi.ClientSecret,
		ExpiresAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}
	lines := []store.OrderLine{{OrderID: id, Line: 1, ProductKey: "ebook", Quantity: 2, UnitAmount: 900, AmountSubtotal: 1800,
		AmountTotal: 1800}}
	if err := e.db.InsertOrder(e.ctx, o, lines); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.emu.ConfirmPaymentIntent(pi.ID, stripeemu.OutcomeSucceeds); err != nil {
		e.t.Fatal(err)
	}
	if err := e.rec.Object(e.ctx, id, reconcile.NewReport(false)); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.engine.RunDue(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	o, err = e.db.GetOrder(e.ctx, id)
	if err != nil || o.Status != store.OrderPaid || o.StripeChargeID == nil {
		e.t.Fatalf("order after paying = %+v, %v", o, err)
	}
	return o
}

// TestOrderInOverviewSearchAndDetail: a paid order is counted on the
// overview, found by its id, intent, charge and buyer, and its page shows
// its lines, the buyer's credits and a timeline with its confirmation
// email and a preview. A refund made on Stripe without a webhook shows in
// the reconcile's dry run, is applied by the real one, audited on the
// order.
func TestOrderInOverviewSearchAndDetail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	o := e.paidOrder()
	b := e.signedIn()
	page := "/console/orders/" + o.ID

	if ov := b.get("/console/"); !strings.Contains(ov.body, `kind=orders&amp;status=paid">1</a>`) {
		t.Errorf("the overview does not count the paid order")
	}
	for _, q := range []string{o.ID, *o.StripePaymentIntentID, *o.StripeChargeID} {
		a := b.get("/console/search?q=" + url.QueryEscape(q))
		if a.status != http.StatusSeeOther || a.header.Get("Location") != page {
			t.Errorf("search %s = %d → %q", q, a.status, a.header.Get("Location"))
		}
	}
	for _, q := range []string{"q=ada%40example.com", "q=user-1", "kind=orders&status=paid"} {
		if a := b.get("/console/search?" + q); a.status != http.StatusOK || !strings.Contains(a.body, `<a href="`+page+`">`) {
			t.Errorf("search %s = %d without the order", q, a.status)
		}
	}
	if a := b.get("/console/search?kind=orders&status=active"); a.status != http.StatusBadRequest ||
		!strings.Contains(a.body, "unknown order status") {
		t.Errorf("an order search by a subscription status = %d", a.status)
	}

	steps, err := e.db.SubjectSteps(e.ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	var confirmation store.Step
	for _, st := range steps {
		if em, ok := emailOf(st); ok && em.Template == "order_confirmation" {
			confirmation = st
		}
	}
	if confirmation.ID == 0 {
		t.Fatalf("no order_confirmation among the order's steps: %+v", steps)
	}
	e.grantCredits("8a3c5f7e-0000-4000-8000-000000000002", 40)
	d := b.get(page)
	for _, want := range []string{
		"https://dashboard.stripe.com/test/payments/" + *o.StripePaymentIntentID,
		buyerEmail, "$18.00", "Acme Ebook <small>ebook</small>", "Order: checkout started (embedded)", "Order: paid",
		"Sent email <strong>order_confirmation</strong> to " + buyerEmail,
		page + "/steps/" + itoa(confirmation.ID) + "/email", "balance <strong>40</strong>", page + "/reconcile",
	} {
		if !strings.Contains(d.body, want) {
			t.Errorf("the order page lacks %q", want)
		}
	}
	if p := b.get(page + "/steps/" + itoa(confirmation.ID) + "/email"); p.status != http.StatusOK ||
		!strings.Contains(p.body, "Acme Ebook") {
		t.Errorf("preview = %d\n%.1000s", p.status, p.body)
	}
	if a := b.get("/console/orders/" + uuid.NewString()); a.status != http.StatusNotFound {
		t.Errorf("an unknown order = %d", a.status)
	}

	// A refund on Stripe, announced by no webhook.
	if _, err := e.emu.Refund(*o.StripePaymentIntentID, 900); err != nil {
		t.Fatal(err)
	}
	dry := b.get(page + "/reconcile")
	if dry.status != http.StatusOK || strings.Contains(dry.body, "Nothing differs") || !strings.Contains(dry.body, *o.StripeChargeID) {
		t.Fatalf("dry run = %d\n%.3000s", dry.status, dry.body)
	}
	if cur, _ := e.db.GetOrder(e.ctx, o.ID); cur.AmountRefunded != 0 {
		t.Fatal("the dry run recorded the refund")
	}
	done := b.post(page+"/reconcile", url.Values{"csrf": {b.csrf()}})
	if done.status != http.StatusSeeOther || !strings.HasPrefix(done.header.Get("Location"), page+"?done=") {
		t.Fatalf("reconcile = %d → %q", done.status, done.header.Get("Location"))
	}
	if cur, _ := e.db.GetOrder(e.ctx, o.ID); cur.AmountRefunded != 900 || cur.Status != store.OrderPartiallyRefunded {
		t.Errorf("after the reconcile the order is %s, refunded %d", cur.Status, cur.AmountRefunded)
	}
	d = b.get(page)
	if !strings.Contains(d.body, "reconcile order "+o.ID) || !strings.Contains(d.body, "$9.00, succeeded") {
		t.Error("the order page shows neither the reconcile nor the refund")
	}

	// A dispute of the rest, lost.
	if err := e.db.UpsertOrderDispute(e.ctx, store.OrderDispute{ID: "dp_order", OrderID: o.ID, Amount: 900, Currency: "usd",
		Status: "lost", Reason: "fraudulent", CreatedAt: e.clock.Now()}, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if d = b.get(page); !strings.Contains(d.body, "Dispute <code>dp_order</code>: $9.00, lost (fraudulent)") {
		t.Error("the order page does not show the dispute")
	}
}
