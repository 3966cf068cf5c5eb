package reconcile_test

// The acceptance of subscriptions: a hundred subscriptions over fourteen
// emulated months, reconciled (1) from the events feed with every webhook
// dropped, (2) from webhook hints alone, shuffled and doubled, and (3) not
// at all until a first start at the end (the backfill). In every mode each
// row equals Stripe's, access follows the rule, each email cause is
// scheduled once and every count is exact, and a second pass writes nothing.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// stepLedger is a SubscriptionFulfillment that keeps what a step engine
// would: each email scheduled once per cause (a second scheduling of a
// cause is counted as a duplicate), and canceled by tag when it was not due
// yet. sent counts the emails that would go out.
// RepairSubscriptionAccess fails: these tests run no access drift pass.
func (*stepLedger) RepairSubscriptionAccess(_ context.Context, _ *store.Queries, s store.Subscription, _ store.AccessState) error {
	return fmt.Errorf("unexpected access repair of subscription %s", s.ID)
}

type stepLedger struct {
	mu        sync.Mutex
	now       func() time.Time
	scheduled map[string]*ledgerEmail // subscription/cause
	dups      []string
	access    map[string][]store.AccessState
}

type ledgerEmail struct {
	reconcile.SubscriptionEmail
	sub      string
	canceled bool
}

func newStepLedger(now func() time.Time) *stepLedger {
	return &stepLedger{now: now, scheduled: map[string]*ledgerEmail{}, access: map[string][]store.AccessState{}}
}

func (l *stepLedger) SubscriptionsChanged(_ context.Context, _ *store.Queries, cs []reconcile.SubscriptionChange) error {
	for _, c := range cs {
		if err := l.changed(c); err != nil {
			return err
		}
	}
	return nil
}

func (l *stepLedger) changed(c reconcile.SubscriptionChange) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, tag := range c.Cancel {
		for _, e := range l.scheduled {
			if e.sub == c.Subscription.ID && e.Tag == tag && e.At.After(now) {
				e.canceled = true
			}
		}
	}
	for _, e := range c.Emails {
		key := c.Subscription.ID + "/" + e.Cause
		if _, dup := l.scheduled[key]; dup {
			l.dups = append(l.dups, key)
			continue
		}
		l.scheduled[key] = &ledgerEmail{SubscriptionEmail: e, sub: c.Subscription.ID}
	}
	if c.Access != "" {
		l.access[c.Subscription.ID] = append(l.access[c.Subscription.ID], c.Access)
	}
	return nil
}

// sent counts the customer emails of template that were not canceled
// before their time and whose time has come.
func (l *stepLedger) sent(template string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.scheduled {
		if e.Template == template && !e.Admin && !e.canceled && !e.At.After(l.now()) {
			n++
		}
	}
	return n
}

func (l *stepLedger) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.scheduled)
}

// hintCollector is the webhook endpoint the emulator delivers to in the
// hints mode: it keeps each event's id, type and object id.
type hintCollector struct {
	mu  sync.Mutex
	got []collectedHint
}

type collectedHint struct{ id, typ, object string }

func (c *hintCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var ev stripeapi.EventRef
	if json.Unmarshal(raw, &ev) == nil {
		c.mu.Lock()
		c.got = append(c.got, collectedHint{ev.ID, ev.Type, ev.Data.Object.ID})
		c.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

func (c *hintCollector) take() []collectedHint {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.got
	c.got = nil
	return out
}

// acceptance is one run of the scenario.
type acceptance struct {
	*subEnv
	ledger     *stepLedger
	r          *reconcile.Reconciler
	hints      *hintCollector
	rng        *rand.Rand
	scale      int      // percent of the hundred
	ours       []string // our Stripe subscription ids
	foreignSub string
	// purchaseSession is a one-time purchase of the same account.
	purchaseSession, purchaseID string
}

const acceptanceDays = 425 // fourteen months

func newAcceptance(t *testing.T, mode string) *acceptance {
	t.Helper()
	se := newSubEnv(t)
	a := &acceptance{subEnv: se, ledger: newStepLedger(se.clock.Now), rng: rand.New(rand.NewPCG(11, 17))}
	window := time.Duration(0)
	if mode == "backfill" {
		window = 72 * time.Hour // the configured notify window of a first start
	}
	a.r = reconcile.New(reconcile.Options{DB: se.db, Stripe: se.api, Fulfillment: se.ful, Clock: se.clock,
		Log:      slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelError})),
		Products: append(append([]config.Product{}, productsWithGitHub...), subProducts...),
		Subscriptions: reconcile.SubscriptionOptions{Fulfillment: a.ledger, Grace: 7 * 24 * time.Hour,
			DunningReminder: 3 * 24 * time.Hour, NotifyWindow: window}})
	// Retries two, five and nine days after a failure; then canceled.
	if err := se.emu.SetBillingSettings(stripeemu.BillingSettings{RetrySchedule: []time.Duration{
		2 * 24 * time.Hour, 5 * 24 * time.Hour, 9 * 24 * time.Hour}}); err != nil {
		t.Fatal(err)
	}
	if mode == "hints" {
		a.hints = &hintCollector{}
		srv := httptest.NewServer(a.hints)
		t.Cleanup(srv.Close)
		se.emu.SetWebhook(srv.URL, "whsec_test", 0)
	}
	return a
}

