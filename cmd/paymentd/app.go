package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/paymentd/paymentd/internal/access"
	"github.com/paymentd/paymentd/internal/clock"
	"github.com/paymentd/paymentd/internal/config"
	"github.com/paymentd/paymentd/internal/fulfillment"
	"github.com/paymentd/paymentd/internal/mail"
	"github.com/paymentd/paymentd/internal/stripeapi"
	"github.com/paymentd/paymentd/internal/stripeclient"
	"github.com/paymentd/paymentd/reconcile"
	"github.com/paymentd/paymentd/steps"
	"github.com/paymentd/paymentd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// app is every long-lived dependency, built explicitly from the config.
type app struct {
	cfg    *config.Config
	log    *slog.Logger
	clock  clock.Clock
	db     *store.DB
	stripe *stripeapi.API
	engine *steps.Engine
	ful    *fulfillment.Fulfillment
	// credits runs the credit steps and serves consumption.
	credits *fulfillment.Credits
	rec     *reconcile.Reconciler

	// maintainer prunes finished steps and handled hints past the retention.
	maintainer *steps.Maintainer
}

// appOptions are what a command may change about the app.
type appOptions struct {
	// quiet schedules no customer email (paymentd reconcile --quiet).
	quiet bool
}

// outboundIdlePerHost is how many idle connections the daemon keeps to each
// host it calls (Stripe, SendGrid, GitHub, the access webhook): at least as
// many as it makes requests at once, or every request past the second opens
// (and, over TLS, handshakes) a new connection. Go's default keeps 2.
const outboundIdlePerHost = 64

// outboundTransport is the transport every outbound client shares: Go's
// default, keeping outboundIdlePerHost idle connections per host.
func outboundTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * outboundIdlePerHost
	t.MaxIdleConnsPerHost = outboundIdlePerHost
	return t
}

// newApp builds the app on an open database. reg receives the metrics.
func newApp(cfg *config.Config, log *slog.Logger, db *store.DB, reg prometheus.Registerer) (*app, error) {
	return newAppWith(cfg, log, db, reg, appOptions{})
}

// newAppWith is newApp with options.
func newAppWith(cfg *config.Config, log *slog.Logger, db *store.DB, reg prometheus.Registerer, o appOptions) (*app, error) {
	clk := clock.Real{}
	transport := outboundTransport()
	httpClient := &http.Client{Timeout: 30 * time.Second, Transport: transport}
	stripeAPI := stripeapi.New(stripeclient.New(stripeclient.Options{
		SecretKey: cfg.Stripe.SecretKey, APIBase: cfg.Stripe.APIBase, RateLimit: cfg.Stripe.RateLimit, Transport: transport,
		Logger: log.With("component", "stripe"), Metrics: stripeclient.NewMetrics(reg),
	}))
	engine := steps.New(db, clk, log.With("component", "steps"), stepsConfig(cfg), steps.NewMetrics(reg))

	renderer, err := fulfillment.NewRenderer(cfg)
	if err != nil {
		return nil, fmt.Errorf("email templates: %w", err)
	}
	var mailer mail.Sender
	if cfg.Email.Provider == "sendgrid" {
		mailer = mail.NewSendGrid(cfg.Email.SendGridAPIKey, cfg.Email.SendGridAPIBase, cfg.Email.UnsubscribeGroupID, httpClient)
	} else {
		mailer = mail.NewOutbox(cfg.Email.OutboxDir, clk.Now)
	}

	var gh *access.GitHub
	if cfg.GitHub.Owner != "" && cfg.GitHub.Repo != "" && (cfg.GitHub.Token != "" || cfg.GitHub.APIBase != "") {
		if gh, err = access.NewGitHub(access.GitHubOptions{Token: cfg.GitHub.Token, BaseURL: cfg.GitHub.APIBase,
			Owner: cfg.GitHub.Owner, Repo: cfg.GitHub.Repo, Permission: cfg.GitHub.Permission, HTTPClient: httpClient,
			Clock: clk.Now}); err != nil {
			return nil, fmt.Errorf("github: %w", err)
		}
	}
	var hook *access.Webhook
	if cfg.Webhook.URL != "" {
		if hook, err = access.NewWebhook(access.WebhookOptions{URL: cfg.Webhook.URL, Secret: cfg.Webhook.Secret,
			HTTPClient: httpClient, Clock: clk.Now}); err != nil {
			return nil, fmt.Errorf("access webhook: %w", err)
		}
	}
	var posthog *access.PostHog
	if cfg.PostHog.APIKey != "" {
		if posthog, err = access.NewPostHog(access.PostHogOptions{APIKey: cfg.PostHog.APIKey, Host: cfg.PostHog.Host,
			HTTPClient: httpClient, Clock: clk.Now}); err != nil {
			return nil, fmt.Errorf("posthog: %w", err)
		}
	}
	ful, err := fulfillment.New(fulfillment.Options{DB: db, Engine: engine, Clock: clk, Log: log.With("component", "fulfillment"),
		Config: cfg, Renderer: renderer, Mailer: mailer, GitHub: gh, Webhook: hook, PostHog: posthog, Quiet: o.quiet})
	if err != nil {
		return nil, err
	}
	ful.Register()
	ful.RegisterSubscriptions()
	credits := fulfillment.NewCredits(ful)
	credits.Register()
	ful.RegisterOrders(stripeAPI)

	opts := reconcile.Options{DB: db, Stripe: stripeAPI, Fulfillment: credits.Wrap(), Clock: clk, Log: log.With("component", "reconcile"),
		Products: cfg.Products, Overlap: cfg.Reconcile.Overlap, DeepWindow: cfg.Reconcile.DeepWindow,
		PassBudget: cfg.Reconcile.PassBudget, Metrics: reconcile.NewMetrics(reg),
		Subscriptions: reconcile.SubscriptionOptions{Fulfillment: ful, Grace: cfg.Subscriptions.Grace,
			DunningReminder: cfg.Subscriptions.DunningReminder, Quiet: o.quiet, NotifyWindow: cfg.Fulfillment.NotifyWindow},
		Orders: ful}
	if gh != nil {
		opts.Access = gh
	}
	maintainer := steps.NewMaintainer(db, clk, log.With("component", "maintenance"), steps.MaintenanceConfig{Retention: cfg.Retention})
	return &app{cfg: cfg, log: log, clock: clk, db: db, stripe: stripeAPI, engine: engine, maintainer: maintainer, ful: ful,
		credits: credits, rec: reconcile.New(opts)}, nil
}

// schedules are the reconciler's cron specs from the config.
func schedules(cfg *config.Config) reconcile.Schedules {
	return reconcile.Schedules{Incremental: cfg.Reconcile.Schedule, Deep: cfg.Reconcile.DeepSchedule, Access: cfg.Reconcile.AccessSchedule}
}
