package fulfillment_test

// Acceptance of plan credits, end to end: the Stripe emulator renews two
// subscriptions (a plan of 100 without rollover, one of 100 with) over six
// emulated months; the real reconciler records them and the real steps
// apply their invoices to the ledger. Webhooks are dropped entirely (the
// events feed alone), then delivered shuffled and doubled (hints alone).
// After each period the balance is the plan's amount (no rollover) or the
// running sum (rollover), with consumes between periods; a failed renewal
// changes nothing and, paid on a retry, resets once; the end expires the
// plan. The ledger and the lots sum to the balance at every check.

import (
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/store"
)

// planProducts are the subscription products with credits.
func planProducts(cfg *config.Config) {
	price := func(key string) []config.Price {
		return []config.Price{{Key: key + "_monthly", Interval: "month", Amount: 900, Currency: "usd"}}
	}
	cfg.Products = append(cfg.Products,
		config.Product{Key: "plan", Name: "Plan", Mode: config.ModeSubscription, Credits: 100, Prices: price("plan")},
		config.Product{Key: "plan_roll", Name: "Plan (rollover)", Mode: config.ModeSubscription, Credits: 100,
			CreditsRollover: true, Prices: price("plan_roll")},
		config.Product{Key: "plan_pro", Name: "Plan Pro", Mode: config.ModeSubscription, Credits: 1000,
			Prices: price("plan_pro")},
		config.Product{Key: "plan_basic", Name: "Plan Basic", Mode: config.ModeSubscription, Prices: price("plan_basic")})
}

// eventCollector is the webhook endpoint the emulator delivers to when
// hints are on: it keeps each event's id, type and object id.
type eventCollector struct {
	mu  sync.Mutex
	got [][3]string
}

