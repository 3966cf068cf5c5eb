package fulfillment_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

const retryBase = "https://app.acme.test/orders/retry"

func newOrderHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	configure := opts.configure
	opts.configure = func(c *config.Config) {
		c.Fulfillment.RetryURL = retryBase
		if configure != nil {
			configure(c)
		}
	}
	h := newHarness(t, opts)
	h.ful.RegisterOrders(nil)
	return h
}

// insertOrder records an order of pro ×1 (GitHub), api ×2 (webhook) and
// ebook ×1 with 20% off, in status.
func (h *harness) insertOrder(status store.OrderStatus, username string) (store.Order, []store.OrderLine) {
	h.t.Helper()
	now := h.clk.Now()
	email, code := buyerEmail, "LAUNCH20"
	o := store.Order{ID: uuid.NewString(), UserID: "user-ada", Email: &email, UIMode: store.UIModeEmbedded, Status: status,
		Currency: "usd", AmountSubtotal: 19900 + 2*19900 + 1900, AmountDiscount: 12320, AmountTotal: 61600 - 12320,
		PromotionCode: &code, ExpiresAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}
	pi := "pi_" + uuid.NewString()[:8]
	o.StripePaymentIntentID = &pi
	if username != "" {
		o.GitHubUsername = &username
	}
	if status.Paid() {
		o.PaidAt = &now
	}
	lines := []store.OrderLine{
		{Line: 0, ProductKey: "pro", Quantity: 1, UnitAmount: 19900, AmountSubtotal: 19900, AmountDiscount: 3980, AmountTotal: 15920},
		{Line: 1, ProductKey: "api", Quantity: 2, UnitAmount: 19900, AmountSubtotal: 39800, AmountDiscount: 7960, AmountTotal: 31840},
		{Line: 2, ProductKey: "ebook", Quantity: 1, UnitAmount: 1900, AmountSubtotal: 1900, AmountDiscount: 380, AmountTotal: 1520},
	}
	if err := h.db.InsertOrder(h.ctx, o, lines); err != nil {
		h.t.Fatal(err)
	}
	return o, lines
}

func (h *harness) setOrderStatus(o store.Order, status store.OrderStatus) store.Order {
	h.t.Helper()
	now := h.clk.Now()
	o.Status = status
	if status.Ended() {
		o.EndedAt = &now
	}
	if err := h.db.UpdateOrder(h.ctx, o, now); err != nil {
		h.t.Fatal(err)
	}
	return o
}

// TestOrderPaidPipeline: a paid order's confirmation lists every line,
// the discount and the total; the admin hears of it; the GitHub line
// invites the buyer once and the webhook line sends order.paid with its
// quantity; scheduling it again changes nothing.
func TestOrderPaidPipeline(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	h.gh.AddUser("ada-l")
	o, lines := h.insertOrder(store.OrderPaid, "ada-l")
	for range 2 {
		h.tx(func(q *store.Queries) error { return h.ful.OrderPaid(h.ctx, q, o, lines) })
	}
	h.run()
	conf := h.oneMail(mail.OrderConfirmation, buyerEmail)
	for _, want := range []string{"Acme Pro x 1 ($199.00 each): $159.20", "Acme API x 2 ($199.00 each): $318.40",
		"Acme Ebook x 1 ($19.00 each): $15.20", "Discount:         -$123.20 (LAUNCH20)", "Total paid:       $492.80", o.ID} {
		if !strings.Contains(conf.Text, want) {
			t.Errorf("confirmation lacks %q:\n%s", want, conf.Text)
		}
	}
	if admin := h.oneMail(mail.AdminOrder, adminEmail); !strings.Contains(admin.Text, o.ID) {
		t.Errorf("admin email = %s", admin.Text)
	}
	if invs := h.gh.Invitations(); len(invs) != 1 || invs[0].Invitee != "ada-l" {
		t.Errorf("invitations = %+v", invs)
	}
	var hooks []map[string]any
	for _, d := range h.hook.deliveries() {
		var ev map[string]any
		if err := json.Unmarshal(d.body, &ev); err != nil {
			t.Fatal(err)
		}
		hooks = append(hooks, ev)
	}
	if len(hooks) != 1 || hooks[0]["type"] != "order.paid" {
		t.Fatalf("access webhooks = %+v", hooks)
	}
	if data := hooks[0]["data"].(map[string]any); data["product"] != "api" || data["quantity"] != float64(2) || data["order_id"] != o.ID {
		t.Errorf("order.paid data = %+v", data)
	}
	grants, err := h.db.OrderGrants(h.ctx, o.ID)
	if err != nil || len(grants) != 2 {
		t.Fatalf("grants = %+v, %v", grants, err)
	}
	for _, g := range grants {
		if g.State != store.GrantGranted {
			t.Errorf("grant %+v not granted", g)
		}
	}
}

