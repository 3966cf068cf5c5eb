package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

// degradedOpen is how many open purchases the degraded pass compares.
const degradedOpen = 2000

// benchDegraded measures a pass over open purchases (paid at Stripe, not
// yet recorded: each needs a session call and a write) while Stripe
// answers 30% of calls with 5xx and 10% with 429, against the same pass
// with no faults, each on a database and an emulator of its own. The rate
// is purchases brought to Stripe's state per second of the pass; the
// client keeps to Stripe's 100 requests a second in both.
func benchDegraded(ctx context.Context, env *benchEnv) ([]Result, error) {
	clean, err := degradedPass(ctx, env, stripeemu.Faults{})
	if err != nil {
		return nil, fmt.Errorf("without faults: %w", err)
	}
	faulty, err := degradedPass(ctx, env, stripeemu.Faults{Rate5xx: 0.3, Rate429: 0.1})
	if err != nil {
		return nil, fmt.Errorf("with faults: %w", err)
	}
	return []Result{{
		Name: "degraded_reconcile_objects_per_second", Value: faulty.rate, Unit: "objects/s", Baseline: clean.rate,
		Ratio: faulty.rate / clean.rate, HigherIsBetter: true, TargetRatio: 0.5,
		Note: fmt.Sprintf("a pass over %d open purchases with 30%% 5xx and 10%% 429: %d of them reconciled in %s (%d Stripe calls); "+
			"baseline: the same pass without faults, %s", degradedOpen, faulty.done, faulty.took.Round(time.Millisecond), faulty.calls,
			clean.took.Round(time.Millisecond)),
	}}, nil
}

type degradedRun struct {
	rate        float64
	done, calls int
	took        time.Duration
}

func degradedPass(ctx context.Context, env *benchEnv, faults stripeemu.Faults) (degradedRun, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return degradedRun{}, err
	}
	defer drop()
	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	emu := stripeemu.New(stripeemu.Options{Clock: clk, Seed: 3})
	defer emu.Close()
	srv := httptest.NewServer(emu)
	defer srv.Close()
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_bench", APIBase: srv.URL, RateLimit: 100}))
	prod, err := api.CreateProduct(ctx, stripeapi.ProductSpec{Key: "pro", Name: "Pro"}, "")
	if err != nil {
		return degradedRun{}, err
	}
	price, err := api.CreatePrice(ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: "pro", Currency: "usd", Amount: 19900}, "")
	if err != nil {
		return degradedRun{}, err
	}
	for i := range degradedOpen {
		id, user, email := uuid.NewString(), fmt.Sprintf("u%d", i), fmt.Sprintf("buyer%d@example.com", i)
		s, err := emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: price.ID}},
			CustomerEmail: email, SuccessURL: "http://x/ok", CancelURL: "http://x/no",
			Metadata: map[string]string{"user_id": user, "product": "pro", "purchase_id": id}})
		if err != nil {
			return degradedRun{}, err
		}
		if err := emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
			return degradedRun{}, err
		}
		now := clk.Now()
		exp := time.Unix(s.ExpiresAt, 0).UTC()
		if _, err := db.InsertPurchase(ctx, store.Purchase{ID: id, UserID: &user, Email: &email, ProductKey: "pro", Quantity: 1,
			Status: store.PurchasePending, StripeSessionID: s.ID, AmountTotal: s.AmountTotal, Currency: "usd",
			AccessState: store.AccessNone, SessionExpiresAt: &exp, CreatedAt: now, UpdatedAt: now}); err != nil {
			return degradedRun{}, err
		}
	}
	clk.Advance(2 * time.Hour) // every one is due for a check
	eng := steps.New(db, clk, env.log, steps.Config{}, nil)
	rec := reconcile.New(reconcile.Options{DB: db, Stripe: api, Fulfillment: pipelineOnly{eng}, Clock: clk, Log: env.log,
		Products: []config.Product{{Key: "pro"}}})
	emu.SetFaults(faults)
	emu.ResetRequests()
	t := time.Now()
	if _, err := rec.RunPass(ctx, "degraded", reconcile.PassOptions{Pending: true}); err != nil {
		return degradedRun{}, err
	}
	took := time.Since(t)
	var done int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM purchases WHERE status = 'completed'`).Scan(&done); err != nil {
		return degradedRun{}, err
	}
	if faults == (stripeemu.Faults{}) && done != degradedOpen {
		return degradedRun{}, fmt.Errorf("the pass without faults reconciled %d of %d", done, degradedOpen)
	}
	return degradedRun{rate: float64(done) / took.Seconds(), done: done, calls: len(emu.Requests()), took: took}, nil
}