// kinds of subscription in the scenario, with how many of each.
var acceptanceKinds = []struct {
	kind string
	n    int
}{
	{"trial", 15}, {"trial_canceled", 5}, {"monthly", 25}, {"yearly", 10}, {"fail_recover", 15}, {"fail_end", 10},
	{"cancel_at_end", 5}, {"cancel_resume", 5}, {"change_price", 10},
}

// action is something done to a subscription on a day of the scenario.
type action struct {
	day int
	do  func(sub, customer string) error
}

func (a *acceptance) actions(kind string) []action {
	emu := a.emu
	switch kind {
	case "trial_canceled":
		return []action{{5, func(s, _ string) error { return emu.CancelSubscription(s) }}}
	case "fail_recover":
		return []action{{50, func(_, c string) error { return emu.FailPayments(c, true) }},
			{60, func(_, c string) error { return emu.FailPayments(c, false) }}}
	case "fail_end":
		return []action{{100, func(_, c string) error { return emu.FailPayments(c, true) }}}
	case "cancel_at_end":
		return []action{{140, func(s, _ string) error { return emu.SetCancelAtPeriodEnd(s, true) }}}
	case "cancel_resume":
		return []action{{140, func(s, _ string) error { return emu.SetCancelAtPeriodEnd(s, true) }},
			{145, func(s, _ string) error { return emu.SetCancelAtPeriodEnd(s, false) }}}
	case "change_price":
		return []action{{200, func(s, _ string) error { return emu.ChangePrice(s, a.yearly, "none") }}}
	}
	return nil
}

// run plays the scenario, reconciling each day as mode says: "feed" (the
// events feed and the sweep; every webhook dropped), "hints" (only
// webhook hints, each day's shuffled and doubled, and the sweep), or
// "backfill" (nothing until one first pass at the end).
func (a *acceptance) run(mode string, scale int) {
	t := a.t
	a.scale = scale
	start := a.clock.Now()
	type planned struct {
		sub, customer string
		acts          []action
	}
	var plan []planned
	for _, k := range acceptanceKinds {
		for range max(1, k.n*scale/100) {
			price, trial := a.monthly, 0
			switch k.kind {
			case "trial", "trial_canceled":
				trial = 14
			case "yearly":
				price = a.yearly
			}
			id := a.subscribe(price, trial, true)
			s, err := a.emu.Subscription(id)
			if err != nil {
				t.Fatal(err)
			}
			a.ours = append(a.ours, id)
			plan = append(plan, planned{id, s.Customer.ID, a.actions(k.kind)})
		}
	}
	a.foreignSub = a.subscribe(a.subEnv.foreign, 0, false)
	a.purchaseSession, a.purchaseID = a.checkout("buyer-1")
	a.pay(a.purchaseSession, false)
	for day := 0; day <= acceptanceDays; day++ {
		for _, p := range plan {
			for _, act := range p.acts {
				if act.day == day {
					if err := act.do(p.sub, p.customer); err != nil {
						t.Fatalf("day %d: %v", day, err)
					}
				}
			}
		}
		a.clock.Advance(24 * time.Hour)
		a.emu.Tick()
		a.reconcileDay(mode)
	}
	if mode == "backfill" {
		rep, err := a.r.RunPass(a.ctx, "backfill", reconcile.PassOptions{Lists: true, Since: start.Add(-24 * time.Hour),
			Pending: true})
		if err != nil || !rep.Converged() {
			t.Fatalf("first pass: %v, %+v", err, rep.Errors)
		}
	}
}