// TestOrderPaymentFailedOnce: declines ask for the recovery email as
// often as they are seen, and one is sent, with the retry link carrying
// the order id; an order canceled before its email went out gets none.
func TestOrderPaymentFailedOnce(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	o, _ := h.insertOrder(store.OrderPending, "")
	for range 3 {
		h.tx(func(q *store.Queries) error { return h.ful.OrderPaymentFailed(h.ctx, q, o) })
		h.run()
	}
	m := h.oneMail(mail.OrderPaymentFailed, buyerEmail)
	if !strings.Contains(m.Text, retryBase+"?order_id="+o.ID) {
		t.Errorf("recovery email lacks the retry link:\n%s", m.Text)
	}

	canceled, _ := h.insertOrder(store.OrderPending, "")
	h.tx(func(q *store.Queries) error { return h.ful.OrderPaymentFailed(h.ctx, q, canceled) })
	h.setOrderStatus(canceled, store.OrderCanceled)
	h.run()
	if n := len(h.mails(mail.OrderPaymentFailed)); n != 1 {
		t.Errorf("%d recovery emails; the canceled order's must not be sent", n)
	}
}

// TestOrderFullRefundRevokes: a partial refund sends refund_partial and
// keeps access; the refund that completes it sends refund_full, removes
// the GitHub access and sends order.refunded.
func TestOrderFullRefundRevokes(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	h.gh.AddUser("ada-l")
	o := h.paidOrder("ada-l")
	refund := func(id string, amount int64) {
		o = h.refundOrder(o, id, amount)
		h.run()
	}
	refund("re_part", 10000)
	if len(h.mails(mail.RefundPartial)) != 1 || len(h.gh.Collaborators()) != 1 {
		t.Fatalf("after a partial refund: %v, collaborators %+v", h.categories(), h.gh.Collaborators())
	}
	refund("re_rest", o.AmountTotal-10000)
	h.oneMail(mail.RefundFull, buyerEmail)
	if c := h.gh.Collaborators(); len(c) != 0 {
		t.Errorf("collaborators after the full refund = %+v", c)
	}
	if types := h.webhookTypes(); types != "order.paid,order.refunded" {
		t.Errorf("access webhooks = %v", types)
	}
}

// TestOrderRevokeKeepsAccessOfAnOrderPaidAgain: an order's full refund
// schedules the revocation, then the order is paid again (the refund
// failed) before it runs: the revocation, reading the order when it runs,
// takes nothing back.
func TestOrderRevokeKeepsAccessOfAnOrderPaidAgain(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	h.gh.AddUser("ada-l")
	o := h.paidOrder("ada-l")
	o = h.refundOrder(o, "re_all", o.AmountTotal)
	o.AmountRefunded = 0
	h.setOrderStatus(o, store.OrderPaid)
	h.run()
	if c := h.gh.Collaborators(); len(c) != 1 {
		t.Errorf("collaborators = %+v: the revocation took back an order paid again", c)
	}
	if types := h.webhookTypes(); types != "order.paid" {
		t.Errorf("access webhooks = %v, want order.paid alone", types)
	}
}

