package fulfillment_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// The reconciler drives the credits-extended Fulfillment through this
// interface.
var _ reconcile.Fulfillment = (*fulfillment.Credited)(nil)

// creditsHarness is the harness with credit products and the credits
// side registered; ful is what the reconciler would be given.
type creditsHarness struct {
	*harness
	credits *fulfillment.Credits
	ful     *fulfillment.Credited
}

// Credit products: a pack of 100 with a low threshold of 20, plans of 100
// (Starter) and 1,000 (Pro) per period, and a rollover plan of 100.
func creditProducts(cfg *config.Config) {
	low := int64(20)
	cfg.Products = append(cfg.Products,
		config.Product{Key: "pack_100", Name: "100 credits", Amount: 900, Currency: "usd", Credits: 100, CreditsLowThreshold: &low},
		config.Product{Key: "starter", Name: "Starter", Amount: 900, Currency: "usd", Credits: 100},
		config.Product{Key: "pro_plan", Name: "Pro", Amount: 4900, Currency: "usd", Credits: 1000},
		config.Product{Key: "rollover", Name: "Rollover", Amount: 900, Currency: "usd", Credits: 100, CreditsRollover: true},
	)
}

func newCreditsHarness(t *testing.T, opts harnessOptions) *creditsHarness {
	t.Helper()
	configure := opts.configure
	opts.configure = func(cfg *config.Config) {
		creditProducts(cfg)
		if configure != nil {
			configure(cfg)
		}
	}
	h := newHarness(t, opts)
	c := fulfillment.NewCredits(h.ful)
	c.Register()
	return &creditsHarness{harness: h, credits: c, ful: c.Wrap()}
}

// buyPack records a completed purchase of n packs by user and hands it to
// the wrapped Fulfillment, as the reconciler does.
func (h *creditsHarness) buyPack(user string, n int) store.Purchase {
	h.t.Helper()
	p := h.insert(buy{product: "pack_100", userID: user, amount: 900 * int64(n), edit: func(p *store.Purchase) { p.Quantity = n }},
		store.PurchaseCompleted)
	h.tx(func(q *store.Queries) error { return h.ful.Completed(h.ctx, q, []store.Purchase{p}, false) })
	return p
}

// refundPack records a refund as the reconciler does and hands it to the
// wrapped Fulfillment.
func (h *creditsHarness) refundPack(p store.Purchase, id string, amount int64) {
	h.t.Helper()
	h.packRefund(p, store.Refund{ID: id, PurchaseID: p.ID, Amount: amount, Currency: "usd", Status: "succeeded",
		CreatedAt: h.clk.Now()}, amount, h.ful.Refunded)
}

// packRefund records refund r, moving the purchase's refunded amount by
// delta and its status with it, as the reconciler does, and hands it to
// hook.
func (h *creditsHarness) packRefund(p store.Purchase, r store.Refund, delta int64,
	hook func(context.Context, *store.Queries, store.Purchase, store.Refund) error) {
	h.t.Helper()
	h.tx(func(q *store.Queries) error {
		cur, err := q.LockPurchase(h.ctx, p.ID)
		if err != nil {
			return err
		}
		cur.AmountRefunded += delta
		switch {
		case cur.AmountRefunded >= cur.AmountTotal:
			cur.Status = store.PurchaseRefunded
		case cur.AmountRefunded > 0:
			cur.Status = store.PurchasePartiallyRefunded
		default:
			cur.Status = store.PurchaseCompleted
		}
		if err := q.UpdatePurchase(h.ctx, cur, h.clk.Now()); err != nil {
			return err
		}
		if _, _, err := q.UpsertRefund(h.ctx, r, h.clk.Now()); err != nil {
			return err
		}
		return hook(h.ctx, q, cur, r)
	})
}

