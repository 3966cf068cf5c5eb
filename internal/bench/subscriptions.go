package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/internal/stripeemu"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
	"github.com/stripe/stripe-go/v76"
)

// Sizes of the subscription benchmarks.
const (
	renewalSubscriptions  = 2000
	deepPassSubscriptions = 10000
)

// instantMail is a Sender that accepts every message at once: the
// benchmark measures paymentd, not a mail provider.
type instantMail struct{}

func (instantMail) Send(context.Context, mail.Message, string) error { return nil }

// subscriptionStack is a database, the emulator (its client unthrottled:
// instant fakes), a subscription product, and a reconciler whose
// fulfillment renders and sends every email to instantMail.
type subscriptionStack struct {
	db     *store.DB
	drop   func()
	clk    *clock.Fake
	emu    *stripeemu.Emulator
	srv    *httptest.Server
	api    *stripeapi.API
	eng    *steps.Engine
	rec    *reconcile.Reconciler
	render *mail.Renderer
	price  string
}

func (s *subscriptionStack) close() {
	s.srv.Close()
	s.emu.Close()
	s.drop()
}

func newSubscriptionStack(ctx context.Context, env *benchEnv) (*subscriptionStack, error) {
	db, drop, err := env.freshDB(ctx)
	if err != nil {
		return nil, err
	}
	s := &subscriptionStack{db: db, drop: drop, clk: clock.NewFake(time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC))}
	s.emu = stripeemu.New(stripeemu.Options{Clock: s.clk, Seed: 5})
	s.srv = httptest.NewServer(s.emu)
	s.emu.SetBaseURL(s.srv.URL)
	s.api = stripeapi.New(stripeclient.New(stripeclient.Options{SecretKey: "sk_test_bench", APIBase: s.srv.URL,
		RateLimit: 1_000_000}))
	cfg := config.Defaults()
	cfg.Brand = config.Brand{ProductName: "Acme", FromAddress: "hello@acme.test", FromName: "Acme",
		SupportEmail: "support@acme.test", AdminEmail: "admin@acme.test", PricingURL: "https://acme.test/pricing"}
	cfg.Email.UnsubscribeSecret = "bench-unsubscribe-secret"
	cfg.Products = []config.Product{{Key: "cloud", Name: "Acme Cloud", Mode: config.ModeSubscription, Access: "none",
		Prices: []config.Price{{Key: "cloud_monthly", Interval: "month", Amount: 2900, Currency: "usd"}}}}
	if s.render, err = fulfillment.NewRenderer(cfg); err != nil {
		s.close()
		return nil, err
	}
	s.eng = steps.New(db, s.clk, env.log, steps.Config{Workers: 32}, nil)
	ful, err := fulfillment.New(fulfillment.Options{DB: db, Engine: s.eng, Clock: s.clk, Log: env.log, Config: cfg,
		Renderer: s.render, Mailer: instantMail{}})
	if err != nil {
		s.close()
		return nil, err
	}
	ful.RegisterSubscriptions()
	s.rec = reconcile.New(reconcile.Options{DB: db, Stripe: s.api, Fulfillment: pipelineOnly{s.eng}, Clock: s.clk,
		Log: env.log, Products: cfg.Products, Concurrency: 16,
		Subscriptions: reconcile.SubscriptionOptions{Fulfillment: ful, Grace: cfg.Subscriptions.Grace,
			DunningReminder: cfg.Subscriptions.DunningReminder}})
	prod, err := s.api.CreateProduct(ctx, stripeapi.ProductSpec{Key: "cloud", Name: "Acme Cloud"}, "")
	if err == nil {
		var p *stripe.Price
		p, err = s.api.CreateRecurringPrice(ctx, stripeapi.RecurringPriceSpec{PriceSpec: stripeapi.PriceSpec{
			ProductID: prod.ID, LookupKey: "cloud_monthly", Currency: "usd", Amount: 2900}, Interval: "month"}, "")
		if err == nil {
			s.price = p.ID
		}
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// subscribe creates n monthly subscriptions of ours at the emulator.
func (s *subscriptionStack) subscribe(n int) error {
	for i := range n {
		if _, err := s.emu.CreateSubscription(stripeemu.SubscriptionParams{Email: fmt.Sprintf("sub%d@example.com", i),
			Items: []stripeemu.LineItem{{Price: s.price}}, Metadata: map[string]string{
				reconcile.MetaSubscriptionID: uuid.NewString(), "user_id": fmt.Sprintf("u%d", i)}}); err != nil {
			return err
		}
	}
	return nil
}

// benchSubscriptions measures renewals reconciled and emailed per second
// and the list calls of a deep pass over 10,000 subscriptions.
func benchSubscriptions(ctx context.Context, env *benchEnv) ([]Result, error) {
	renewal, err := benchRenewals(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("renewals: %w", err)
	}
	deep, err := benchDeepPass(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("deep pass: %w", err)
	}
	return []Result{renewal, deep}, nil
}

// benchRenewals: 2,000 monthly subscriptions recorded, then a month later
// each renews (a paid renewal invoice at the emulator). Timed: the pass
// that reconciles every renewal from the listings (subscriptions with
// their latest invoices, and invoices: a page of 100 per call, so the
// emulator's cost per call does not hide paymentd's), then the steps that
// render and send each receipt. Baseline, in the same run: the same
// listings without a database, and the same receipts rendered and handed
// to the sender.
func benchRenewals(ctx context.Context, env *benchEnv) (Result, error) {
	s, err := newSubscriptionStack(ctx, env)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	since := s.clk.Now().Add(-24 * time.Hour)
	if err := s.subscribe(renewalSubscriptions); err != nil {
		return Result{}, err
	}
	if _, err := s.rec.RunPass(ctx, "first", reconcile.PassOptions{Lists: true, Since: since}); err != nil {
		return Result{}, err
	}
	if _, err := s.eng.RunDue(ctx); err != nil { // the welcome emails and first receipts
		return Result{}, err
	}
	s.clk.Advance(31*24*time.Hour + 2*time.Hour)
	s.emu.Tick() // every subscription renews, its invoice paid
	renewals := 0
	for _, sub := range s.emu.Subscriptions() {
		if sub.LatestInvoice == nil {
			continue
		}
		if inv, err := s.emu.Invoice(sub.LatestInvoice.ID); err == nil && inv.BillingReason == "subscription_cycle" &&
			inv.Status == "paid" {
			renewals++
		}
	}

	// As in paymentd serve, the step workers run beside the pass: timed
	// until the last receipt step is done.
	since1h := s.clk.Now().Add(-time.Hour)
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- s.eng.Run(runCtx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopRun()
			<-ran
		}
	}
	defer stop()
	t := time.Now()
	rep, err := s.rec.RunPass(ctx, "renewals", reconcile.PassOptions{Lists: true, Since: since})
	if err != nil || !rep.Converged() {
		return Result{}, fmt.Errorf("renewal pass: %v %+v", err, rep.Errors)
	}
	reconciled := time.Since(t)
	receipts, err := awaitReceipts(ctx, s.db, since1h, renewals, time.Minute)
	if err != nil {
		return Result{}, err
	}
	took := time.Since(t)
	stop() // the baseline runs alone
	if renewals != renewalSubscriptions || receipts != renewals {
		return Result{}, fmt.Errorf("%d renewals, %d receipts sent; want %d of each", renewals, receipts, renewalSubscriptions)
	}
	base, err := renewalBaseline(ctx, s, since)
	if err != nil {
		return Result{}, err
	}
	rate := float64(renewals) / took.Seconds()
	return Result{Name: "subscription_renewals_per_second", Value: rate, Unit: "renewals/s", Baseline: base,
		Ratio: rate / base, HigherIsBetter: true, Target: 500,
		Note: fmt.Sprintf("%d renewal invoices reconciled (rows, invoices, steps) and their receipts rendered and sent "+
			"(instant fakes) in %s: the pass took %s, the last receipt step was done %s later (32 step workers running "+
			"beside the pass, as in paymentd serve); baseline: the same listings and receipts without a database",
			renewals, took.Round(time.Millisecond), reconciled.Round(time.Millisecond),
			(took - reconciled).Round(time.Millisecond))}, nil
}