// TestOrderRefundThatFailsGivesTheAccessBack: an order's full refund took
// its access back; the refund then fails and the order is paid again: the
// GitHub account is invited again, the seller hears order.paid again, and
// the operator gets refund_reversed, once however often the reversal is
// seen. A reversal seen before the revocation ran cancels it instead, and
// nothing is granted twice.
func TestOrderRefundThatFailsGivesTheAccessBack(t *testing.T) {
	t.Parallel()
	t.Run("after the revocation ran", func(t *testing.T) {
		t.Parallel()
		h := newOrderHarness(t, harnessOptions{})
		h.gh.AddUser("ada-l")
		o := h.paidOrder("ada-l")
		o = h.refundOrder(o, "re_all", o.AmountTotal)
		h.run()
		if c := h.gh.Collaborators(); len(c) != 0 {
			t.Fatalf("collaborators after the full refund = %+v", c)
		}
		for range 2 {
			h.reverseOrderRefund(o, "re_all", "failed")
		}
		if invs := h.gh.Invitations(); len(invs) != 1 || !strings.EqualFold(invs[0].Invitee, "ada-l") {
			t.Errorf("invitations after the reversal = %+v, want ada-l invited again", invs)
		}
		if types := h.webhookTypes(); types != "order.paid,order.refunded,order.paid" {
			t.Errorf("access webhooks = %v", types)
		}
		if m := h.oneMail(mail.RefundReversed, adminEmail); !strings.Contains(m.Text, o.ID) || !strings.Contains(m.Text, "re_all failed") {
			t.Errorf("refund_reversed email = %s", m.Text)
		}
	})
	t.Run("before the revocation ran", func(t *testing.T) {
		t.Parallel()
		h := newOrderHarness(t, harnessOptions{})
		h.gh.AddUser("ada-l")
		o := h.paidOrder("ada-l")
		o = h.refundOrder(o, "re_all", o.AmountTotal)
		h.reverseOrderRefund(o, "re_all", "canceled")
		if c, invs := h.gh.Collaborators(), h.gh.Invitations(); len(c) != 1 || len(invs) != 0 {
			t.Errorf("collaborators %+v, invitations %+v: want the access untouched", c, invs)
		}
		if types := h.webhookTypes(); types != "order.paid" {
			t.Errorf("access webhooks = %v, want order.paid alone", types)
		}
		h.oneMail(mail.RefundReversed, adminEmail)
	})
}

// reverseOrderRefund records that refund id of o ended in status (failed
// or canceled), every cent of o paid again, as the reconciler does, hands
// it to the Fulfillment and runs what is due.
func (h *harness) reverseOrderRefund(o store.Order, id, status string) {
	h.t.Helper()
	h.tx(func(q *store.Queries) error {
		cur, err := q.LockOrder(h.ctx, o.ID)
		if err != nil {
			return err
		}
		cur.AmountRefunded, cur.Status = 0, store.OrderPaid
		if err := q.UpdateOrder(h.ctx, cur, h.clk.Now()); err != nil {
			return err
		}
		r := store.OrderRefund{ID: id, OrderID: o.ID, Amount: cur.AmountTotal, Currency: "usd", Status: status,
			CreatedAt: h.clk.Now()}
		if err := q.UpsertOrderRefund(h.ctx, r, h.clk.Now()); err != nil {
			return err
		}
		return h.ful.OrderRefundReversed(h.ctx, q, cur, r)
	})
	h.run()
}

// webhookTypes are the types of the access webhooks delivered, in order,
// comma-separated.
func (h *harness) webhookTypes() string {
	var types []string
	for _, d := range h.hook.deliveries() {
		var ev struct{ Type string }
		_ = json.Unmarshal(d.body, &ev)
		types = append(types, ev.Type)
	}
	return strings.Join(types, ",")
}

