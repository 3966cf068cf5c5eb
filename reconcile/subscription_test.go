package reconcile_test

// Subscriptions against the emulator and a real database: the events feed
// alone (no webhook delivered) records what Stripe says, each email cause
// once, and a second pass writes nothing.

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// subRecorder is a SubscriptionFulfillment that counts what it was asked
// to schedule: emails by cause (each must come once), access moves and
// outbound webhooks.
type subRecorder struct {
	mu       sync.Mutex
	causes   map[string]int // subscription id + email cause
	emails   map[string]int // template
	access   []store.AccessState
	webhooks map[string]int
	repairs  map[string]store.AccessState // by subscription id: the access drift pass's
}

func newSubRecorder() *subRecorder {
	return &subRecorder{causes: map[string]int{}, emails: map[string]int{}, webhooks: map[string]int{},
		repairs: map[string]store.AccessState{}}
}

func (r *subRecorder) RepairSubscriptionAccess(_ context.Context, _ *store.Queries, s store.Subscription, want store.AccessState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.repairs[s.ID] = want
	return nil
}

func (r *subRecorder) SubscriptionsChanged(_ context.Context, _ *store.Queries, cs []reconcile.SubscriptionChange) error {
	for _, c := range cs {
		if err := r.changed(c); err != nil {
			return err
		}
	}
	return nil
}

func (r *subRecorder) changed(c reconcile.SubscriptionChange) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range c.Emails {
		r.causes[c.Subscription.ID+"/"+e.Cause]++
		if !e.Admin {
			r.emails[e.Template]++
		}
	}
	if c.Access != "" {
		r.access = append(r.access, c.Access)
	}
	for _, w := range c.Webhooks {
		r.webhooks[w]++
	}
	return nil
}

// subEnv is env with a subscription product (monthly and yearly prices)
// and a reconciler that reconciles subscriptions into rec.
type subEnv struct {
	*env
	monthly, yearly, foreign string
	rec                      *subRecorder
	r                        *reconcile.Reconciler
}

var subProducts = []config.Product{{Key: "team", Mode: config.ModeSubscription, Access: "none", Prices: []config.Price{
	{Key: "team_monthly", Interval: "month", Amount: 2900, Currency: "usd"},
	{Key: "team_yearly", Interval: "year", Amount: 29000, Currency: "usd"},
}}}

func newSubEnv(t *testing.T) *subEnv {
	t.Helper()
	e := &subEnv{env: newEnv(t, time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)), rec: newSubRecorder()}
	prod, err := e.api.CreateProduct(e.ctx, stripeapi.ProductSpec{Key: "team", Name: "Acme Team"}, "")
	if err != nil {
		t.Fatal(err)
	}
	price := func(key, interval string, amount int64) string {
		p, err := e.api.CreateRecurringPrice(e.ctx, stripeapi.RecurringPriceSpec{PriceSpec: stripeapi.PriceSpec{
			ProductID: prod.ID, LookupKey: key, Currency: "usd", Amount: amount}, Interval: interval}, "")
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	e.monthly, e.yearly, e.foreign = price("team_monthly", "month", 2900), price("team_yearly", "year", 29000),
		price("someone_elses", "month", 500)
	e.r = reconcile.New(reconcile.Options{DB: e.db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
		Log:      slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Products: append(append([]config.Product{}, productsWithGitHub...), subProducts...),
		Subscriptions: reconcile.SubscriptionOptions{Fulfillment: e.rec, Grace: 7 * 24 * time.Hour,
			DunningReminder: 3 * 24 * time.Hour}})
	return e
}

func (e *subEnv) subscribe(price string, trialDays int, ours bool) string {
	e.t.Helper()
	p := stripeemu.SubscriptionParams{Email: uuid.NewString()[:8] + "@example.com", TrialDays: trialDays,
		Items: []stripeemu.LineItem{{Price: price}}}
	if ours {
		p.Metadata = map[string]string{reconcile.MetaSubscriptionID: uuid.NewString(), "user_id": "user-" + uuid.NewString()[:6]}
	}
	s, err := e.emu.CreateSubscription(p)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.ID
}