func (c *eventCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var ev struct {
		ID, Type string
		Data     struct {
			Object struct {
				ID string `json:"id"`
			} `json:"object"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &ev) == nil {
		c.mu.Lock()
		c.got = append(c.got, [3]string{ev.ID, ev.Type, ev.Data.Object.ID})
		c.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

func (c *eventCollector) take() [][3]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.got
	c.got = nil
	return out
}

// planWorld is the emulator, the reconciler and the credits harness, with
// one subscription per plan for one user each.
type planWorld struct {
	h      *creditsHarness
	emu    *stripeemu.Emulator
	rec    *reconcile.Reconciler
	hints  *eventCollector // nil: every webhook dropped
	rng    *rand.Rand
	prices map[string]string // plan product → Stripe price id
	subs   map[string]string // plan product → Stripe subscription id
	holder map[string]store.CreditHolder
}

func newPlanWorld(t *testing.T, hints bool) *planWorld {
	h := newCreditsHarness(t, harnessOptions{configure: planProducts})
	h.ful.RegisterSubscriptions()
	emu := stripeemu.New(stripeemu.Options{Clock: h.clk, Seed: 7})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { emu.Close() })
	emu.SetBaseURL(srv.URL)
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_emulator", APIBase: srv.URL,
		RateLimit: 100, BackoffBase: time.Millisecond}))
	// Retries two and five days after a failure.
	if err := emu.SetBillingSettings(stripeemu.BillingSettings{RetrySchedule: []time.Duration{
		2 * 24 * time.Hour, 5 * 24 * time.Hour}}); err != nil {
		t.Fatal(err)
	}
	w := &planWorld{h: h, emu: emu, rng: rand.New(rand.NewPCG(3, 5)), subs: map[string]string{},
		prices: map[string]string{}, holder: map[string]store.CreditHolder{}}
	w.rec = reconcile.New(reconcile.Options{DB: h.db, Stripe: api, Fulfillment: h.ful, Clock: h.clk,
		Log:      slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Products: h.cfg.Products,
		Subscriptions: reconcile.SubscriptionOptions{Fulfillment: h.ful, Grace: 7 * 24 * time.Hour,
			DunningReminder: 3 * 24 * time.Hour}})
	if hints {
		w.hints = &eventCollector{}
		hs := httptest.NewServer(w.hints)
		t.Cleanup(hs.Close)
		emu.SetWebhook(hs.URL, "whsec_test", 0)
	}
	for _, plan := range []string{"plan", "plan_roll", "plan_pro", "plan_basic"} {
		prod, err := api.CreateProduct(h.ctx, stripeapi.ProductSpec{Key: plan, Name: plan}, "")
		if err != nil {
			t.Fatal(err)
		}
		pr, err := api.CreateRecurringPrice(h.ctx, stripeapi.RecurringPriceSpec{PriceSpec: stripeapi.PriceSpec{
			ProductID: prod.ID, LookupKey: plan + "_monthly", Currency: "usd", Amount: 900}, Interval: "month"}, "")
		if err != nil {
			t.Fatal(err)
		}
		w.prices[plan] = pr.ID
	}
	return w
}

// subscribe subscribes user to plan on the emulator with paymentd's
// metadata (as checkout sets it), with a trial of trialDays.
func (w *planWorld) subscribe(plan, user string, trialDays int) string {
	w.h.t.Helper()
	s, err := w.emu.CreateSubscription(stripeemu.SubscriptionParams{Email: user + "@example.com", TrialDays: trialDays,
		Items:    []stripeemu.LineItem{{Price: w.prices[plan]}},
		Metadata: map[string]string{reconcile.MetaSubscriptionID: uuid.NewString(), "user_id": user, "product": plan}})
	if err != nil {
		w.h.t.Fatal(err)
	}
	w.subs[plan], w.holder[plan] = s.ID, store.CreditHolder{UserID: user}
	return s.ID
}

// reconcile runs a pass as the mode says (the events feed with every
// webhook dropped, or the day's hints shuffled and doubled), then every
// due step.
func (w *planWorld) reconcile() {
	t, h := w.h.t, w.h
	t.Helper()
	o := reconcile.Incremental
	if w.hints != nil {
		if err := w.emu.Flush(h.ctx); err != nil {
			t.Fatal(err)
		}
		got := w.hints.take()
		got = append(got, got...)
		w.rng.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
		for _, e := range got {
			if !stripeapi.UsesEventType(e[1]) && !stripeapi.UsesSubscriptionEventType(e[1]) {
				continue
			}
			if _, err := h.db.InsertHint(h.ctx, e[0], e[1], e[2], h.clk.Now()); err != nil {
				t.Fatal(err)
			}
		}
		o = reconcile.PassOptions{Hints: true, Pending: true, Retries: true}
	}
	rep, err := w.rec.RunPass(h.ctx, "test", o)
	if err != nil || !rep.Converged() {
		t.Fatalf("pass: %v, %+v", err, rep.Errors)
	}
	h.run()
}

// until moves the emulated time to t, a day at a time, reconciling each
// day.
func (w *planWorld) until(t time.Time) {
	for w.h.clk.Now().Before(t) {
		w.h.clk.Advance(min(24*time.Hour, t.Sub(w.h.clk.Now())))
		w.emu.Tick()
		w.reconcile()
	}
}

func (w *planWorld) periodEnd() time.Time {
	s, err := w.emu.Subscription(w.subs["plan"])
	if err != nil {
		w.h.t.Fatal(err)
	}
	return time.Unix(s.CurrentPeriodEnd, 0).UTC()
}

func (w *planWorld) failPayments(fail bool) {
	for _, id := range w.subs {
		s, err := w.emu.Subscription(id)
		if err != nil {
			w.h.t.Fatal(err)
		}
		if err := w.emu.FailPayments(s.Customer.ID, fail); err != nil {
			w.h.t.Fatal(err)
		}
	}
}

// check wants the balance of each plan's holder (the ledger and lots
// summing to it, checked by balance).
func (w *planWorld) check(when string, want map[string]int64) {
	w.h.t.Helper()
	for plan, n := range want {
		if got := w.h.balance(w.holder[plan]); got != n {
			w.h.t.Errorf("%s: %s balance %d, want %d", when, plan, got, n)
		}
	}
}

// entriesByInvoice counts the plan entries (reset or grant, cause invoice) of plan's
// holder, by invoice.
func (w *planWorld) entriesByInvoice(plan string) map[string]int {
	w.h.t.Helper()
	a, err := w.h.db.GetCreditAccount(w.h.ctx, w.holder[plan])
	if err != nil {
		w.h.t.Fatal(err)
	}
	out := map[string]int{}
	for _, inv := range w.emu.Invoices(w.subs[plan]) {
		for _, kind := range []store.CreditKind{store.CreditReset, store.CreditGrant} {
			if _, err := w.h.db.CreditEntryByCause(w.h.ctx, a.ID, kind, store.CauseInvoice, inv.ID); err == nil {
				out[inv.ID]++
			}
		}
	}
	return out
}

func TestPlanCreditsOverSixMonthsEndToEnd(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"dropped", "shuffled_doubled"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			w := newPlanWorld(t, mode == "shuffled_doubled")
			w.subscribe("plan", "ada", 0)
			w.subscribe("plan_roll", "bob", 0)
			w.reconcile()
			plain, roll := int64(100), int64(100)
			w.check("first period", map[string]int64{"plan": plain, "plan_roll": roll})
			for period := 2; period <= 6; period++ {
				for _, plan := range []string{"plan", "plan_roll"} {
					key := plan + "-use-" + strconv.Itoa(period)
					if res := w.h.consume(w.holder[plan], key, 30); res.Outcome != store.ConsumeConsumed {
						t.Fatalf("period %d: consume %s: %+v", period, plan, res)
					}
				}
				plain, roll = plain-30, roll-30
				end := w.periodEnd()
				if period == 4 { // the renewal is declined, then paid on the retry two days on
					w.failPayments(true)
					w.until(end.Add(25 * time.Hour))
					w.check("a failed renewal", map[string]int64{"plan": plain, "plan_roll": roll})
					for plan, id := range w.subs {
						invs := w.emu.Invoices(id)
						if last := invs[len(invs)-1]; last.Status == "paid" || last.AttemptCount < 1 {
							t.Fatalf("%s: the renewal %s is %s after %d attempts, want declined", plan, last.ID,
								last.Status, last.AttemptCount)
						}
					}
					w.failPayments(false)
					w.until(end.Add(4 * 24 * time.Hour))
				} else {
					w.until(end.Add(25 * time.Hour))
				}
				plain, roll = 100, roll+100
				w.check("period "+strconv.Itoa(period), map[string]int64{"plan": plain, "plan_roll": roll})
			}
			for _, plan := range []string{"plan", "plan_roll"} {
				invs := w.emu.Invoices(w.subs[plan])
				applied := w.entriesByInvoice(plan)
				if len(invs) != 6 || len(applied) != 6 {
					t.Errorf("%s: %d invoices, %d applied, want 6 each", plan, len(invs), len(applied))
				}
				for id, n := range applied {
					if n != 1 {
						t.Errorf("%s: invoice %s applied %d times", plan, id, n)
					}
				}
			}
			// A second look at everything changes nothing.
			rep, err := w.rec.RunPass(w.h.ctx, "again", reconcile.PassOptions{Lists: true, Pending: true,
				Since: t0.Add(-24 * time.Hour)})
			if err != nil || !rep.Converged() {
				t.Fatalf("again: %v, %+v", err, rep.Errors)
			}
			w.h.run()
			w.check("again", map[string]int64{"plan": plain, "plan_roll": roll})

			// The end: the plans' credits expire.
			for _, id := range w.subs {
				if err := w.emu.CancelSubscription(id); err != nil {
					t.Fatal(err)
				}
			}
			w.until(w.h.clk.Now().Add(24 * time.Hour))
			w.check("ended", map[string]int64{"plan": 0, "plan_roll": 0})
		})
	}
}

// A trial grants the plan's amount from its start (its first invoice pays
// 0); the first paid invoice at the trial's end resets it. A plan changed
// to another product's price, invoiced at once, resets the plan's part to
// the new plan's amount from the change on, though the subscription's
// metadata still names the first product.
func TestPlanCreditsTrialAndPlanChangeEndToEnd(t *testing.T) {
	t.Parallel()
	w := newPlanWorld(t, false)
	id := w.subscribe("plan", "cy", 14)
	w.reconcile()
	w.check("the trial", map[string]int64{"plan": 100})
	if res := w.h.consume(w.holder["plan"], "trial-use", 30); res.Outcome != store.ConsumeConsumed {
		t.Fatalf("consume: %+v", res)
	}
	w.until(w.periodEnd().Add(25 * time.Hour))
	w.check("the trial converted", map[string]int64{"plan": 100})
	if res := w.h.consume(w.holder["plan"], "use", 30); res.Outcome != store.ConsumeConsumed {
		t.Fatalf("consume: %+v", res)
	}
	w.until(w.h.clk.Now().Add(10 * 24 * time.Hour))
	if err := w.emu.ChangePrice(id, w.prices["plan_pro"], "always_invoice"); err != nil {
		t.Fatal(err)
	}
	w.until(w.h.clk.Now().Add(2 * 24 * time.Hour))
	w.check("the plan changed", map[string]int64{"plan": 1000})
	row, err := w.h.db.SubscriptionByStripeID(w.h.ctx, id)
	if err != nil || row.ProductKey != "plan_pro" {
		t.Errorf("the changed subscription's product %q (%v), want plan_pro", row.ProductKey, err)
	}
	w.until(w.periodEnd().Add(25 * time.Hour))
	w.check("the new plan renewed", map[string]int64{"plan": 1000})
}

// A plan changed to a product without credits takes the old plan's credits
// away at once (a pack bought on the side stays); renewals of that plan
// grant none; a change back to a plan with credits grants them anew with
// its invoice. With webhooks dropped, and with them shuffled and doubled.
func TestPlanCreditsExpireWhenThePlanLeavesThem(t *testing.T) {
	t.Parallel()
	for _, hints := range []bool{false, true} {
		t.Run(map[bool]string{false: "events", true: "hints"}[hints], func(t *testing.T) {
			t.Parallel()
			w := newPlanWorld(t, hints)
			id := w.subscribe("plan", "dee", 0)
			w.reconcile()
			w.check("subscribed", map[string]int64{"plan": 100})
			w.h.buyPack("dee", 1)
			w.h.run()
			if res := w.h.consume(w.holder["plan"], "use", 30); res.Outcome != store.ConsumeConsumed {
				t.Fatalf("consume: %+v", res)
			}
			w.check("a pack bought, 30 used", map[string]int64{"plan": 170})

			w.until(w.h.clk.Now().Add(3 * 24 * time.Hour))
			if err := w.emu.ChangePrice(id, w.prices["plan_basic"], "none"); err != nil {
				t.Fatal(err)
			}
			w.until(w.h.clk.Now().Add(24 * time.Hour))
			// The plan's 100 go first (they expire first), so what is left
			// is the pack's 100.
			w.check("moved to a plan without credits", map[string]int64{"plan": 100})
			w.until(w.periodEnd().Add(25 * time.Hour))
			w.check("the plan without credits renewed", map[string]int64{"plan": 100})

			if err := w.emu.ChangePrice(id, w.prices["plan"], "always_invoice"); err != nil {
				t.Fatal(err)
			}
			w.until(w.h.clk.Now().Add(24 * time.Hour))
			w.check("back to the plan with credits", map[string]int64{"plan": 200})

			a, err := w.h.db.GetCreditAccount(w.h.ctx, w.holder["plan"])
			if err != nil {
				t.Fatal(err)
			}
			entries, err := w.h.db.CreditEntries(w.h.ctx, a.ID, 100, 0)
			if err != nil {
				t.Fatal(err)
			}
			var expired []int64
			for _, e := range entries {
				if e.Kind == store.CreditExpire {
					if e.CauseKind != store.CausePlanChange {
						t.Errorf("an expiry caused by %s %s, want the plan change", e.CauseKind, e.CauseID)
					}
					expired = append(expired, e.Amount)
				}
			}
			if !slices.Equal(expired, []int64{-70}) {
				t.Errorf("expiries %v, want one of -70", expired)
			}
		})
	}
}