// A lost dispute refunds the order in full without the customer email: the
// collaborator is removed and the seller hears order.refunded, once for a
// loss seen twice.
func TestOrderLostDisputeTakesAccessBack(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	h.gh.AddUser("ada-l")
	o := h.paidOrder("ada-l")
	o.Status = store.OrderRefunded
	d := store.OrderDispute{ID: "dp_1", OrderID: o.ID, Amount: o.AmountTotal, Currency: "usd", Status: "lost",
		Reason: "fraudulent", CreatedAt: h.clk.Now()}
	for range 2 {
		h.loseOrderDispute(o, d)
	}
	if c := h.gh.Collaborators(); len(c) != 0 {
		t.Errorf("collaborators after the lost dispute = %+v", c)
	}
	if n := len(h.mails(mail.RefundFull)) + len(h.mails(mail.RefundPartial)); n != 0 {
		t.Errorf("%d refund emails to the customer, want none", n)
	}
	if types := h.webhookTypes(); types != "order.paid,order.refunded" {
		t.Errorf("access webhooks = %v", types)
	}
}

// loseOrderDispute records o, refunded, and its lost dispute d as the
// reconciler does, and runs what that scheduled.
func (h *harness) loseOrderDispute(o store.Order, d store.OrderDispute) {
	h.t.Helper()
	h.tx(func(q *store.Queries) error {
		if err := q.UpdateOrder(h.ctx, o, h.clk.Now()); err != nil {
			return err
		}
		if err := q.UpsertOrderDispute(h.ctx, d, h.clk.Now()); err != nil {
			return err
		}
		return h.ful.OrderDisputeLost(h.ctx, q, o, d)
	})
	h.run()
}

// paidOrder records a paid order whose GitHub line goes to login, runs its
// pipeline and accepts the invitations it sent.
func (h *harness) paidOrder(login string) store.Order {
	h.t.Helper()
	o, lines := h.insertOrder(store.OrderPaid, login)
	h.tx(func(q *store.Queries) error { return h.ful.OrderPaid(h.ctx, q, o, lines) })
	h.run()
	for _, inv := range h.gh.Invitations() {
		h.gh.AcceptInvitation(inv.ID)
	}
	return o
}

// refundOrder records refund id of amount on o, as the reconciler does,
// and returns the order as it now is.
func (h *harness) refundOrder(o store.Order, id string, amount int64) store.Order {
	h.t.Helper()
	o.AmountRefunded += amount
	o.Status = store.OrderPartiallyRefunded
	if o.AmountRefunded >= o.AmountTotal {
		o.Status = store.OrderRefunded
	}
	r := store.OrderRefund{ID: id, OrderID: o.ID, Amount: amount, Currency: "usd", Status: "succeeded", CreatedAt: h.clk.Now()}
	h.tx(func(q *store.Queries) error {
		if err := q.UpdateOrder(h.ctx, o, h.clk.Now()); err != nil {
			return err
		}
		if err := q.UpsertOrderRefund(h.ctx, r, h.clk.Now()); err != nil {
			return err
		}
		return h.ful.OrderRefunded(h.ctx, q, o, r)
	})
	return o
}

// TestOrderRefundedDuringItsRunningGrantsTakesBackWhatTheyGave: the order
// is fully refunded while its GitHub invitation and its order.paid webhook
// are in flight, and the refund's revocation runs before either lands.
// The late grants are taken back: no invitation or collaborator is left,
// and the seller hears order.refunded after the late order.paid.
func TestOrderRefundedDuringItsRunningGrantsTakesBackWhatTheyGave(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	h.gh.AddUser("ada-l")
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.gh.BeforeServe(func(method, path string) {
		if method == http.MethodPut {
			once.Do(func() { close(arrived); <-release })
		}
	})
	held := h.hook.holdNext() // the order.paid webhook
	o, lines := h.insertOrder(store.OrderPaid, "ada-l")
	h.tx(func(q *store.Queries) error { return h.ful.OrderPaid(h.ctx, q, o, lines) })
	wait := h.runInBackground()
	await(t, arrived, "the invitation request")
	await(t, held.arrived, "the order.paid webhook")

	h.refundOrder(o, "re_all", o.AmountTotal)
	h.run() // the refund's revocation runs before the late grants land
	close(release)
	close(held.release)
	wait()
	h.run()

	if invs, c := h.gh.Invitations(), h.gh.Collaborators(); len(invs) != 0 || len(c) != 0 {
		t.Errorf("invitations %+v, collaborators %+v: a late grant survived the refund", invs, c)
	}
	var paid, refunded int
	for _, d := range h.hook.deliveries() {
		var ev struct{ Type string }
		_ = json.Unmarshal(d.body, &ev)
		switch ev.Type {
		case "order.paid":
			paid++
		case "order.refunded":
			refunded = paid // the last order.refunded came after this many order.paid
		}
	}
	if paid == 0 || refunded != paid {
		t.Errorf("order.paid %d, the last order.refunded after %d of them: the seller's last word is not the refund", paid, refunded)
	}
}