func (e *subEnv) pass() *reconcile.Report {
	e.t.Helper()
	rep, err := e.r.RunPass(e.ctx, "test", reconcile.Incremental)
	if err != nil || !rep.Converged() {
		e.t.Fatalf("pass: %v, %+v", err, rep.Errors)
	}
	return rep
}

func (e *subEnv) row(stripeID string) store.Subscription {
	e.t.Helper()
	s, err := e.db.SubscriptionByStripeID(e.ctx, stripeID)
	if err != nil {
		e.t.Fatalf("subscription %s: %v", stripeID, err)
	}
	return s
}

// advance moves the emulator (on the fake clock) d forward and applies
// what became due there.
func (e *subEnv) advance(d time.Duration) {
	e.clock.Advance(d)
	e.emu.Tick()
}

// pastDue subscribes to the monthly price with Stripe retrying under bs,
// makes the first renewal fail, and returns the subscription's id, its
// customer and its row after a pass, which must be past_due and still
// entitled.
func (e *subEnv) pastDue(bs stripeemu.BillingSettings) (id, cus string, s store.Subscription) {
	e.t.Helper()
	if err := e.emu.SetBillingSettings(bs); err != nil {
		e.t.Fatal(err)
	}
	id = e.subscribe(e.monthly, 0, true)
	e.pass()
	cus = e.row(id).StripeCustomerID
	if err := e.emu.FailPayments(cus, true); err != nil {
		e.t.Fatal(err)
	}
	e.advance(31*24*time.Hour + 2*time.Hour) // the renewal fails
	e.pass()
	s = e.row(id)
	if s.Status != store.SubscriptionPastDue || !s.Entitled {
		e.t.Fatalf("after the failed renewal: %+v", s)
	}
	return id, cus, s
}

