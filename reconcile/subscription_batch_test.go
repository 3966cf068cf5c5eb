package reconcile_test

// The list walk writes a page of subscriptions together: one transaction
// for the page, exactly what applying each alone writes, and a page with
// one bad subscription still records the others and retries the bad one
// alone.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/pgtest"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// changeLog is a SubscriptionFulfillment that keeps every change it
// is handed, per Stripe subscription, and the size of each batch.
// RepairSubscriptionAccess fails: these tests run no access drift pass.
func (*changeLog) RepairSubscriptionAccess(_ context.Context, _ *store.Queries, s store.Subscription, _ store.AccessState) error {
	return fmt.Errorf("unexpected access repair of subscription %s", s.ID)
}

type changeLog struct {
	mu      sync.Mutex
	changes map[string][]reconcile.SubscriptionChange
	batches []int
}

func newChangeLog() *changeLog {
	return &changeLog{changes: map[string][]reconcile.SubscriptionChange{}}
}

func (l *changeLog) SubscriptionsChanged(_ context.Context, _ *store.Queries, cs []reconcile.SubscriptionChange) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches = append(l.batches, len(cs))
	for _, c := range cs {
		id := c.Subscription.StripeSubscriptionID
		l.changes[id] = append(l.changes[id], c)
	}
	return nil
}