// taxFake records the tax transactions it was asked for.
type taxFake struct {
	created  []string // calculation:reference
	reversed []string // transaction:reference:amount
}

func (f *taxFake) CreateTaxTransaction(_ context.Context, calc, ref string, _ map[string]string, _ string) (*stripe.TaxTransaction, error) {
	f.created = append(f.created, calc+":"+ref)
	return &stripe.TaxTransaction{ID: "tax_1"}, nil
}

func (f *taxFake) ReverseTaxTransaction(_ context.Context, tx, ref string, amount int64, _ string) (*stripe.TaxTransaction, error) {
	f.reversed = append(f.reversed, fmt.Sprintf("%s:%s:%d", tx, ref, amount))
	return &stripe.TaxTransaction{ID: "tax_2"}, nil
}

// newTaxedOrder returns a harness whose tax transactions go to the fake
// it returns, and a paid embedded order taxed by Stripe Tax (calculation
// taxcalc_1), its pipeline not scheduled yet.
func newTaxedOrder(t *testing.T) (*harness, *taxFake, store.Order, []store.OrderLine) {
	t.Helper()
	h := newHarness(t, harnessOptions{configure: func(c *config.Config) { c.Fulfillment.RetryURL = retryBase }})
	tax := &taxFake{}
	h.ful.RegisterOrders(tax)
	o, lines := h.insertOrder(store.OrderPaid, "")
	calc := "taxcalc_1"
	o.TaxCalculationID = &calc
	if err := h.db.UpdateOrder(h.ctx, o, h.clk.Now()); err != nil {
		t.Fatal(err)
	}
	return h, tax, o, lines
}

// TestOrderTaxTransaction: a paid embedded order taxed by Stripe Tax has
// its calculation recorded as a transaction once, and a partial refund is
// reversed for its amount.
func TestOrderTaxTransaction(t *testing.T) {
	t.Parallel()
	h, tax, o, lines := newTaxedOrder(t)
	for range 2 {
		h.tx(func(q *store.Queries) error { return h.ful.OrderPaid(h.ctx, q, o, lines) })
	}
	h.run()
	if fmt.Sprint(tax.created) != "[taxcalc_1:"+o.ID+"]" {
		t.Errorf("tax transactions = %v", tax.created)
	}
	o.AmountRefunded, o.Status = 1000, store.OrderPartiallyRefunded
	r := store.OrderRefund{ID: "re_1", OrderID: o.ID, Amount: 1000, Currency: "usd", Status: "succeeded", CreatedAt: h.clk.Now()}
	h.tx(func(q *store.Queries) error { return h.ful.OrderRefunded(h.ctx, q, o, r) })
	h.run()
	if fmt.Sprint(tax.reversed) != "[tax_1:"+o.ID+":re_1:1000]" {
		t.Errorf("tax reversals = %v", tax.reversed)
	}
}

