package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/console"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
)

const (
	consolePurchases   = 100_000
	consoleBuyers      = 20_000 // about five purchases each
	consoleStepsPer    = 10     // 1,000,000 steps, plus an alert per failed one
	consoleSamples     = 200
	consoleWarmup      = 20
	consoleTargetMS    = 100
	consoleOperator    = "bench"
	consolePassword    = "bench-operator-password"
	consoleStuckWindow = time.Hour
)

// benchConsole measures the operator console's overview and a search by
// email, at p95 over HTTP on loopback, with 100,000 purchases and
// 1,000,000 steps in the database; each beside the p95 of the queries
// underneath run directly (store.ConsoleOverview, store.SearchPurchases).
func benchConsole(ctx context.Context, env *benchEnv) ([]Result, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	seedStart := time.Now()
	if err := db.GenerateSyntheticLoad(ctx, store.SyntheticLoad{Purchases: consolePurchases, Buyers: consoleBuyers,
		StepsPerPurchase: consoleStepsPer, Now: time.Now()}); err != nil {
		return nil, err
	}
	var nSteps int64
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM steps`).Scan(&nSteps); err != nil {
		return nil, err
	}
	seeded := time.Since(seedStart)

	srv, cookie, err := consoleServer(ctx, db, env)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	client := srv.Client()
	get := func(path string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		req.AddCookie(cookie)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s = %d: %.300s", path, resp.StatusCode, body)
		}
		return nil
	}

	overview, overviewBase, err := p95s(func(int) error { return get("/console/") }, func(int) error {
		now := time.Now()
		_, err := db.ConsoleOverview(ctx, now, now.Add(-consoleStuckWindow), 10)
		return err
	})
	if err != nil {
		return nil, err
	}
	buyer := func(i int) string { return fmt.Sprintf("buyer%d@example.com", i*37%consoleBuyers) }
	search, searchBase, err := p95s(func(i int) error { return get("/console/search?" + url.Values{"q": {buyer(i)}}.Encode()) },
		func(i int) error {
			_, _, err := db.SearchPurchases(ctx, store.PurchaseSearch{Field: store.SearchEmail, Value: buyer(i), Limit: 50})
			return err
		})
	if err != nil {
		return nil, err
	}
	note := func(what string, l, base latency) string {
		return fmt.Sprintf("p95 of %d requests over loopback (median %.1f ms) with %d purchases and %d steps (seeded in %s), "+
			"each followed by its baseline: %s run directly (median %.1f ms)", consoleSamples, ms(l.p50), consolePurchases, nSteps,
			seeded.Round(time.Second), what, ms(base.p50))
	}
	return []Result{
		{Name: "console_overview_p95_ms", Value: ms(overview.p95), Unit: "ms", Baseline: ms(overviewBase.p95),
			Ratio: ms(overview.p95) / ms(overviewBase.p95), Target: consoleTargetMS,
			Note: note("store.ConsoleOverview (one batch: counts by status, step counts, passes, failing objects, alerts, audit)",
				overview, overviewBase)},
		{Name: "console_search_p95_ms", Value: ms(search.p95), Unit: "ms", Baseline: ms(searchBase.p95),
			Ratio: ms(search.p95) / ms(searchBase.p95), Target: consoleTargetMS,
			Note: note("store.SearchPurchases by email (a page of 50)", search, searchBase)},
	}, nil
}

// consoleServer serves a console on db and signs in, returning the server
// and the session cookie.
func consoleServer(ctx context.Context, db *store.DB, env *benchEnv) (*httptest.Server, *http.Cookie, error) {
	hash, err := console.HashPassword(consolePassword)
	if err != nil {
		return nil, nil, err
	}
	cfg := config.Defaults()
	cfg.Brand = config.Brand{ProductName: "Acme", FromAddress: "hello@acme.test", FromName: "Acme"}
	cfg.Email.UnsubscribeSecret = "bench-unsubscribe-secret"
	cfg.Stripe.SecretKey = "sk_test_bench"
	cfg.Products = []config.Product{{Key: "pro", Name: "Pro", Amount: 19900, Currency: "usd", Access: "github"}}
	cfg.Console.Operators = []config.Operator{{Name: consoleOperator, PasswordHash: hash}}
	cfg.Console.StuckAfter = consoleStuckWindow
	renderer, err := fulfillment.NewRenderer(cfg)
	if err != nil {
		return nil, nil, err
	}
	outbox, err := os.MkdirTemp("", "paymentd-bench-outbox-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(outbox)
	clk := clock.Real{}
	eng := steps.New(db, clk, env.log, steps.Config{}, nil)
	ful, err := fulfillment.New(fulfillment.Options{DB: db, Engine: eng, Clock: clk, Log: env.log, Config: cfg,
		Renderer: renderer, Mailer: mail.NewOutbox(outbox, clk.Now)})
	if err != nil {
		return nil, nil, err
	}
	rec := reconcile.New(reconcile.Options{DB: db, Fulfillment: ful, Clock: clk, Log: env.log, Products: cfg.Products})
	con, err := console.New(console.Options{DB: db, Clock: clk, Log: env.log, Config: cfg, Engine: eng, Reconciler: rec,
		Access: ful, Renderer: renderer})
	if err != nil {
		return nil, nil, err
	}
	srv := httptest.NewServer(con.Handler())
	form := url.Values{"login_csrf": {"bench"}, "name": {consoleOperator}, "password": {consolePassword}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/console/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "paymentd_console_login", Value: "bench"})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "paymentd_console" && c.Value != "" {
			return srv, &http.Cookie{Name: c.Name, Value: c.Value}, nil
		}
	}
	srv.Close()
	return nil, nil, fmt.Errorf("sign in to the console: %d, no session cookie", resp.StatusCode)
}

// latency is the median and 95th percentile of a run of samples.
type latency struct{ p50, p95 time.Duration }

// p95s runs the measured fn and its baseline consoleWarmup times each,
// then consoleSamples times each, alternating, so a noisy moment slows
// both alike; it times each run (i is the sample's number, the same for
// both) and returns the 95th percentile of each.
func p95s(fn, baseline func(i int) error) (latency, latency, error) {
	var ds, bs []time.Duration
	for i := range consoleWarmup + consoleSamples {
		for _, run := range []struct {
			f   func(int) error
			out *[]time.Duration
		}{{fn, &ds}, {baseline, &bs}} {
			start := time.Now()
			if err := run.f(i); err != nil {
				return latency{}, latency{}, err
			}
			if i >= consoleWarmup {
				*run.out = append(*run.out, time.Since(start))
			}
		}
	}
	return latency{percentile(ds, 50), percentile(ds, 95)}, latency{percentile(bs, 50), percentile(bs, 95)}, nil
}

// percentile returns the p-th percentile of ds (sorting ds).
func percentile(ds []time.Duration, p int) time.Duration {
	slices.Sort(ds)
	return ds[(len(ds)*p+99)/100-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