func (h *creditsHarness) consume(holder store.CreditHolder, key string, n int64) store.Consumption {
	h.t.Helper()
	res, err := h.credits.Consume(h.ctx, store.Consume{Holder: holder, Amount: n, Key: key})
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// balance checks that the ledger and the lots add up to the balance, and
// returns it.
func (h *creditsHarness) balance(holder store.CreditHolder) int64 {
	h.t.Helper()
	a, err := h.db.GetCreditAccount(h.ctx, holder)
	if errors.Is(err, store.ErrNotFound) {
		return 0
	}
	if err != nil {
		h.t.Fatal(err)
	}
	entries, lots, err := h.db.CreditLedgerSum(h.ctx, a.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	if entries != a.Balance || lots != a.Balance {
		h.t.Fatalf("balance %d, entries sum to %d, lots hold %d", a.Balance, entries, lots)
	}
	return a.Balance
}

// creditEvents are the credits webhooks the receiver got, in order.
func (h *creditsHarness) creditEvents() []creditEvent {
	var out []creditEvent
	for _, d := range h.hook.deliveries() {
		var body struct {
			Type string                   `json:"type"`
			Data fulfillment.CreditsEvent `json:"data"`
		}
		if err := json.Unmarshal(d.body, &body); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, creditEvent{Type: body.Type, Data: body.Data, ID: d.header.Get("webhook-id")})
	}
	return out
}

type creditEvent struct {
	Type string
	Data fulfillment.CreditsEvent
	ID   string
}

// A pack grants credits × quantity once, however often the purchase is
// reported paid, and says so by webhook with the balance; a partial
// refund leaves the credits; a full one claws back what is left of the
// pack, once.
func TestPackGrantedOnceAndClawedBackByAFullRefund(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	ada := store.CreditHolder{UserID: "ada"}
	p := h.buyPack("ada", 2)
	h.tx(func(q *store.Queries) error { return h.ful.Completed(h.ctx, q, []store.Purchase{p}, false) }) // a doubled signal
	h.run()
	h.run()
	if got := h.balance(ada); got != 200 {
		t.Fatalf("balance %d after two packs of 100 in one purchase, want 200", got)
	}
	evs := h.creditEvents()
	if len(evs) != 1 || evs[0].Type != fulfillment.EventCreditsGranted || evs[0].Data.Balance != 200 ||
		evs[0].Data.UserID != "ada" || evs[0].Data.Amount != 200 || evs[0].Data.Cause.ID != p.ID {
		t.Fatalf("webhooks %+v, want one credits.granted with balance 200", evs)
	}
	h.consume(ada, "k1", 50)
	h.refundPack(p, "re_partial", 500)
	h.run()
	if got := h.balance(ada); got != 150 {
		t.Errorf("balance %d after a partial refund, want 150 (untouched)", got)
	}
	h.refundPack(p, "re_rest", 1300)
	h.run()
	if got := h.balance(ada); got != 0 {
		t.Errorf("balance %d after the full refund, want 0", got)
	}
	res := result[map[string]any](t, h.step(p, fulfillment.PrefixCreditsClawback+"re_rest", fulfillment.StepCreditsClawback))
	if res["amount"] != float64(-150) {
		t.Errorf("clawback result %v, want -150", res)
	}
}

// reversePackRefund records that refund id of amount failed, as the
// reconciler does, and hands it to the wrapped Fulfillment.
func (h *creditsHarness) reversePackRefund(p store.Purchase, id string, amount int64) {
	h.t.Helper()
	h.packRefund(p, store.Refund{ID: id, PurchaseID: p.ID, Amount: amount, Currency: "usd", Status: "failed",
		CreatedAt: h.clk.Now()}, -amount, h.ful.RefundReversed)
}

// A full refund that fails gives back what its clawback took, once however
// often the failure is reported, and a later full refund claws it back
// again: the pack follows the money.
func TestPackClawbackGivenBackWhenItsRefundFails(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	ada := store.CreditHolder{UserID: "ada"}
	p := h.buyPack("ada", 1)
	h.run()
	h.consume(ada, "k1", 30)
	h.refundPack(p, "re_1", 900)
	h.run()
	if got := h.balance(ada); got != 0 {
		t.Fatalf("balance %d after the full refund, want 0", got)
	}
	h.reversePackRefund(p, "re_1", 900)
	h.run()
	h.tx(func(q *store.Queries) error { // the failure reported again
		return h.ful.RefundReversed(h.ctx, q, h.reload(p), store.Refund{ID: "re_1", PurchaseID: p.ID, Amount: 900,
			Currency: "usd", Status: "failed", CreatedAt: h.clk.Now()})
	})
	h.run()
	if got := h.balance(ada); got != 70 {
		t.Fatalf("balance %d once the refund failed, want the 70 clawed back", got)
	}
	res := result[map[string]any](t, h.step(p, fulfillment.PrefixCreditsGiveBack+"re_1", fulfillment.StepCreditsGiveBack))
	if res["amount"] != float64(70) {
		t.Errorf("give-back result %v, want 70", res)
	}
	h.consume(ada, "k2", 10)
	h.refundPack(p, "re_2", 900)
	h.run()
	if got := h.balance(ada); got != 0 {
		t.Errorf("balance %d after the second full refund, want 0 (the 60 left clawed back again)", got)
	}
}

// The clawback is given back whichever refund failed: here not the one that
// made the refund full. And a refund that fails before its clawback ran
// leaves the pack alone.
func TestPackClawbackGivenBackInAnyOrder(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	ada, bo := store.CreditHolder{UserID: "ada"}, store.CreditHolder{UserID: "bo"}
	p := h.buyPack("ada", 1)
	h.run()
	h.refundPack(p, "re_a", 400)
	h.refundPack(p, "re_b", 500) // full: its clawback takes the 100
	h.run()
	h.reversePackRefund(p, "re_a", 400)
	h.run()
	if got := h.balance(ada); got != 100 {
		t.Errorf("balance %d once the first of two refunds failed, want 100", got)
	}

	q := h.buyPack("bo", 1)
	h.run()
	h.refundPack(q, "re_1", 900)
	h.reversePackRefund(q, "re_1", 900) // before the clawback ran
	h.run()
	if got := h.balance(bo); got != 100 {
		t.Errorf("balance %d, want 100 untouched", got)
	}
	if r := result[map[string]any](t, h.step(q, fulfillment.PrefixCreditsClawback+"re_1", fulfillment.StepCreditsClawback)); r["skipped"] == nil {
		t.Errorf("clawback result %v, want skipped", r)
	}
}

// A refund that lands before the grant runs leaves nothing to grant, and
// the clawback finds nothing to take: the balance never moves.
func TestPackRefundedBeforeItsGrantRanGrantsNothing(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	p := h.buyPack("bo", 1)
	h.refundPack(p, "re_1", 900)
	h.run()
	if got := h.balance(store.CreditHolder{UserID: "bo"}); got != 0 {
		t.Errorf("balance %d, want 0", got)
	}
	if r := result[map[string]any](t, h.step(p, fulfillment.PipelineCredits, fulfillment.StepCreditsGrant)); r["skipped"] == nil {
		t.Errorf("grant result %v, want skipped", r)
	}
}

// A pack bought through a Payment Link has no user until its buyer claims
// it: the grant retries until the claim sets one, then credits it once.
func TestPackWithoutUserIsGrantedOnceClaimed(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	p := h.insert(buy{product: "pack_100", amount: 900}, store.PurchaseCompleted)
	h.tx(func(q *store.Queries) error { return h.ful.Completed(h.ctx, q, []store.Purchase{p}, false) })
	h.run()
	if s := h.step(p, fulfillment.PipelineCredits, fulfillment.StepCreditsGrant); s.Status != store.StepPending || s.Attempts != 1 {
		t.Fatalf("grant without a user: %s after %d attempts, want pending for a retry", s.Status, s.Attempts)
	}
	h.tx(func(q *store.Queries) error { // the claim, as the reconciler records it
		cur, err := q.LockPurchase(h.ctx, p.ID)
		if err != nil {
			return err
		}
		user := "ivy"
		cur.UserID = &user
		return q.UpdatePurchase(h.ctx, cur, h.clk.Now())
	})
	h.advance(time.Hour)
	h.advance(time.Hour)
	if got := h.balance(store.CreditHolder{UserID: "ivy"}); got != 100 {
		t.Errorf("balance %d once claimed, want 100", got)
	}
}

// The low-balance email and webhook go out once per period: when a
// consumption leaves the balance below the pack's threshold, not again in
// the same period, and again after the next pack.
func TestCreditsLowOncePerPeriod(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	if err := h.db.UpsertAccount(h.ctx, "cy", "cy@example.com", "", h.clk.Now()); err != nil {
		t.Fatal(err)
	}
	cy := store.CreditHolder{UserID: "cy"}
	h.buyPack("cy", 1)
	h.run()
	h.consume(cy, "k1", 80) // 20 left: not below 20
	h.run()
	if n := len(h.mails(mail.CreditsLow)); n != 0 {
		t.Fatalf("%d credits_low emails at the threshold, want 0", n)
	}
	if res := h.consume(cy, "k2", 1); res.Low == nil {
		t.Errorf("the consumption that went below the threshold owes no notice")
	}
	if res := h.consume(cy, "k3", 1); res.Low != nil {
		t.Errorf("a second notice is owed in the same period: %+v", res.Low)
	}
	if res := h.consume(cy, "k2", 1); res.Low != nil || !res.Replayed { // a replay
		t.Errorf("a replay owes a notice: %+v", res)
	}
	h.run()
	m := h.oneMail(mail.CreditsLow, "cy@example.com")
	wantContains(t, "credits_low", m.Text, "19 credits", "below 20", "100 credits")
	low := 0
	for _, ev := range h.creditEvents() {
		if ev.Type == fulfillment.EventCreditsLow {
			low++
			if ev.Data.Balance != 19 || ev.Data.Threshold == nil || *ev.Data.Threshold != 20 || ev.Data.UserID != "cy" {
				t.Errorf("credits.low = %+v", ev.Data)
			}
		}
	}
	if low != 1 {
		t.Errorf("%d credits.low webhooks, want 1", low)
	}

	h.buyPack("cy", 1) // a new period: 118
	h.run()
	h.consume(cy, "k4", 100)
	h.run()
	if n := len(h.mails(mail.CreditsLow)); n != 2 {
		t.Errorf("%d credits_low emails after the second pack ran low, want 2", n)
	}
}

// plan is a subscription's invoices, applied through the plans seam.
type plan struct {
	h      *creditsHarness
	holder store.CreditHolder
	sub    string
	start  time.Time
}

// invoice applies invoice n (period n from the start, 1-based) of product.
func (p plan) invoice(n int, product string, paid bool) bool {
	p.h.t.Helper()
	var created bool
	p.h.tx(func(q *store.Queries) error {
		var err error
		_, created, err = p.h.credits.InvoicePaid(p.h.ctx, q, fulfillment.PlanInvoice{Holder: p.holder,
			SubscriptionID: p.sub, InvoiceID: fmt.Sprintf("in_%s_%d", p.sub, n), ProductKey: product,
			PeriodStart: p.start.AddDate(0, n-1, 0), PeriodEnd: p.start.AddDate(0, n, 0), Paid: paid})
		return err
	})
	return created
}

// Six months of renewals without rollover: after each period the balance
// is the plan's amount, however much was used, whether its invoice came
// once, twice or late; a failed renewal resets nothing, and its recovery
// resets once. A pack bought on the side survives every reset.
func TestPlanResetsEachPaidPeriodInAnyOrder(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	dee := store.CreditHolder{UserID: "dee", OrganizationID: "org_acme"}
	pl := plan{h: h, holder: dee, sub: "sub_1", start: t0}
	for month := 1; month <= 6; month++ {
		if month == 4 {
			if pl.invoice(month, "starter", false) {
				t.Fatal("a failed renewal wrote an entry")
			}
			if got := h.balance(dee); got != 100-int64(month-1)*7 {
				t.Errorf("month 4 failed: balance %d, want last period's %d", got, 100-int64(month-1)*7)
			}
		}
		if !pl.invoice(month, "starter", true) {
			t.Fatalf("month %d: invoice wrote nothing", month)
		}
		pl.invoice(month, "starter", true) // doubled
		if month > 1 {
			pl.invoice(month-1, "starter", true) // late: the previous period again
		}
		if got := h.balance(dee); got != 100 {
			t.Fatalf("month %d: balance %d, want 100", month, got)
		}
		h.consume(dee, fmt.Sprintf("use-%d", month), int64(month*7))
	}
	if got := h.balance(dee); got != 58 {
		t.Errorf("balance %d after month 6's use, want 58", got)
	}
	// Reordered from scratch: the latest period wins; older ones are stale.
	eve := store.CreditHolder{UserID: "eve"}
	pe := plan{h: h, holder: eve, sub: "sub_2", start: t0}
	pe.invoice(3, "starter", true)
	pe.invoice(3, "starter", true)
	h.consume(eve, "eve-1", 30)
	for _, n := range []int{1, 2, 1} { // delivered late, after period 3
		if pe.invoice(n, "starter", true) {
			t.Errorf("eve: the stale invoice of period %d wrote an entry", n)
		}
	}
	if got := h.balance(eve); got != 70 {
		t.Errorf("eve: balance %d, want 70 (a stale invoice must not reset period 3)", got)
	}

	// A pack beside the plan is not the plan's to reset or expire.
	fay := store.CreditHolder{UserID: "fay"}
	pf := plan{h: h, holder: fay, sub: "sub_3", start: t0}
	pf.invoice(1, "starter", true)
	h.buyPack("fay", 1)
	h.run()
	h.consume(fay, "fay-1", 150) // the plan's 100 first (it expires), then 50 of the pack
	pf.invoice(2, "starter", true)
	if got := h.balance(fay); got != 150 {
		t.Errorf("fay: balance %d after a renewal, want the plan's 100 and the pack's 50", got)
	}
	h.tx(func(q *store.Queries) error {
		e, created, err := h.credits.SubscriptionEnded(h.ctx, q, fay, "sub_3")
		if err == nil && (!created || e.Amount != -100) {
			t.Errorf("expiry = %+v (new %v), want -100", e, created)
		}
		return err
	})
	h.tx(func(q *store.Queries) error {
		_, created, err := h.credits.SubscriptionEnded(h.ctx, q, fay, "sub_3")
		if created {
			t.Error("the expiry was written twice")
		}
		return err
	})
	if pf.invoice(3, "starter", true) {
		t.Error("an invoice after the end granted credits")
	}
	if got := h.balance(fay); got != 50 {
		t.Errorf("fay: balance %d after the subscription ended, want the pack's 50", got)
	}

	h.run()
	resets := 0
	for _, ev := range h.creditEvents() {
		if ev.Type == fulfillment.EventCreditsReset && ev.Data.UserID == "dee" {
			resets++
			if ev.Data.Balance != 100 || ev.Data.OrganizationID != "org_acme" || ev.Data.Kind != store.CreditReset {
				t.Errorf("credits.reset = %+v, want balance 100 for org_acme", ev.Data)
			}
		}
	}
	if resets != 6 {
		t.Errorf("%d credits.reset webhooks for dee, want 6", resets)
	}
}

// With rollover each paid period adds the amount, in any order, once; a
// plan change without rollover resets to the new plan's amount from the
// change on.
func TestPlanRolloverAndPlanChange(t *testing.T) {
	t.Parallel()
	h := newCreditsHarness(t, harnessOptions{})
	gus := store.CreditHolder{UserID: "gus"}
	pg := plan{h: h, holder: gus, sub: "sub_r", start: t0}
	for _, n := range []int{1, 3, 2, 3, 1, 4} {
		pg.invoice(n, "rollover", true)
	}
	h.consume(gus, "g1", 150)
	pg.invoice(5, "rollover", false)
	if got := h.balance(gus); got != 250 {
		t.Errorf("rollover: balance %d, want 4×100 - 150", got)
	}

	hal := store.CreditHolder{UserID: "hal"}
	ph := plan{h: h, holder: hal, sub: "sub_c", start: t0}
	ph.invoice(1, "starter", true)
	h.consume(hal, "h1", 40)
	h.tx(func(q *store.Queries) error {
		_, _, err := h.credits.InvoicePaid(h.ctx, q, fulfillment.PlanInvoice{Holder: hal, SubscriptionID: "sub_c",
			InvoiceID: "in_upgrade", ProductKey: "pro_plan", PeriodStart: t0.AddDate(0, 0, 10),
			PeriodEnd: t0.AddDate(0, 1, 0), Paid: true})
		return err
	})
	if got := h.balance(hal); got != 1000 {
		t.Errorf("after the upgrade: balance %d, want Pro's 1000", got)
	}
	ph.invoice(1, "starter", true) // the first period's invoice again, late
	if got := h.balance(hal); got != 1000 {
		t.Errorf("a late invoice from before the change: balance %d, want 1000", got)
	}
	ph.invoice(2, "pro_plan", true)
	h.consume(hal, "h2", 1)
	if got := h.balance(hal); got != 999 {
		t.Errorf("renewed on Pro and used 1: balance %d, want 999", got)
	}
}