// subscriptionReconciler is a reconciler of subscriptions on db, against
// e's emulator and clock, whose changes go to log.
func (e *subEnv) subscriptionReconciler(db *store.DB, log *changeLog) *reconcile.Reconciler {
	return reconcile.New(reconcile.Options{DB: db, Stripe: e.api, Fulfillment: e.ful, Clock: e.clock,
		Log:      slog.New(slog.NewTextHandler(testLog{e.t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Products: append(append([]config.Product{}, productsWithGitHub...), subProducts...),
		Subscriptions: reconcile.SubscriptionOptions{Fulfillment: log, Grace: 7 * 24 * time.Hour,
			DunningReminder: 3 * 24 * time.Hour}})
}

// listPass runs a pass over the lists since since with r and fails the
// test unless it converged.
func (e *subEnv) listPass(r *reconcile.Reconciler, since time.Time) *reconcile.Report {
	e.t.Helper()
	rep, err := r.RunPass(e.ctx, "lists", reconcile.PassOptions{Lists: true, Since: since})
	if err != nil || !rep.Converged() {
		e.t.Fatalf("list pass: %v, %+v", err, rep.Errors)
	}
	return rep
}

// eachAlone applies each of ids on its own with r on db: a webhook hint
// per subscription, handled one by one (retrieve, then applySubscription).
func (e *subEnv) eachAlone(r *reconcile.Reconciler, db *store.DB, ids []string) {
	e.t.Helper()
	for _, id := range ids {
		if _, err := db.InsertHint(e.ctx, "evt_"+id+"_"+fmt.Sprint(e.clock.Now().Unix()),
			"customer.subscription.updated", id, e.clock.Now()); err != nil {
			e.t.Fatal(err)
		}
	}
	rep, err := r.RunPass(e.ctx, "hints", reconcile.HintsOnly)
	if err != nil || !rep.Converged() {
		e.t.Fatalf("hints pass: %v, %+v", err, rep.Errors)
	}
}

// written is what a database holds of the subscriptions of ids: rows and
// invoices as JSON, by Stripe id, with paymentd's ids (random for an
// adopted subscription) left out.
func (e *subEnv) written(db *store.DB, ids []string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, id := range ids {
		s, err := db.SubscriptionByStripeID(e.ctx, id)
		if err != nil {
			out[id] = "none: " + err.Error()
			continue
		}
		is, err := db.SubscriptionInvoices(e.ctx, s.ID)
		if err != nil {
			e.t.Fatal(err)
		}
		s.ID = ""
		for k := range is {
			is[k].SubscriptionID = ""
		}
		b, _ := json.Marshal(struct {
			S store.Subscription
			I []store.Invoice
		}{s, is})
		out[id] = string(b)
	}
	return out
}

// changed is what a change log holds of ids, as JSON, paymentd's ids left
// out.
func changed(l *changeLog, ids []string) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]string{}
	for _, id := range ids {
		cs := slices.Clone(l.changes[id])
		for k := range cs {
			cs[k].Subscription.ID = ""
		}
		b, _ := json.Marshal(cs)
		out[id] = string(b)
	}
	return out
}

// transactions counts the transactions that last wrote the rows of ids.
func (e *subEnv) transactions(db *store.DB, ids []string) int {
	e.t.Helper()
	var n int
	if err := db.Pool.QueryRow(e.ctx, `SELECT count(DISTINCT xmin::text) FROM subscriptions
		WHERE stripe_subscription_id = ANY($1)`, ids).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestSubscriptionPageWritesWhatEachAloneWrites: a page of listed
// subscriptions (new ones, ours by metadata or adopted by price, one not
// ours; then renewed, changed and unchanged ones, and a new one) is written
// in one transaction, and writes exactly the rows, invoices and changes
// that applying each alone writes on a second database.
func TestSubscriptionPageWritesWhatEachAloneWrites(t *testing.T) {
	t.Parallel()
	e := newSubEnv(t)
	start := e.clock.Now().Add(-time.Hour)
	pageLog, aloneLog := newChangeLog(), newChangeLog()
	alone := pgtest.New(t)
	rPage, rAlone := e.subscriptionReconciler(e.db, pageLog), e.subscriptionReconciler(alone, aloneLog)

	ids := []string{e.subscribe(e.monthly, 0, true), e.subscribe(e.monthly, 14, true), e.subscribe(e.yearly, 0, true),
		e.subscribe(e.monthly, 0, true), e.subscribe(e.monthly, 0, false)}
	foreign := e.subscribe(e.foreign, 0, false)
	ids = append(ids, foreign)
	round := func(name string) {
		t.Helper()
		e.listPass(rPage, start)
		e.eachAlone(rAlone, alone, ids)
		gotRows, wantRows := e.written(e.db, ids), e.written(alone, ids)
		gotChanges, wantChanges := changed(pageLog, ids), changed(aloneLog, ids)
		for _, id := range ids {
			if gotRows[id] != wantRows[id] {
				t.Errorf("%s: %s written as\n%s\nalone:\n%s", name, id, gotRows[id], wantRows[id])
			}
			if gotChanges[id] != wantChanges[id] {
				t.Errorf("%s: %s changes\n%s\nalone:\n%s", name, id, gotChanges[id], wantChanges[id])
			}
		}
		recorded := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == foreign })
		if n := e.transactions(e.db, recorded); n != 1 {
			t.Errorf("%s: the page's rows were written by %d transactions, want 1", name, n)
		}
	}
	round("first seen")
	if _, err := e.db.SubscriptionByStripeID(e.ctx, foreign); err == nil {
		t.Fatal("a subscription of a price paymentd does not sell was recorded")
	}
	if s, _ := e.db.SubscriptionByStripeID(e.ctx, ids[4]); s.ProductKey != "team" {
		t.Fatalf("the subscription adopted by its price: %+v", s)
	}

	e.advance(31 * 24 * time.Hour) // monthly ones renew, the trial converts, the yearly one is unchanged
	if err := e.emu.SetCancelAtPeriodEnd(ids[3], true); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, e.subscribe(e.monthly, 0, true)) // new
	round("renewed")

	// A second pass writes nothing: no change, every row only checked.
	before := changed(pageLog, ids)
	e.listPass(rPage, start)
	if after := changed(pageLog, ids); !equalMaps(before, after) {
		t.Error("a second pass handed changes to the fulfillment")
	}
	if slices.Max(pageLog.batches) < 2 {
		t.Errorf("the page's changes were scheduled one at a time: batches %v", pageLog.batches)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSubscriptionPageWithABadRow: one subscription of a page cannot be
// written (its row violates a constraint); the others are recorded all the
// same, the bad one is recorded for a retry, and once it can be written
// the retry records it, each cause handed on once.
func TestSubscriptionPageWithABadRow(t *testing.T) {
	t.Parallel()
	e := newSubEnv(t)
	start := e.clock.Now().Add(-time.Hour)
	log := newChangeLog()
	r := e.subscriptionReconciler(e.db, log)
	var ids []string
	for range 5 {
		ids = append(ids, e.subscribe(e.monthly, 0, true))
	}
	bad := ids[2]
	if _, err := e.db.Pool.Exec(e.ctx, fmt.Sprintf(`ALTER TABLE subscriptions ADD CONSTRAINT test_bad_row
		CHECK (stripe_subscription_id <> '%s')`, bad)); err != nil {
		t.Fatal(err)
	}
	rep, err := r.RunPass(e.ctx, "lists", reconcile.PassOptions{Lists: true, Since: start})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) != 1 || rep.Errors[0].ObjectID != bad {
		t.Fatalf("errors %+v, want the bad subscription's alone", rep.Errors)
	}
	for _, id := range ids {
		_, err := e.db.SubscriptionByStripeID(e.ctx, id)
		if id == bad && err == nil {
			t.Error("the bad subscription was recorded")
		}
		if id != bad && err != nil {
			t.Errorf("%s was not recorded beside the bad one: %v", id, err)
		}
	}
	if es, _ := e.db.ReconcileErrors(e.ctx, e.clock.Now().Add(24*time.Hour), 10); len(es) != 1 || es[0].ObjectID != bad {
		t.Fatalf("the failure is not recorded for its retry: %+v", es)
	}

	if _, err := e.db.Pool.Exec(e.ctx, `ALTER TABLE subscriptions DROP CONSTRAINT test_bad_row`); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(24 * time.Hour)
	rep, err = r.RunPass(e.ctx, "retries", reconcile.PassOptions{Retries: true})
	if err != nil || !rep.Converged() {
		t.Fatalf("retry pass: %v %+v", err, rep.Errors)
	}
	if _, err := e.db.SubscriptionByStripeID(e.ctx, bad); err != nil {
		t.Fatalf("the retry did not record the bad subscription: %v", err)
	}
	if es, _ := e.db.ReconcileErrors(e.ctx, e.clock.Now().Add(24*time.Hour), 10); len(es) != 0 {
		t.Errorf("failures left after the retry: %+v", es)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, id := range ids {
		causes := map[string]int{}
		for _, c := range log.changes[id] {
			for _, m := range c.Emails {
				causes[m.Cause]++
			}
		}
		if causes["started"] != 1 {
			t.Errorf("%s: handed on causes %v, want started once", id, causes)
		}
	}
}