// TestOrderLostDisputeReversesTheTaxLeft: a lost dispute of an embedded
// order taxed by Stripe Tax reverses what its refunds left of the tax
// transaction, once for a loss seen twice; with no refund, the whole of it.
func TestOrderLostDisputeReversesTheTaxLeft(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		refunded int64
		want     func(o store.Order) string
	}{
		{"after a partial refund", 1000, func(o store.Order) string {
			return fmt.Sprintf("[tax_1:%s:re_1:1000 tax_1:%s:dp_1:%d]", o.ID, o.ID, o.AmountTotal-1000)
		}},
		{"with no refund", 0, func(o store.Order) string { return "[tax_1:" + o.ID + ":dp_1:0]" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h, tax, o, lines := newTaxedOrder(t)
			h.tx(func(q *store.Queries) error { return h.ful.OrderPaid(h.ctx, q, o, lines) })
			h.run()
			if c.refunded > 0 {
				o = h.refundOrder(o, "re_1", c.refunded)
				h.run()
			}
			o.Status = store.OrderRefunded
			d := store.OrderDispute{ID: "dp_1", OrderID: o.ID, Amount: o.AmountTotal, Currency: "usd", Status: "lost",
				Reason: "fraudulent", CreatedAt: h.clk.Now()}
			for range 2 {
				h.loseOrderDispute(o, d)
			}
			if got := fmt.Sprint(tax.reversed); got != c.want(o) {
				t.Errorf("tax reversals = %v, want %v", got, c.want(o))
			}
		})
	}
}

// TestOrderAccessWhenTheBuyerNamesAnAccountLater: an order paid without
// a GitHub account gets its invitation once the buyer names one, once.
func TestOrderAccessWhenTheBuyerNamesAnAccountLater(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	h.gh.AddUser("ada-l")
	o, lines := h.insertOrder(store.OrderPaid, "")
	h.tx(func(q *store.Queries) error { return h.ful.OrderPaid(h.ctx, q, o, lines) })
	h.run()
	if invs := h.gh.Invitations(); len(invs) != 0 {
		t.Fatalf("invited without an account: %+v", invs)
	}
	for range 2 {
		if _, err := h.ful.RequestAccess(h.ctx, o.UserID, "ada-l"); err != nil {
			t.Fatal(err)
		}
		h.run()
	}
	if invs := h.gh.Invitations(); len(invs) != 1 || invs[0].Invitee != "ada-l" {
		t.Errorf("invitations = %+v", invs)
	}
}

// An account that a paid order grants stays in the repository when a
// one-time purchase that granted it too is refunded, and the other way
// round; once neither is paid for, it is removed. What entitles an account
// is counted across purchases, subscriptions and orders, and a grant
// paymentd made for an order is never taken for access the buyer had
// before paymentd.
func TestAnAccountStaysWhileAPurchaseOrAnOrderPaysForIt(t *testing.T) {
	t.Parallel()
	for _, orderFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("order first %v", orderFirst), func(t *testing.T) {
			t.Parallel()
			h := newOrderHarness(t, harnessOptions{})
			h.gh.AddUser("ada-l")
			accept := func() {
				for _, inv := range h.gh.Invitations() {
					h.gh.AcceptInvitation(inv.ID)
				}
			}
			var o store.Order
			order := func() { o = h.paidOrder("ada-l") }
			var p store.Purchase
			purchase := func() {
				p = h.complete(buy{userID: "user-ada", username: "ada-l"})
				h.run()
				accept()
			}
			if orderFirst {
				order()
				purchase()
			} else {
				purchase()
				order()
			}
			if c := collaboratorLogins(h); len(c) != 1 || c[0] != "ada-l" {
				t.Fatalf("collaborators = %v, want ada-l", c)
			}
			// The first sale refunded: the second still pays for ada-l.
			if orderFirst {
				h.refundOrder(o, "re_order", o.AmountTotal)
			} else {
				h.refund(p, "re_purchase", 19900)
			}
			h.run()
			if c := collaboratorLogins(h); len(c) != 1 || c[0] != "ada-l" {
				t.Fatalf("collaborators after the first refund = %v, want ada-l kept", c)
			}
			// Both refunded: nothing pays for ada-l.
			if orderFirst {
				h.refund(p, "re_purchase", 19900)
			} else {
				h.refundOrder(o, "re_order", o.AmountTotal)
			}
			h.run()
			if c := collaboratorLogins(h); len(c) != 0 {
				t.Errorf("collaborators after both refunds = %v, want ada-l removed", c)
			}
		})
	}
}