func (a *acceptance) reconcileDay(mode string) {
	t := a.t
	var o reconcile.PassOptions
	switch mode {
	case "feed":
		o = reconcile.Incremental
	case "hints":
		if err := a.emu.Flush(a.ctx); err != nil {
			t.Fatal(err)
		}
		got := a.hints.take()
		got = append(got, got...) // every delivery twice
		a.rng.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
		for _, h := range got {
			if !stripeapi.UsesEventType(h.typ) && !stripeapi.UsesSubscriptionEventType(h.typ) {
				continue
			}
			if _, err := a.db.InsertHint(a.ctx, h.id, h.typ, h.object, a.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
		o = reconcile.PassOptions{Hints: true, Pending: true, Retries: true}
	default:
		return
	}
	rep, err := a.r.RunPass(a.ctx, "day", o)
	if err != nil || !rep.Converged() {
		t.Fatalf("pass: %v, %+v", err, rep.Errors)
	}
}

// check compares every row with Stripe and every count with what Stripe's
// history says it must be.
func (a *acceptance) check(mode string) {
	t := a.t
	now := a.clock.Now()
	rows, err := a.db.SubscriptionsByStripeIDs(a.ctx, append(slices.Clone(a.ours), a.foreignSub))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(a.ours) {
		t.Fatalf("%d subscriptions recorded, want our %d (not the foreign one)", len(rows), len(a.ours))
	}
	var paid, failed, failedEnded, trialsReminded, ended, started int
	for _, id := range a.ours {
		s, err := a.emu.Subscription(id)
		if err != nil {
			t.Fatal(err)
		}
		row := rows[id]
		item := s.Items.Data[0]
		if string(row.Status) != string(s.Status) || row.CancelAtPeriodEnd != s.CancelAtPeriodEnd ||
			row.CurrentPeriodEnd.Unix() != s.CurrentPeriodEnd || row.StripePriceID != item.Price.ID ||
			row.Amount != item.Price.UnitAmount*item.Quantity || (row.EndedAt == nil) != (s.EndedAt == 0) {
			t.Errorf("%s: row %s cape=%v end=%s price=%s; Stripe %s cape=%v end=%d price=%s", id, row.Status,
				row.CancelAtPeriodEnd, row.CurrentPeriodEnd, row.StripePriceID, s.Status, s.CancelAtPeriodEnd,
				s.CurrentPeriodEnd, item.Price.ID)
		}
		want := s.Status == stripe.SubscriptionStatusActive || s.Status == stripe.SubscriptionStatusTrialing ||
			(s.Status == stripe.SubscriptionStatusPastDue && row.GraceUntil != nil && now.Before(*row.GraceUntil))
		if row.Entitled != want {
			t.Errorf("%s (%s): entitled %v, want %v", id, s.Status, row.Entitled, want)
		}
		started++
		if s.Status == stripe.SubscriptionStatusCanceled || s.Status == stripe.SubscriptionStatusUnpaid {
			ended++
		}
		if s.TrialEnd > 0 && (s.EndedAt == 0 || s.EndedAt >= s.TrialEnd-7*86400) {
			trialsReminded++
		}
		invoices := a.emu.Invoices(id)
		recorded, err := a.db.SubscriptionInvoices(a.ctx, row.ID)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]store.Invoice{}
		for _, r := range recorded {
			byID[r.ID] = r
		}
		if len(recorded) != len(invoices) {
			t.Errorf("%s: %d invoice rows, Stripe has %d", id, len(recorded), len(invoices))
		}
		for _, inv := range invoices {
			r, ok := byID[inv.ID]
			if !ok || string(r.Status) != string(inv.Status) || r.AmountPaid != inv.AmountPaid ||
				r.AmountDue != inv.AmountDue || r.AttemptCount != inv.AttemptCount {
				t.Errorf("invoice %s: row %+v; Stripe %s paid %d due %d attempts %d", inv.ID, r, inv.Status,
					inv.AmountPaid, inv.AmountDue, inv.AttemptCount)
			}
			if inv.Status == stripe.InvoiceStatusPaid && inv.AmountPaid > 0 {
				paid++
			}
			if inv.AttemptCount > 1 || (inv.AttemptCount == 1 && inv.Status != stripe.InvoiceStatusPaid &&
				inv.AmountRemaining > 0) {
				failed++
				if inv.Status != stripe.InvoiceStatusPaid {
					failedEnded++
				}
			}
		}
	}
	if len(a.ledger.dups) > 0 {
		t.Errorf("email causes scheduled twice: %v", a.ledger.dups)
	}
	counts := map[string]int{}
	for _, tmpl := range []string{reconcile.TemplateSubscriptionStarted, reconcile.TemplateTrialEnding,
		reconcile.TemplateInvoiceReceipt, reconcile.TemplatePaymentFailed, reconcile.TemplatePaymentReminder,
		reconcile.TemplateSubscriptionCanceling, reconcile.TemplateSubscriptionResumed,
		reconcile.TemplateSubscriptionEnded, reconcile.TemplatePlanChanged} {
		counts[tmpl] = a.ledger.sent(tmpl)
	}
	want := map[string]int{}
	scaled := func(kind string) int {
		for _, k := range acceptanceKinds {
			if k.kind == kind {
				return max(1, k.n*a.scale/100)
			}
		}
		return 0
	}
	if mode != "backfill" {
		want = map[string]int{reconcile.TemplateSubscriptionStarted: started, reconcile.TemplateTrialEnding: trialsReminded,
			reconcile.TemplateInvoiceReceipt: paid, reconcile.TemplatePaymentFailed: failed,
			reconcile.TemplatePaymentReminder:       failedEnded,
			reconcile.TemplateSubscriptionCanceling: scaled("cancel_at_end") + scaled("cancel_resume"),
			reconcile.TemplateSubscriptionResumed:   scaled("cancel_resume"), reconcile.TemplateSubscriptionEnded: ended,
			reconcile.TemplatePlanChanged: scaled("change_price")}
	}
	for tmpl, n := range counts {
		if n != want[tmpl] {
			t.Errorf("%s: %d sent, want %d", tmpl, n, want[tmpl])
		}
	}
	t.Logf("%s: %d subscriptions, %d paid invoices, %d failed, emails %v", mode, len(a.ours), paid, failed, counts)
	// Not confused: the foreign subscription is no row, the one-time
	// purchase is a purchase and no subscription.
	if p, err := a.db.GetPurchase(a.ctx, a.purchaseID); err != nil || p.Status != store.PurchaseCompleted {
		t.Errorf("the one-time purchase: %+v, %v", p, err)
	}
	var n int
	if err := a.db.Pool.QueryRow(a.ctx, `SELECT count(*) FROM purchases`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d purchases (%v), want the one-time one only", n, err)
	}

	// A second pass over everything writes nothing.
	before := a.ledger.total()
	rep, err := a.r.RunPass(a.ctx, "again", reconcile.PassOptions{Lists: true, Events: true, Pending: true,
		Since: now.AddDate(-2, 0, 0)})
	if err != nil || !rep.Converged() || len(rep.Changes) != 0 || a.ledger.total() != before {
		t.Errorf("a second pass: %v, changes %+v, errors %+v, %d new emails", err, rep.Changes, rep.Errors,
			a.ledger.total()-before)
	}
}

// TestSubscriptionAcceptance runs the scenario in each mode. -short
// scales it down to a third.
func TestSubscriptionAcceptance(t *testing.T) {
	t.Parallel()
	scale := 100
	if testing.Short() {
		scale = 30
	}
	if v, err := strconv.Atoi(os.Getenv("PAYMENTD_ACCEPTANCE_SCALE")); err == nil && v > 0 {
		scale = v // percent of the hundred subscriptions
	}
	for _, mode := range []string{"feed", "hints", "backfill"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			a := newAcceptance(t, mode)
			a.run(mode, scale)
			a.check(mode)
		})
	}
}