// TestSubscriptionLifecycleFromTheEventsFeed: no webhook is delivered; the
// events feed alone records a trial, its conversion, a renewal, a failed
// renewal recovered on a retry, a cancellation at period end and the end,
// each email cause once; every row equals Stripe's; a second pass writes
// nothing; a subscription of a price paymentd does not sell is left alone.
func TestSubscriptionLifecycleFromTheEventsFeed(t *testing.T) {
	t.Parallel()
	e := newSubEnv(t)
	id := e.subscribe(e.monthly, 14, true)
	foreign := e.subscribe(e.foreign, 0, false)
	rep := e.pass()
	if s := e.row(id); s.Status != store.SubscriptionTrialing || !s.Entitled || s.ProductKey != "team" ||
		s.PriceKey != "team_monthly" || s.TrialEnd == nil || s.Amount != 2900 || s.UserID == nil {
		t.Fatalf("trial recorded as %+v", s)
	}
	if _, err := e.db.SubscriptionByStripeID(e.ctx, foreign); err == nil {
		t.Error("a subscription of a price paymentd does not sell was recorded")
	}
	if len(rep.Skipped) != 0 {
		t.Errorf("skipped %v: the skip counts are of Checkout Sessions", rep.Skipped)
	}

	e.advance(15 * 24 * time.Hour) // the trial converts: first paid invoice
	e.pass()
	cus := e.row(id).StripeCustomerID
	e.advance(31 * 24 * time.Hour) // a renewal
	e.pass()
	if err := e.emu.FailPayments(cus, true); err != nil {
		t.Fatal(err)
	}
	e.advance(31 * 24 * time.Hour) // the next renewal fails
	e.pass()
	s := e.row(id)
	if s.Status != store.SubscriptionPastDue || !s.Entitled || s.GraceUntil == nil {
		t.Fatalf("after a failed renewal: %+v", s)
	}
	e.advance(24 * time.Hour)
	e.pass() // nothing new, or a retry that failed again: no second failure email
	if err := e.emu.FailPayments(cus, false); err != nil {
		t.Fatal(err)
	}
	e.advance(5 * 24 * time.Hour) // a retry succeeds
	e.pass()
	if s := e.row(id); s.Status != store.SubscriptionActive || !s.Entitled {
		t.Fatalf("after the retry: %+v", s)
	}
	if err := e.emu.SetCancelAtPeriodEnd(id, true); err != nil {
		t.Fatal(err)
	}
	e.pass()
	if s := e.row(id); !s.CancelAtPeriodEnd || !s.Entitled {
		t.Fatalf("canceling at period end: %+v", s)
	}
	e.advance(40 * 24 * time.Hour)
	e.pass()
	s = e.row(id)
	if s.Status != store.SubscriptionCanceled || s.Entitled || s.EndedAt == nil || s.NextCheckAt != nil {
		t.Fatalf("after the period end: %+v", s)
	}

	// Every invoice row equals Stripe's.
	stripeInvoices := e.emu.Invoices(id)
	rows, err := e.db.SubscriptionInvoices(e.ctx, s.ID)
	if err != nil || len(rows) != len(stripeInvoices) {
		t.Fatalf("%d invoice rows (%v), Stripe has %d", len(rows), err, len(stripeInvoices))
	}
	byID := map[string]store.Invoice{}
	for _, r := range rows {
		byID[r.ID] = r
	}
	paid := 0
	for _, si := range stripeInvoices {
		r := byID[si.ID]
		if string(r.Status) != string(si.Status) || r.AmountPaid != si.AmountPaid || r.AmountDue != si.AmountDue {
			t.Errorf("invoice %s: row %s %d/%d, Stripe %s %d/%d", si.ID, r.Status, r.AmountPaid, r.AmountDue, si.Status,
				si.AmountPaid, si.AmountDue)
		}
		if si.Status == "paid" && si.AmountPaid > 0 {
			paid++
		}
	}
	for cause, n := range e.rec.causes {
		if n != 1 {
			t.Errorf("email cause %s scheduled %d times", cause, n)
		}
	}
	want := map[string]int{reconcile.TemplateSubscriptionStarted: 1, reconcile.TemplateTrialEnding: 1,
		reconcile.TemplateInvoiceReceipt: paid, reconcile.TemplatePaymentFailed: 1, reconcile.TemplatePaymentReminder: 1,
		reconcile.TemplateSubscriptionCanceling: 1, reconcile.TemplateSubscriptionEnded: 1}
	for tmpl, n := range want {
		if e.rec.emails[tmpl] != n {
			t.Errorf("%s: %d emails, want %d (all: %v)", tmpl, e.rec.emails[tmpl], n, e.rec.emails)
		}
	}
	if paid != 3 {
		t.Errorf("%d paid invoices, want 3 (conversion, renewal, recovered renewal)", paid)
	}
	if got := e.rec.access; len(got) != 2 || got[0] != store.AccessGranted || got[1] != store.AccessRevoked {
		t.Errorf("access moves %v, want granted then revoked", got)
	}

	// customer.updated: the new email reaches the account and the
	// subscription, from the events feed alone.
	if _, err := e.db.SetAccountCustomer(e.ctx, *s.UserID, "old@example.com", cus, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	newEmail, newName := "ada@new.example", "Ada King"
	if err := e.emu.UpdateCustomer(cus, stripeemu.CustomerUpdate{Email: &newEmail, Name: &newName}); err != nil {
		t.Fatal(err)
	}
	e.pass()
	if c, err := e.db.AccountContactOf(e.ctx, *s.UserID); err != nil || c.Email == nil || *c.Email != newEmail ||
		c.Name == nil || *c.Name != newName {
		t.Errorf("account contact after customer.updated: %+v, %v", c, err)
	}
	if got := e.row(id); got.CustomerEmail == nil || *got.CustomerEmail != newEmail {
		t.Errorf("subscription email after customer.updated: %v", got.CustomerEmail)
	}

	// A deep pass over the same history writes nothing.
	before := len(e.rec.causes)
	deep, err := e.r.RunPass(e.ctx, "deep", reconcile.PassOptions{Lists: true, Since: e.clock.Now().AddDate(-1, 0, 0)})
	if err != nil || !deep.Converged() || len(deep.Changes) != 0 || len(e.rec.causes) != before {
		t.Errorf("a second (deep) pass: %v, changes %+v, errors %+v", err, deep.Changes, deep.Errors)
	}
}

// TestGraceKeepsAccessThenRevokesThenRestores: a past_due subscription
// keeps access for the grace period from its invoice's first failed
// payment, loses it after (found by the sweep, no signal needed), and
// regains it when the invoice is paid.
func TestGraceKeepsAccessThenRevokesThenRestores(t *testing.T) {
	t.Parallel()
	e := newSubEnv(t)
	id, cus, s := e.pastDue(stripeemu.BillingSettings{RetrySchedule: []time.Duration{12 * 24 * time.Hour, 20 * 24 * time.Hour}})
	if s.GraceUntil == nil {
		t.Fatalf("no grace after the failed renewal: %+v", s)
	}
	failedAt := s.GraceUntil.Add(-7 * 24 * time.Hour)
	e.clock.Set(failedAt.Add(6 * 24 * time.Hour)) // still in grace
	e.pass()
	if s := e.row(id); !s.Entitled {
		t.Fatalf("access lost inside the grace: %+v", s)
	}
	e.clock.Set(failedAt.Add(7*24*time.Hour + time.Minute)) // grace over: only the sweep can tell
	e.pass()
	if s := e.row(id); s.Entitled || s.Status != store.SubscriptionPastDue {
		t.Fatalf("access kept past the grace: %+v", s)
	}
	if err := e.emu.FailPayments(cus, false); err != nil {
		t.Fatal(err)
	}
	if err := e.emu.PayInvoice(*s.LatestInvoiceID); err != nil {
		t.Fatal(err)
	}
	e.pass()
	if s := e.row(id); !s.Entitled || s.Status != store.SubscriptionActive {
		t.Fatalf("access not restored once paid: %+v", s)
	}
	want := []store.AccessState{store.AccessGranted, store.AccessRevoked, store.AccessGranted}
	if got := e.rec.access; !slices.Equal(got, want) {
		t.Errorf("access moves %v, want %v", got, want)
	}
}

// TestGraceDoesNotRestartWithTheNextInvoice: a subscription left past_due
// after its retries keeps counting its grace from the first failure of its
// unpaid invoice when Stripe creates the next period's invoice: not while
// that invoice is a draft nobody tried to charge, nor once its own charge
// fails. Access, revoked when the grace ended, stays revoked.
func TestGraceDoesNotRestartWithTheNextInvoice(t *testing.T) {
	t.Parallel()
	e := newSubEnv(t)
	id, _, s := e.pastDue(stripeemu.BillingSettings{RetrySchedule: []time.Duration{24 * time.Hour, 48 * time.Hour},
		AfterRetries: "past_due"})
	if s.LatestInvoiceID == nil {
		t.Fatalf("no invoice after the failed renewal: %+v", s)
	}
	unpaid := *s.LatestInvoiceID
	e.advance(8 * 24 * time.Hour) // retries exhausted, left past_due; the grace is over
	e.pass()
	if s := e.row(id); s.Entitled || s.Status != store.SubscriptionPastDue {
		t.Fatalf("access kept past the grace: %+v", s)
	}
	period := e.row(id).CurrentPeriodEnd
	e.clock.Set(period.Add(30 * time.Minute)) // the next period's invoice: a draft, not charged yet
	e.emu.Tick()
	e.pass()
	if s := e.row(id); s.Entitled || s.LatestInvoiceID == nil || *s.LatestInvoiceID == unpaid {
		t.Fatalf("the next invoice, not attempted yet: %+v", s)
	}
	e.advance(2 * time.Hour) // its charge fails too
	e.pass()
	if s := e.row(id); s.Entitled || s.Status != store.SubscriptionPastDue {
		t.Fatalf("the next invoice failed: %+v", s)
	}
	want := []store.AccessState{store.AccessGranted, store.AccessRevoked}
	if got := e.rec.access; !slices.Equal(got, want) {
		t.Errorf("access moves %v, want %v", got, want)
	}
}

// TestOutOfOrderHintsEndAsInOrder: a subscription's history (created,
// updated, a renewal that failed then was paid, deleted) delivered as
// hints one at a time, in order on one database and in reverse order
// (deleted first, created last) on another, ends in the same row, the same
// invoices and the same emails: every hint leads to Stripe's state, and a
// canceled row is never moved by a later hint.
func TestOutOfOrderHintsEndAsInOrder(t *testing.T) {
	t.Parallel()
	e := newSubEnv(t)
	id := e.subscribe(e.monthly, 0, true)
	s, err := e.emu.Subscription(id)
	if err != nil {
		t.Fatal(err)
	}
	cus := s.Customer.ID
	if err := e.emu.FailPayments(cus, true); err != nil {
		t.Fatal(err)
	}
	e.advance(31*24*time.Hour + 2*time.Hour) // the renewal fails
	if err := e.emu.FailPayments(cus, false); err != nil {
		t.Fatal(err)
	}
	e.advance(4 * 24 * time.Hour) // a retry pays it
	if err := e.emu.CancelSubscription(id); err != nil {
		t.Fatal(err)
	}
	var hints [][3]string // event id, type, object id
	for _, ev := range e.emu.Events() {
		obj, _ := ev.Data.Object["id"].(string)
		if stripeapi.UsesSubscriptionEventType(string(ev.Type)) && obj != cus {
			hints = append(hints, [3]string{ev.ID, string(ev.Type), obj})
		}
	}
	if len(hints) < 8 {
		t.Fatalf("only %d events", len(hints))
	}
	deliver := func(order [][3]string) (*subRecorder, store.Subscription, []store.Invoice) {
		rec := newSubRecorder()
		db := pgtest.New(t)
		r := reconcile.New(reconcile.Options{DB: db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
			Products: subProducts, Subscriptions: reconcile.SubscriptionOptions{Fulfillment: rec, Grace: 7 * 24 * time.Hour,
				DunningReminder: 3 * 24 * time.Hour}})
		for _, h := range order {
			if _, err := db.InsertHint(e.ctx, h[0], h[1], h[2], e.clock.Now()); err != nil {
				t.Fatal(err)
			}
			if rep, err := r.RunPass(e.ctx, "hints", reconcile.HintsOnly); err != nil || !rep.Converged() {
				t.Fatalf("hints pass: %v %+v", err, rep.Errors)
			}
		}
		row, err := db.SubscriptionByStripeID(e.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		invs, err := db.SubscriptionInvoices(e.ctx, row.ID)
		if err != nil {
			t.Fatal(err)
		}
		return rec, row, invs
	}
	reversed := slices.Clone(hints)
	slices.Reverse(reversed)
	inOrder, rowA, invsA := deliver(hints)
	backwards, rowB, invsB := deliver(reversed)
	if rowA.Status != store.SubscriptionCanceled || rowB.Status != rowA.Status || rowB.Entitled || rowA.Entitled ||
		rowA.ID != rowB.ID || len(invsA) != len(invsB) {
		t.Fatalf("in order: %s %d invoices; reversed: %s %d invoices", rowA.Status, len(invsA), rowB.Status, len(invsB))
	}
	for i := range invsA {
		if invsA[i].ID != invsB[i].ID || invsA[i].Status != invsB[i].Status || invsA[i].AmountPaid != invsB[i].AmountPaid {
			t.Errorf("invoice %d: %+v vs %+v", i, invsA[i], invsB[i])
		}
	}
	if !maps.Equal(inOrder.emails, backwards.emails) || !maps.Equal(inOrder.webhooks, backwards.webhooks) {
		t.Errorf("emails in order %v, reversed %v; webhooks %v vs %v", inOrder.emails, backwards.emails,
			inOrder.webhooks, backwards.webhooks)
	}
	for cause, n := range backwards.causes {
		if n != 1 {
			t.Errorf("cause %s scheduled %d times", cause, n)
		}
	}
}
