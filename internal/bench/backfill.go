package main

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
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
	"github.com/stripe/stripe-go/v76"
)

const (
	backfillSessions  = 100_000
	backfillPaidEvery = 10 // one session in ten is paid: a purchase and its pipeline to create
	// backfillProduct is config.yaml's one-time product: the sessions name
	// it, so both the in-process pass and `paymentd reconcile` with the
	// committed config adopt them (a session naming no configured one-time
	// product is not paymentd's).
	backfillProduct = "pro_one_time"
)

// benchBackfill measures a deep pass that backfills 100,000 checkout
// sessions from the emulator: the list calls it makes (against the minimum,
// one per page of 100), its duration and rate (against merely paging
// through the same list), and then an idle incremental pass: one events
// call, no database writes.
func benchBackfill(ctx context.Context, env *benchEnv) ([]Result, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	emu := stripeemu.New(stripeemu.Options{Clock: clk, Seed: 1})
	defer emu.Close()
	srv := httptest.NewServer(emu)
	defer srv.Close()
	// Stripe's own limit is 100 requests a second; the client keeps to it.
	api := stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_bench", APIBase: srv.URL, RateLimit: 100}))

	prod, err := api.CreateProduct(ctx, stripeapi.ProductSpec{Key: backfillProduct, Name: "Pro"}, "")
	if err != nil {
		return nil, err
	}
	price, err := api.CreatePrice(ctx, stripeapi.PriceSpec{ProductID: prod.ID, LookupKey: backfillProduct, Currency: "usd", Amount: 19900}, "")
	if err != nil {
		return nil, err
	}
	for i := range backfillSessions {
		if i%1000 == 0 {
			clk.Advance(time.Minute)
		}
		s, err := emu.CreateSession(stripeemu.SessionParams{LineItems: []stripeemu.LineItem{{Price: price.ID}},
			CustomerEmail: fmt.Sprintf("buyer%d@example.com", i), SuccessURL: "http://x/ok", CancelURL: "http://x/no",
			Metadata: map[string]string{"user_id": fmt.Sprintf("u%d", i), "product": backfillProduct, "purchase_id": uuid.NewString()}})
		if err != nil {
			return nil, err
		}
		if i%backfillPaidEvery == 0 {
			if err := emu.PaySession(s.ID, stripeemu.Pay{}); err != nil {
				return nil, err
			}
		}
	}
	clk.Advance(time.Hour)

	// Baseline: page through the same list and do nothing else, before and
	// after the backfill; the mean of the two, so a machine whose load
	// drifts during the run moves the baseline as it moves the backfill.
	listOnce := func() (time.Duration, error) {
		t := time.Now()
		listed := 0
		for after, more := "", true; more; {
			var page []*stripe.CheckoutSession
			var err error
			if page, more, err = api.CheckoutSessionsPage(ctx, start.Add(-time.Hour), after); err != nil {
				return 0, err
			}
			if listed += len(page); len(page) > 0 {
				after = page[len(page)-1].ID
			}
		}
		if listed != backfillSessions {
			return 0, fmt.Errorf("listed %d sessions, want %d", listed, backfillSessions)
		}
		return time.Since(t), nil
	}
	listBefore, err := listOnce()
	if err != nil {
		return nil, err
	}

	eng := steps.New(db, clk, env.log, steps.Config{}, nil)
	rec := reconcile.New(reconcile.Options{DB: db, Stripe: api, Fulfillment: pipelineOnly{eng}, Clock: clk, Log: env.log,
		Products: []config.Product{{Key: backfillProduct}}})
	emu.ResetRequests()
	t := time.Now()
	rep, err := rec.RunPass(ctx, "backfill", reconcile.PassOptions{Lists: true, Since: start.Add(-time.Hour)})
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(t)
	requests := emu.Requests()
	listAfter, err := listOnce()
	if err != nil {
		return nil, err
	}
	listOnly := (listBefore + listAfter) / 2
	if !rep.Converged() {
		return nil, fmt.Errorf("backfill left %d errors, e.g. %+v", len(rep.Errors), rep.Errors[0])
	}
	pages := 0
	for _, r := range requests {
		if r.Method == "GET" && r.Path == "/v1/checkout/sessions" {
			pages++
		}
	}
	minPages := (backfillSessions + stripeapi.PageSize - 1) / stripeapi.PageSize
	var purchases int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM purchases`).Scan(&purchases); err != nil {
		return nil, err
	}
	if purchases != backfillSessions/backfillPaidEvery {
		return nil, fmt.Errorf("backfill recorded %d purchases, want %d", purchases, backfillSessions/backfillPaidEvery)
	}

	// An idle incremental pass after the backfill.
	if _, err := rec.RunPass(ctx, "incremental", reconcile.Incremental); err != nil {
		return nil, err
	}
	clk.Advance(time.Minute)
	before, err := tableHashes(ctx, db)
	if err != nil {
		return nil, err
	}
	emu.ResetRequests()
	t = time.Now()
	if _, err := rec.RunPass(ctx, "incremental", reconcile.Incremental); err != nil {
		return nil, err
	}
	idle := time.Since(t)
	after, err := tableHashes(ctx, db)
	if err != nil {
		return nil, err
	}
	changedTables := 0
	for table, h := range before {
		if after[table] != h {
			changedTables++
		}
	}
	idleCalls := len(emu.Requests())

	peakMB, err := backfillPeakRSS(ctx, env, srv.URL, start)
	if err != nil {
		return nil, fmt.Errorf("peak RSS: %w", err)
	}

	rate := float64(backfillSessions) / elapsed.Seconds()
	listRate := float64(backfillSessions) / listOnly.Seconds()
	return []Result{
		{Name: "backfill_list_calls", Value: float64(pages), Unit: "requests", Baseline: float64(minPages),
			Ratio: float64(pages) / float64(minPages), Target: float64(minPages),
			Note: fmt.Sprintf("%d sessions at %d per page; baseline: the minimum number of pages", backfillSessions, stripeapi.PageSize)},
		{Name: "backfill_seconds", Value: elapsed.Seconds(), Unit: "s", Baseline: listOnly.Seconds(),
			Ratio: elapsed.Seconds() / listOnly.Seconds(),
			Note: fmt.Sprintf("%d sessions, %d new purchases with pipelines, client limited to 100 req/s; baseline: paging the same list only",
				backfillSessions, purchases)},
		{Name: "backfill_objects_per_second", Value: rate, Unit: "objects/s", Baseline: listRate, Ratio: rate / listRate,
			HigherIsBetter: true, TargetRatio: 0.8,
			Note: fmt.Sprintf("baseline: paging the same list only, the mean of a run before (%s) and after (%s) the backfill",
				listBefore.Round(time.Millisecond), listAfter.Round(time.Millisecond))},
		{Name: "backfill_peak_rss_mb", Value: peakMB, Unit: "MB", Baseline: 256, Ratio: peakMB / 256, Target: 256,
			Note: fmt.Sprintf("peak RSS (VmHWM) of the `paymentd reconcile --since` process backfilling the same %d sessions "+
				"into an empty database (the emulator runs in the bench process); baseline: the 256 MB budget", backfillSessions)},
		{Name: "idle_incremental_stripe_calls", Value: float64(idleCalls), Unit: "requests", Baseline: 1,
			Ratio: float64(idleCalls), Target: 1, Note: "an incremental pass with nothing new: one events call"},
		{Name: "idle_incremental_tables_written", Value: float64(changedTables), Unit: "tables", Baseline: 0, Ratio: 0,
			Target: 0, Note: fmt.Sprintf("tables whose contents changed during the idle pass (took %s)", idle.Round(time.Millisecond))},
	}, nil
}

// pipelineOnly schedules the same one-step pipelines as the fulfillment
// would, so the backfill writes what production writes without sending mail.
type pipelineOnly struct{ eng *steps.Engine }

func (p pipelineOnly) pipeline(pu store.Purchase, name string) steps.Pipeline {
	return steps.Pipeline{PurchaseID: pu.ID, Name: name, Steps: steps.Chain(
		steps.Step{Name: "purchase_confirmation"}, steps.Step{Name: "admin_purchase"}, steps.Step{Name: "grant_access"},
		steps.Step{Name: "access_email"}, steps.Step{Name: "followup_onboarding", Delay: 7 * 24 * time.Hour},
	)}
}

func (p pipelineOnly) schedule(ctx context.Context, q *store.Queries, pu store.Purchase, name string) error {
	_, err := p.eng.Schedule(ctx, q, p.pipeline(pu, name))
	return err
}

func (p pipelineOnly) Completed(ctx context.Context, q *store.Queries, ps []store.Purchase, _ bool) error {
	pipes := make([]steps.Pipeline, len(ps))
	for i, pu := range ps {
		pipes[i] = p.pipeline(pu, "purchase")
	}
	_, err := p.eng.ScheduleAll(ctx, q, pipes)
	return err
}
func (p pipelineOnly) Refunded(ctx context.Context, q *store.Queries, pu store.Purchase, r store.Refund) error {
	return p.schedule(ctx, q, pu, "refund:"+r.ID)
}
func (p pipelineOnly) RefundReversed(context.Context, *store.Queries, store.Purchase, store.Refund) error {
	return nil
}
func (p pipelineOnly) WalkEnded(context.Context, *store.Queries) error               { return nil }
func (p pipelineOnly) Expired(context.Context, *store.Queries, store.Purchase) error { return nil }
func (p pipelineOnly) PaymentFailed(context.Context, *store.Queries, store.Purchase) error {
	return nil
}
func (p pipelineOnly) DisputeOpened(context.Context, *store.Queries, store.Purchase, store.Dispute) error {
	return nil
}
func (p pipelineOnly) DisputeLost(context.Context, *store.Queries, store.Purchase, store.Dispute) error {
	return nil
}
func (p pipelineOnly) Claimed(context.Context, *store.Queries, store.Purchase) error {
	return nil
}
func (p pipelineOnly) RepairAccess(context.Context, *store.Queries, store.Purchase, store.AccessState) error {
	return nil
}
func (p pipelineOnly) Alert(ctx context.Context, q *store.Queries, key string, a steps.AlertArgs) error {
	_, err := p.eng.Schedule(ctx, q, steps.Pipeline{Name: "alert:" + key, Steps: []steps.Step{{Name: steps.AlertStep, Args: a}}})
	return err
}

func tableHashes(ctx context.Context, db *store.DB) (map[string]string, error) {
	out := map[string]string{}
	for _, table := range []string{"purchases", "refunds", "disputes", "steps", "reconcile_cursors", "reconcile_errors", "webhook_hints"} {
		var h *string
		if err := db.Pool.QueryRow(ctx, `SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM `+table+` t`).Scan(&h); err != nil {
			return nil, err
		}
		if h != nil {
			out[table] = *h
		}
	}
	return out, nil
}

// backfillPeakRSS runs the paymentd binary's one-off reconcile (the backfill
// an operator runs after an outage) against the emulator at emuURL, into a
// fresh database, and returns the process's peak resident set in MB. It
// runs in a process of its own so the emulator's memory is not counted.
func backfillPeakRSS(ctx context.Context, env *benchEnv, emuURL string, since time.Time) (float64, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return 0, err
	}
	defer drop()
	dir, err := os.MkdirTemp("", "paymentd-bench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "paymentd")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./cmd/paymentd").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build paymentd: %v\n%s", err, out)
	}
	// config.yaml as committed, at Stripe's 100 requests a second.
	cfg, err := os.ReadFile("config.yaml")
	if err != nil {
		return 0, err
	}
	re := regexp.MustCompile(`(?m)^(\s*rate_limit:)\s*\d+`)
	if !re.Match(cfg) {
		return 0, fmt.Errorf("config.yaml has no stripe.rate_limit to raise")
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, re.ReplaceAll(cfg, []byte("${1} 100")), 0o600); err != nil {
		return 0, err
	}
	// The emulator's history is dated by its own clock; the binary runs on
	// the wall clock.
	window := (time.Since(since) + 48*time.Hour).Round(time.Hour)
	cmd := exec.CommandContext(ctx, bin, "reconcile", "--since", window.String(), "--json", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+db.Pool.Config().ConnString(), "STRIPE_API_BASE="+emuURL,
		"PAYMENTD_LOG_LEVEL=error")
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	// The process's own high-water mark (VmHWM), read while it runs: the
	// rusage of a child also counts the parent it was forked from.
	peakKB := 0
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err := <-exited:
			if err != nil {
				return 0, fmt.Errorf("paymentd reconcile: %v\n%s", err, stderr.String())
			}
			waiting = false
		case <-tick.C:
			if kb, ok := vmHWM(cmd.Process.Pid); ok {
				peakKB = max(peakKB, kb)
			}
		}
	}
	if peakKB == 0 {
		return 0, fmt.Errorf("could not read the reconcile process's peak RSS from /proc")
	}
	var purchases int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM purchases`).Scan(&purchases); err != nil {
		return 0, err
	}
	if purchases != backfillSessions/backfillPaidEvery {
		return 0, fmt.Errorf("paymentd reconcile recorded %d purchases, want %d", purchases, backfillSessions/backfillPaidEvery)
	}
	return float64(peakKB) / 1024, nil
}

// vmHWM reads a process's peak resident set size in KiB from
// /proc/<pid>/status.
func vmHWM(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return kb, err == nil
		}
	}
	return 0, false
}