// awaitReceipts polls until want receipt steps created after since are
// done, and returns how many are; past the deadline it is an error.
func awaitReceipts(ctx context.Context, db *store.DB, since time.Time, want int, deadline time.Duration) (int, error) {
	end := time.Now().Add(deadline)
	for {
		var done int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM steps WHERE pipeline LIKE 'email:invoice_receipt:%'
			AND status = 'done' AND created_at > $1`, since).Scan(&done); err != nil {
			return 0, err
		}
		if done >= want {
			return done, nil
		}
		if time.Now().After(end) {
			return done, fmt.Errorf("%d of %d receipts sent after %s", done, want, deadline)
		}
		select {
		case <-ctx.Done():
			return done, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// renewalBaseline lists the invoices and the subscriptions (with their
// latest invoices) since since, and renders and sends each renewal's
// receipt: the work any implementation must do, without a database.
func renewalBaseline(ctx context.Context, s *subscriptionStack, since time.Time) (float64, error) {
	t := time.Now()
	if err := s.api.ListInvoices(ctx, since, func(*stripe.Invoice) error { return nil }); err != nil {
		return 0, err
	}
	n := 0
	err := s.api.ListSubscriptions(ctx, since, func(sub *stripe.Subscription) error {
		inv := sub.LatestInvoice
		if inv == nil || inv.BillingReason != "subscription_cycle" {
			return nil
		}
		m, err := s.render.Render(mail.InvoiceReceipt, mail.Data{CustomerEmail: "sub@example.com",
			ProductName: "Acme Cloud", Amount: inv.AmountPaid, Currency: string(inv.Currency), InvoiceNumber: inv.Number,
			InvoiceURL: inv.HostedInvoiceURL, PlanName: "Monthly", Interval: "month"})
		if err != nil {
			return err
		}
		n++
		return instantMail{}.Send(ctx, m, inv.ID)
	})
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(t).Seconds(), nil
}

// benchDeepPass: a deep pass over 10,000 subscriptions (each with its first
// invoice) lists them with their latest invoices and lists the invoices,
// and makes no call per subscription: the list calls are the pages, the
// minimum.
func benchDeepPass(ctx context.Context, env *benchEnv) (Result, error) {
	s, err := newSubscriptionStack(ctx, env)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	if err := s.subscribe(deepPassSubscriptions); err != nil {
		return Result{}, err
	}
	invoices := 0
	for _, sub := range s.emu.Subscriptions() {
		invoices += len(s.emu.Invoices(sub.ID))
	}
	s.clk.Advance(time.Hour)
	s.emu.ResetRequests()
	t := time.Now()
	rep, err := s.rec.RunPass(ctx, "deep", reconcile.PassOptions{Lists: true, Since: s.clk.Now().Add(-24 * time.Hour)})
	if err != nil || !rep.Converged() {
		return Result{}, fmt.Errorf("deep pass: %v %+v", err, rep.Errors)
	}
	took := time.Since(t)
	var recorded int
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM subscriptions`).Scan(&recorded); err != nil {
		return Result{}, err
	}
	if recorded != deepPassSubscriptions {
		return Result{}, fmt.Errorf("%d subscriptions recorded, want %d", recorded, deepPassSubscriptions)
	}
	lists, others := 0, 0
	for _, r := range s.emu.Requests() {
		switch r.Path {
		case "/v1/subscriptions", "/v1/invoices":
			lists++
		case "/v1/checkout/sessions", "/v1/refunds", "/v1/disputes", "/v1/events":
		default:
			if strings.HasPrefix(r.Path, "/v1/") {
				others++
			}
		}
	}
	minimum := pagesOf(deepPassSubscriptions) + pagesOf(invoices)
	return Result{Name: "subscription_deep_pass_list_calls", Value: float64(lists), Unit: "calls",
		Baseline: float64(minimum), Ratio: float64(lists) / float64(minimum), HigherIsBetter: false, TargetRatio: 1,
		Note: fmt.Sprintf("a deep pass over %d subscriptions and %d invoices in %s: %d subscription and invoice "+
			"list calls, %d other per-object Stripe calls; baseline: the number of pages of 100", deepPassSubscriptions,
			invoices, took.Round(time.Millisecond), lists, others)}, nil
}

func pagesOf(n int) int { return max(1, (n+stripeapi.PageSize-1)/stripeapi.PageSize) }