// A refunded order's GitHub access is taken back from the account it
// granted, found by id: the buyer renamed theirs, and someone else took
// the old login (and is a collaborator in their own right).
func TestOrderRevokeFollowsARenamedAccount(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	h.gh.AddUser("ada-l")
	o := h.paidOrder("ada-l")
	h.gh.RenameUser("ada-l", "ada-lovelace")
	h.gh.AddUser("ada-l")
	h.gh.AddCollaborator("ada-l", "push")

	h.refundOrder(o, "re_all", o.AmountTotal)
	h.run()
	if c := collaboratorLogins(h); len(c) != 1 || c[0] != "ada-l" {
		t.Errorf("collaborators = %v, want ada-lovelace removed and the new ada-l left alone", c)
	}
}

// A buyer who names another GitHub account moves a paid order's access:
// the new account is invited, then the old one removed; naming the same
// account again changes nothing, and a login GitHub does not know takes
// nothing away.
func TestPutGitHubMovesAnOrdersAccess(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	h.gh.AddUser("ada-l")
	h.gh.AddUser("countess")
	h.gh.AddUnknownUser("nobody-here")
	o := h.paidOrder("ada-l")
	move := func(login string) int {
		t.Helper()
		n, err := h.ful.RequestAccess(h.ctx, "user-ada", login)
		if err != nil {
			t.Fatal(err)
		}
		h.run()
		return n
	}
	if n := move("nobody-here"); n != 1 {
		t.Fatalf("RequestAccess = %d, want the order", n)
	}
	if c := collaboratorLogins(h); len(c) != 1 || c[0] != "ada-l" {
		t.Fatalf("collaborators after a move to an unknown login = %v, want ada-l kept", c)
	}
	if n := move("countess"); n != 1 {
		t.Fatalf("RequestAccess = %d, want the order", n)
	}
	if c := collaboratorLogins(h); len(c) != 0 {
		t.Errorf("collaborators after the move = %v, want ada-l removed", c)
	}
	if inv := h.gh.Invitations(); len(inv) != 1 || inv[0].Invitee != "countess" {
		t.Errorf("invitations = %+v, want countess's", inv)
	}
	grants, err := h.db.OrderGrants(h.ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range grants {
		if g.Provider == store.ProviderGitHub && g.State.Active() != (g.GitHubLogin == "countess") {
			t.Errorf("grant to %s is %s", g.GitHubLogin, g.State)
		}
	}
	if n := move("Countess"); n != 0 {
		t.Errorf("RequestAccess with the login granted = %d, want 0", n)
	}
}

// The drift pass's repairs of orders: a refunded order whose account was
// put back loses it again (its grant was already revoked); a paid one
// whose account was removed by hand is invited again; asked twice before
// it runs, a repair is scheduled once.
func TestOrderAccessRepairs(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t, harnessOptions{})
	h.gh.AddUser("ada-l")
	refunded := h.refundOrder(h.paidOrder("ada-l"), "re_all", 49280)
	h.run()
	if c := collaboratorLogins(h); len(c) != 0 {
		t.Fatalf("collaborators after the refund = %v", c)
	}
	h.gh.AddCollaborator("ada-l", "pull") // put back by hand
	repair := func(o store.Order, want store.AccessState) {
		t.Helper()
		h.tx(func(q *store.Queries) error { return h.ful.RepairOrderAccess(h.ctx, q, o, want) })
	}
	repair(refunded, store.AccessRevoked)
	repair(refunded, store.AccessRevoked)
	h.run()
	if c := collaboratorLogins(h); len(c) != 0 {
		t.Errorf("collaborators after the repair = %v, want ada-l removed again", c)
	}

	h.gh.AddUser("babbage")
	paid := h.paidOrder("babbage")
	h.gh.RemoveCollaborator("babbage") // removed by hand
	repair(paid, store.AccessGranted)
	h.run()
	if inv := h.gh.Invitations(); len(inv) != 1 || inv[0].Invitee != "babbage" {
		t.Errorf("invitations = %+v, want babbage invited again", inv)
	}
	if n := h.stepsUnder(refunded.ID, fulfillment.PrefixRepair); n != 1 {
		t.Errorf("%d repair steps for the refunded order, want 1", n)
	}
}
